"""Intermediate-layer losses: the student learns from the teacher's inside, not only its outputs.

The tensor-level formulas are plain functions (`cosine_hidden`, `patient_loss`, ...) so tests can
check them against values computed by hand; the registered classes pair the layers. Layer m of the
student learns from teacher layer `ctx.layer_map[m - 1]`; `mask` (bs, L) is 1 for real tokens, 0 for
padding, and padding never contributes to a loss. Shapes: bs = batch, L = tokens, d = width, H = heads.
"""

import torch
import torch.nn.functional as F
from torch import nn

from distillery.losses.base import LOSSES, Loss, LossContext
from distillery.outputs import ModelOutput


# ---------------------------------------------------------------------------------------------- formulas

def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (bs, L, ...) over real tokens (and every trailing element)."""
    m = mask.to(x.dtype).view(*mask.shape, *([1] * (x.dim() - 2)))
    per = x[0, 0].numel()
    return (x * m).sum() / (m.sum() * per).clamp(min=1)


def cosine_hidden(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sanh et al. 2019 (DistilBERT), the cosine embedding loss between hidden states:

        L = mean over real tokens i of (1 - cos(h_s,i, h_t,i))

    s, t: (bs, L, d) with the same d; mask (bs, L)."""
    cos = F.cosine_similarity(s, t, dim=-1)  # (bs, L)
    return _masked_mean((1 - cos).unsqueeze(-1), mask)


def patient_loss(s_cls: list[torch.Tensor], t_cls: list[torch.Tensor]) -> torch.Tensor:
    """Sun et al. 2019 (Patient KD), eq. 4, on L2-normalised [CLS] states of the paired layers:

        L_PT = sum_j mean_{i, k} ( h_s,ij / ||h_s,ij|| - h_t,ij / ||h_t,ij|| )_k^2

    i over the batch, k over the d hidden units (the authors' code takes this element mean, which is
    why the paper's beta is in the hundreds), j over the paired layers. Each item (bs, d)."""
    out = s_cls[0].new_zeros(())
    for s, t in zip(s_cls, t_cls, strict=True):
        out = out + F.mse_loss(F.normalize(s, dim=-1), F.normalize(t, dim=-1))
    return out


