"""Token-level losses of a sequence-to-sequence student (Chen et al. 2020, "Distilling Knowledge Learned in
BERT for Text Generation", eq. 2-4). Shapes: bs = batch, L = target positions, V = vocabulary, k = the
teacher's top-k. Padded positions carry label -100 and add nothing; both losses are means over the real
target positions (OpenNMT's normalisation by tokens).
"""

import torch

from distillery.losses.tokens import label_smoothed_nll, topk_kd


def cmlm_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_values: torch.Tensor | None,
              teacher_ids: torch.Tensor | None, alpha: float, temperature: float, smoothing: float
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """(1 - alpha) * label-smoothed likelihood + alpha * top-k KD; alpha 0 needs no teacher."""
    nll = label_smoothed_nll(logits, labels, smoothing)
    if alpha == 0:
        return nll, {"nll": float(nll.detach())}
    kd = topk_kd(logits, teacher_values, teacher_ids, labels, temperature)
    return (1 - alpha) * nll + alpha * kd, {"nll": float(nll.detach()), "kd": float(kd.detach())}
