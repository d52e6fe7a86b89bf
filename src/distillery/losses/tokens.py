"""Per-token losses of a sequence-to-sequence student (Chen et al. 2020, "Distilling Knowledge Learned in BERT
for Text Generation", eq. 2-4). Shapes: bs = batch, L = target positions, V = the student's output vocabulary,
k = the teacher's top-k. Padded positions carry label -100 and add nothing; both losses are means over the real
target positions (OpenNMT's normalisation by tokens). C-MLM's objective (1 - alpha) * likelihood + alpha * KD
is `losses: {token_nll: 1 - alpha, topk_kd: alpha}`.
"""

import torch
import torch.nn.functional as F

from distillery.losses.base import LOSSES, Loss


def label_smoothed_nll(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Likelihood with label smoothing: per position (1 - eps) * -log p_S(y) + eps * mean_v -log p_S(v),
    averaged over positions whose label is not -100.

    logits (bs, L, V), labels (bs, L)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
                           label_smoothing=smoothing)


def topk_kd(logits: torch.Tensor, teacher_values: torch.Tensor, teacher_ids: torch.Tensor, labels: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """KD = -sum_j p_T,j log p_S,j per position, averaged over positions whose label is not -100.

    p_T = softmax(teacher top-k logits / T), renormalised over those k (the softmax over k values is);
    log p_S = log_softmax over the student's output vocabulary (temperature 1), read at the teacher's k ids.
    A teacher id of -1 (a token outside the student's output vocabulary) is left out and p_T renormalised over
    the rest; a position left with none adds 0. logits (bs, L, V), teacher_values / teacher_ids (bs, L, k),
    labels (bs, L)."""
    real = labels != -100  # (bs, L)
    ids = teacher_ids[real].long()  # (n, k)
    keep = ids >= 0
    scaled = (teacher_values[real].float() / temperature).masked_fill(~keep, float("-inf"))
    p_t = torch.softmax(scaled, dim=-1).nan_to_num(0.0)  # (n, k); a row of -inf gives NaN: weight 0
    log_p_s = torch.log_softmax(logits[real].float(), dim=-1)  # (n, V)
    per_token = -(p_t * log_p_s.gather(-1, ids.clamp(min=0))).sum(-1)  # (n,)
    return per_token.mean() if per_token.numel() else logits.sum() * 0.0


@LOSSES.register("token_nll")
class TokenNLL(Loss):
    """Likelihood of the gold target tokens with label smoothing (`loss_args.label_smoothing`)."""

    needs = frozenset({"labels", "tokens"})

    def forward(self, student, teacher, batch):
        return label_smoothed_nll(student.main, batch["labels"], self.ctx.label_smoothing)


@LOSSES.register("topk_kd")
class TopKKD(Loss):
    """KD on the teacher's stored top-k distribution per target token (`loss_args.top_k` of them, at the
    step's temperature): the teacher's logits are `teacher.main` (bs, L, k), their token ids `teacher.ids`."""

    needs = frozenset({"labels", "tokens", "topk"})

    def forward(self, student, teacher, batch):
        return topk_kd(student.main, teacher.main, teacher.ids, batch["labels"], self.ctx.temperature)