def attention_mse(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Jiao et al. 2020 (TinyBERT), eq. 7, for one layer pair: MSE between *unnormalised* attention
    scores A = Q K^T / sqrt(d_k) (no softmax), averaged over heads and over (query, key) pairs of real
    tokens; padded rows and columns are left out. s, t: (bs, H, L, L); mask (bs, L)."""
    pair = (mask[:, :, None] * mask[:, None, :]).to(s.dtype)  # (bs, L, L)
    sq = (s - t).pow(2) * pair[:, None]
    return sq.sum() / (pair.sum() * s.shape[1]).clamp(min=1)


def hidden_mse(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, proj: nn.Module | None = None) -> torch.Tensor:
    """TinyBERT eq. 8/9: MSE(H_s W, H_t) over real tokens and units; W a learned (d_s, d_t) map when
    the widths differ (none when they match). MobileBERT's feature-map transfer is this with W = I."""
    if proj is not None:
        s = proj(s)
    return _masked_mean((s - t).pow(2), mask)


def attention_kl(s_scores: torch.Tensor, t_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sun et al. 2020 (MobileBERT), attention transfer for one layer pair:

        L = mean over heads h and real query tokens i of KL(softmax(A_t,hi) || softmax(A_s,hi))

    with padded keys masked out of both softmaxes. Scores (bs, H, L, L) before softmax; if the teacher
    has a multiple of the student's heads, each student head learns the mean distribution of its group."""
    neg = torch.finfo(s_scores.dtype).min
    key_pad = (mask == 0)[:, None, None, :]  # (bs, 1, 1, L)
    log_s = F.log_softmax(s_scores.masked_fill(key_pad, neg), dim=-1)
    p_t = F.softmax(t_scores.masked_fill(key_pad, neg), dim=-1)
    hs, ht = s_scores.shape[1], t_scores.shape[1]
    if ht != hs:
        p_t = p_t.view(p_t.shape[0], hs, ht // hs, *p_t.shape[2:]).mean(2)
    kl = (p_t * (torch.log(p_t.clamp(min=1e-12)) - log_s)).masked_fill(key_pad, 0.0).sum(-1)  # (bs, H, L)
    q = mask.to(kl.dtype)[:, None, :]
    return (kl * q).sum() / (q.sum() * hs).clamp(min=1)


# ----------------------------------------------------------------------------- registered (params.yaml)

@LOSSES.register("cosine_hidden")
class DistilBertCosine(Loss):
    """DistilBERT's L_cos: `cosine_hidden` between the student's and the teacher's last hidden states."""

    needs = frozenset({"hidden"})

    def forward(self, student: ModelOutput, teacher: ModelOutput, batch: dict) -> torch.Tensor:
        return cosine_hidden(student.hidden[-1], teacher.hidden[-1], student.mask)


@LOSSES.register("pkd")
class PatientKD(Loss):
    """Patient KD's L_PT (`patient_loss`): student layers 1..k-1 against the teacher's patient layers
    (PKD-Skip: every other teacher layer; PKD-Last: the teacher's last k-1 below the top), whose [CLS]
    states soft-labels stores. Its weight in params.yaml is the paper's beta."""

    needs = frozenset({"cls"})

    def __init__(self, ctx: LossContext) -> None:
        super().__init__(ctx)
        if not ctx.patient_layers:
            raise ValueError("the student names no patient layers; use model pkd_skip or pkd_last, "
                             "or set model_args.patient_layers")

    def forward(self, student: ModelOutput, teacher: ModelOutput, batch: dict) -> torch.Tensor:
        s = [student.hidden[j][:, 0] for j in range(1, len(self.ctx.patient_layers) + 1)]
        return patient_loss(s, [teacher.cls_state(layer) for layer in self.ctx.patient_layers])


def _width_map(ctx: LossContext) -> nn.Linear | None:
    """A learned (d_s -> d_t) map when the widths differ; none when they match."""
    return nn.Linear(ctx.student_width, ctx.teacher_width) if ctx.student_width != ctx.teacher_width else None


@LOSSES.register("tinybert_embedding")
class TinyBertEmbedding(Loss):
    """TinyBERT L_embd = MSE(E_s W_e, E_t) on the embedding-layer outputs; owns W_e."""

    needs = frozenset({"hidden"})

    def __init__(self, ctx: LossContext) -> None:
        super().__init__(ctx)
        self.proj = _width_map(ctx)  # W_e

    def forward(self, student: ModelOutput, teacher: ModelOutput, batch: dict) -> torch.Tensor:
        return hidden_mse(student.hidden[0], teacher.hidden[0], student.mask, self.proj)


class LayerMapLoss(Loss):
    """sum over student layers m of `pair`(S_m, T_g(m)), g = the layer map, on hidden states or scores."""

    needs = frozenset({"hidden"})
    pair = staticmethod(hidden_mse)  # (student tensor, teacher tensor, mask) -> scalar

    def forward(self, student: ModelOutput, teacher: ModelOutput, batch: dict) -> torch.Tensor:
        what, first = ("scores", 1) if "scores" in self.needs else ("hidden", 0)  # scores[0] is layer 1
        s, t = getattr(student, what), getattr(teacher, what)
        return sum(self.pair(s[m - first], t[n - first], student.mask) for m, n in enumerate(self.ctx.layer_map, start=1)
                   if not self.ctx.layers or m in self.ctx.layers)


@LOSSES.register("tinybert_hidden")
class TinyBertHidden(LayerMapLoss):
    """TinyBERT L_hidn = sum_m MSE(H_s,m W_h, H_t,g(m)) over student layers m, g = the layer map; owns W_h."""

    def __init__(self, ctx: LossContext) -> None:
        super().__init__(ctx)
        self.proj = _width_map(ctx)  # W_h

    def pair(self, s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return hidden_mse(s, t, mask, self.proj)


@LOSSES.register("tinybert_attention")
class TinyBertAttention(LayerMapLoss):
    """TinyBERT L_attn = sum_m `attention_mse`(A_s,m, A_t,g(m)) on unnormalised scores."""

    needs, pair = frozenset({"scores"}), staticmethod(attention_mse)


@LOSSES.register("mobilebert_feature_map")
class MobileBertFeatureMap(LayerMapLoss):
    """MobileBERT feature-map transfer: sum over layers of MSE between the student's and the teacher's
    layer outputs (same width by construction: the bottleneck student's inter-block width)."""


@LOSSES.register("mobilebert_attention")
class MobileBertAttention(LayerMapLoss):
    """MobileBERT attention transfer: sum over layers of `attention_kl` (teacher || student)."""

    needs, pair = frozenset({"scores"}), staticmethod(attention_kl)
