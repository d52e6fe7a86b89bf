"""Output-layer losses. The formulas take (student_logits, teacher_logits, labels) tensors, as
torchtune's KD losses do; the registered classes read them from the models' outputs.

`labels` holds -100 for rows without a gold label (generated texts; NaN for a regression score);
hard-label losses skip them. Shapes: logits (bs, n_labels), labels (bs,). A regression task has one output
(n_labels 1): `mse_logits` and the hard-target `mse` fit it; the losses on class probabilities
(`probabilities = True`) are refused for it.
"""

import torch
import torch.nn.functional as F

from distillery.losses.base import LOSSES, Loss


def hard_ce(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the gold labels: mean over labelled rows of -log softmax(z_s)[y].

    Rows with label -100 are ignored; a batch with no labelled row gives 0.
    """
    if (labels != -100).sum() == 0:
        return student_logits.sum() * 0.0
    return F.cross_entropy(student_logits, labels, ignore_index=-100)


def hard_mse(student_pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Regression with the gold scores (the teacher's own fine-tuning loss for STS-B, Devlin et al. 2019):

        L = mean over labelled rows of (z_s,i - y_i)^2     (z_s: the student's one output)

    Rows whose target is NaN (generated texts) are ignored; a batch with none labelled gives 0.
    """
    pred = student_pred.reshape(len(targets), -1)[:, 0]
    keep = ~torch.isnan(targets)
    if not keep.any():
        return pred.sum() * 0.0
    return F.mse_loss(pred[keep].float(), targets[keep].float())


def soft_ce(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network":

        L = T^2 * mean_i sum_c -softmax(z_t / T)_ic * log softmax(z_s / T)_ic

    The T^2 factor keeps gradient magnitudes comparable across temperatures.
    """
    t = temperature
    p_t = F.softmax(teacher_logits / t, dim=-1)
    return -(p_t * F.log_softmax(student_logits / t, dim=-1)).sum(-1).mean() * t * t


def kl_div(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T^2 * mean_i KL(softmax(z_t / T) || softmax(z_s / T)): soft_ce minus the teacher's entropy
    (same gradient for the student, zero when the student matches the teacher)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_logits / t, -1),
                    reduction="batchmean", log_target=True) * t * t


def mse_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks":

        L = mean_i ||z_t,i - z_s,i||_2^2 / n_labels   (F.mse_loss: mean over rows and classes)

    on raw (pre-softmax) logits; the temperature is not used.
    """
    return F.mse_loss(student_logits, teacher_logits)


@LOSSES.register("ce")
class HardCE(Loss):
    __doc__ = hard_ce.__doc__
    needs = frozenset({"labels"})
    probabilities = True

    def forward(self, student, teacher, batch):
        return hard_ce(student.main, batch["labels"])


@LOSSES.register("mse")
class HardMSE(Loss):
    __doc__ = hard_mse.__doc__
    needs = frozenset({"labels"})

    def forward(self, student, teacher, batch):
        return hard_mse(student.main, batch["labels"])


class LogitLoss(Loss):
    """A formula between the student's and the teacher's (stored) logits of the main head."""

    needs = frozenset({"logits"})
    formula = staticmethod(soft_ce)  # (student_logits, teacher_logits, temperature) -> scalar

    def forward(self, student, teacher, batch):
        return self.formula(student.main, teacher.main, self.ctx.temperature)


for _name, _fn, _probs in (("soft_ce", soft_ce, True), ("kl", kl_div, True), ("mse_logits", mse_logits, False)):
    LOSSES.register(_name)(type(_fn.__name__, (LogitLoss,), {"__doc__": _fn.__doc__, "formula": staticmethod(_fn),
                                                              "probabilities": _probs}))
