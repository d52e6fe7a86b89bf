"""Intermediate-layer losses: the student learns from the teacher's inside, not only its outputs.

Each registered loss takes `(student: Features, teacher: Features, ctx: FeatureContext)` and returns a
scalar. `Features` holds one model's view of a padded batch (shapes below); `ctx` says which teacher
layer each student layer learns from and holds the learned projections where widths differ.
The tensor-level formulas are plain functions (`cosine_hidden`, `patient_loss`, ...) so tests can
check them against values computed by hand.

Shapes: bs = batch, L = tokens, d = width, H = heads. Layer lists are indexed like transformers'
`hidden_states`: 0 is the embedding output, l >= 1 the output of layer l. `mask` (bs, L) is 1 for real
tokens, 0 for padding; padding never contributes to a loss.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from distillery.losses.kd import LOSSES


@dataclass
class Features:
    logits: torch.Tensor | None = None  # (bs, n_labels)
    hidden: list[torch.Tensor] | None = None  # [layer] -> (bs, L, d); 0 = embeddings
    scores: list[torch.Tensor] | None = None  # [layer - 1] -> (bs, H, L, L), q.k / sqrt(d_head), before mask and softmax
    cls: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (bs, d): [CLS] state (PKD)
    mask: torch.Tensor | None = None  # (bs, L)


@dataclass
class FeatureContext:
    layer_map: list[int]  # teacher layer (1-based) for student layer 1..M
    patient_layers: list[int] = field(default_factory=list)  # PKD: teacher layers for student layers 1..k-1
    proj: nn.ModuleDict | None = None  # "embedding", "hidden": student width -> teacher width (TinyBERT)


def feature_loss(name: str, needs: set[str]):
    """Register a feature loss; `needs` says what it reads from the teacher (hidden, scores, cls)."""

    def deco(fn):
        fn.kind = "features"
        fn.needs = needs
        return LOSSES.register(name)(fn)

    return deco


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

@feature_loss("cosine_hidden", needs={"hidden"})
def distilbert_cosine(student: Features, teacher: Features, ctx: FeatureContext) -> torch.Tensor:
    """DistilBERT's L_cos: `cosine_hidden` between the student's and the teacher's last hidden states."""
    return cosine_hidden(student.hidden[-1], teacher.hidden[-1], student.mask)


@feature_loss("pkd", needs={"cls"})
def pkd(student: Features, teacher: Features, ctx: FeatureContext) -> torch.Tensor:
    """Patient KD's L_PT (`patient_loss`): student layers 1..k-1 against `ctx.patient_layers`
    (PKD-Skip: every other teacher layer; PKD-Last: the teacher's last k-1 below the top). Its weight
    in params.yaml is the paper's beta."""
    s = [student.hidden[j + 1][:, 0] for j in range(len(ctx.patient_layers))]
    t = [teacher.cls[layer] for layer in ctx.patient_layers]
    return patient_loss(s, t)


@feature_loss("tinybert_embedding", needs={"hidden"})
def tinybert_embedding(student: Features, teacher: Features, ctx: FeatureContext) -> torch.Tensor:
    """TinyBERT L_embd = MSE(E_s W_e, E_t) on the embedding-layer outputs."""
    p = ctx.proj["embedding"] if ctx.proj is not None and "embedding" in ctx.proj else None
    return hidden_mse(student.hidden[0], teacher.hidden[0], student.mask, p)


@feature_loss("tinybert_hidden", needs={"hidden"})
def tinybert_hidden(student: Features, teacher: Features, ctx: FeatureContext) -> torch.Tensor:
    """TinyBERT L_hidn = sum_m MSE(H_s,m W_h, H_t,g(m)) over student layers m, g = ctx.layer_map."""
    p = ctx.proj["hidden"] if ctx.proj is not None and "hidden" in ctx.proj else None
    return sum(hidden_mse(student.hidden[m], teacher.hidden[n], student.mask, p)
               for m, n in enumerate(ctx.layer_map, start=1))


@feature_loss("tinybert_attention", needs={"scores"})
def tinybert_attention(student: Features, teacher: Features, ctx: FeatureContext) -> torch.Tensor:
    """TinyBERT L_attn = sum_m `attention_mse`(A_s,m, A_t,g(m)) on unnormalised scores."""
    return sum(attention_mse(student.scores[m - 1], teacher.scores[n - 1], student.mask)
               for m, n in enumerate(ctx.layer_map, start=1))


@feature_loss("mobilebert_feature_map", needs={"hidden"})
def mobilebert_feature_map(student: Features, teacher: Features, ctx: FeatureContext) -> torch.Tensor:
    """MobileBERT feature-map transfer: sum over layers of MSE between the student's and the teacher's
    layer outputs (same width by construction: the bottleneck student's inter-block width)."""
    return sum(hidden_mse(student.hidden[m], teacher.hidden[n], student.mask)
               for m, n in enumerate(ctx.layer_map, start=1))


@feature_loss("mobilebert_attention", needs={"scores"})
def mobilebert_attention(student: Features, teacher: Features, ctx: FeatureContext) -> torch.Tensor:
    """MobileBERT attention transfer: sum over layers of `attention_kl` (teacher || student)."""
    return sum(attention_kl(student.scores[m - 1], teacher.scores[n - 1], student.mask)
               for m, n in enumerate(ctx.layer_map, start=1))
