"""Losses for the early exits of a FastBERT student (Liu et al. 2020, "FastBERT: a Self-distilling
BERT with Adaptive Inference Time"). The exits are the heads `exit1` .. `exit{L-1}` of the student's
`ModelOutput`; its `MAIN` head is the backbone's own (frozen) classifier.

Shapes: exit logits (bs, C); labels (bs,), -100 where a text has none.
"""

import torch
import torch.nn.functional as F

from distillery.losses.base import LOSSES, Loss
from distillery.outputs import MAIN


def exit_kl(exit_logits: list[torch.Tensor], target_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """FastBERT's self-distillation loss (eq. 4 of the paper):

        L = sum_i mean_rows KL(p_t || p_i),  p = softmax(z / T)

    summed over the exits i, each against the target distribution p_t (the last classifier's, or
    the stored teacher's); the target gets no gradient. T^2 scales it as in Hinton KD (T = 1: no change).
    """
    t = temperature
    log_target = F.log_softmax(target_logits.detach().float() / t, -1)
    return sum(F.kl_div(F.log_softmax(z / t, -1), log_target, reduction="batchmean", log_target=True)
               for z in exit_logits) * t * t


def exit_ce(exit_logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """The gold-label ablation: sum over the exits of the cross-entropy with the labels (rows with
    label -100 skipped; a batch without labels gives 0)."""
    if (labels != -100).sum() == 0:
        return sum(z.sum() for z in exit_logits) * 0.0
    return sum(F.cross_entropy(z, labels, ignore_index=-100) for z in exit_logits)


def _exits(out) -> list[torch.Tensor]:
    return [z for head, z in out.logits.items() if head != MAIN]


@LOSSES.register("self_distill")
class SelfDistill(Loss):
    """Each exit learns the student's own last classifier (FastBERT step 2; needs no labels)."""
    needs = frozenset({"exits"})
    probabilities = True  # the exits learn class distributions (FastBERT)

    def forward(self, student, teacher, batch):
        return exit_kl(_exits(student), student.main, self.ctx.temperature)


@LOSSES.register("exit_kd")
class ExitKD(Loss):
    """Each exit learns the stored teacher logits instead of the last classifier (beyond the paper:
    the same target when the backbone is the teacher, up to fp16 storage; another teacher's otherwise)."""
    needs = frozenset({"exits", "logits"})
    probabilities = True

    def forward(self, student, teacher, batch):
        return exit_kl(_exits(student), teacher.main, self.ctx.temperature)


@LOSSES.register("exit_ce")
class ExitCE(Loss):
    __doc__ = exit_ce.__doc__
    needs = frozenset({"exits", "labels"})
    probabilities = True

    def forward(self, student, teacher, batch):
        return exit_ce(_exits(student), batch["labels"])
