"""Output-layer losses. Each takes (student_logits, teacher_logits, labels, temperature).

`labels` holds -100 for rows without a gold label (generated texts); hard-label losses skip them.
Shapes: logits (bs, n_labels), labels (bs,).
"""

import torch
import torch.nn.functional as F

from distillery.registry import Registry

LOSSES: Registry = Registry("loss")

# Losses that read the teacher's logits; a student using none of them needs no soft labels.
NEEDS_TEACHER = {"soft_ce", "kl", "mse_logits"}


@LOSSES.register("ce")
def hard_ce(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor,
            temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy with the gold labels: mean over labelled rows of -log softmax(z_s)[y].

    Rows with label -100 are ignored; a batch with no labelled row gives 0.
    """
    if (labels != -100).sum() == 0:
        return student_logits.sum() * 0.0
    return F.cross_entropy(student_logits, labels, ignore_index=-100)


@LOSSES.register("soft_ce")
def soft_ce(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None = None,
            temperature: float = 1.0) -> torch.Tensor:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network":

        L = T^2 * mean_i sum_c -softmax(z_t / T)_ic * log softmax(z_s / T)_ic

    The T^2 factor keeps gradient magnitudes comparable across temperatures.
    """
    t = temperature
    p_t = F.softmax(teacher_logits / t, dim=-1)
    return -(p_t * F.log_softmax(student_logits / t, dim=-1)).sum(-1).mean() * t * t


@LOSSES.register("kl")
def kl_div(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None = None,
           temperature: float = 1.0) -> torch.Tensor:
    """T^2 * mean_i KL(softmax(z_t / T) || softmax(z_s / T)): soft_ce minus the teacher's entropy
    (same gradient for the student, zero when the student matches the teacher)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_logits / t, -1),
                    reduction="batchmean", log_target=True) * t * t


@LOSSES.register("mse_logits")
def mse_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None = None,
               temperature: float = 1.0) -> torch.Tensor:
    """Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks":

        L = mean_i ||z_t,i - z_s,i||_2^2 / n_labels   (F.mse_loss: mean over rows and classes)

    on raw (pre-softmax) logits; the temperature is not used.
    """
    return F.mse_loss(student_logits, teacher_logits)
