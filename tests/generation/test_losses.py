"""Token-level losses of the seq2seq student (label-smoothed likelihood, top-k KD): golden values."""


import pytest
import torch

from distillery.losses import LOSSES, LossContext
from distillery.losses.tokens import label_smoothed_nll, topk_kd
from distillery.outputs import MAIN, ModelOutput

# --- the loss: hand-computed values --------------------------------------------------------------------------
# Two target positions and a padded third; vocabulary of 4; T = 2.
#   position 0: student logits [1, 2, 0, -1]; teacher top-2 logits [4, 2] at ids [1, 0]
#     p_T = softmax([4, 2] / 2) = [e^2, e^1] / (e^2 + e^1);  KD_0 = -(p_T,0 log p_S(1) + p_T,1 log p_S(0))
#   position 1: student logits [0.5, -0.5, 1.5, 0]; teacher [3, 1] at ids [2, -1] (-1: outside the student's
#     output vocabulary) -> renormalised over id 2 alone: KD_1 = -log p_S(2)
#   position 2: padding (label -100): its teacher values are garbage and must add nothing
# KD = (KD_0 + KD_1) / 2 = 0.6275688 (computed with the math module, outside torch).
# Likelihood with label smoothing 0.1, labels [1, 2]: per position 0.9 * -log p_S(y) + 0.1 * mean_v -log p_S(v);
# mean = 0.6243480. alpha 0.5: 0.5 * 0.6243480 + 0.5 * 0.6275688 = 0.6259584.

def _case():
    logits = torch.tensor([[[1.0, 2.0, 0.0, -1.0], [0.5, -0.5, 1.5, 0.0], [9.0, -9.0, 9.0, -9.0]]])  # (1, 3, 4)
    values = torch.tensor([[[4.0, 2.0], [3.0, 1.0], [100.0, -100.0]]])  # (1, 3, 2)
    ids = torch.tensor([[[1, 0], [2, -1], [3, 3]]])
    labels = torch.tensor([[1, 2, -100]])
    return logits, values, ids, labels


def test_topk_kd_against_hand_computed_value():
    logits, values, ids, labels = _case()
    assert float(topk_kd(logits, values, ids, labels, temperature=2.0)) == pytest.approx(0.6275688, abs=1e-6)


def test_topk_kd_temperature_and_padding():
    logits, values, ids, labels = _case()
    # T -> large: the teacher is uniform over its (kept) top-k
    uniform = -(torch.log_softmax(logits[0, 0], -1)[[1, 0]].mean() + torch.log_softmax(logits[0, 1], -1)[2]) / 2
    assert float(topk_kd(logits, values, ids, labels, temperature=1e6)) == pytest.approx(float(uniform), abs=1e-5)
    # the padded position changes nothing, whatever it holds
    values2 = values.clone()
    values2[0, 2] = torch.tensor([-5.0, 50.0])
    assert float(topk_kd(logits, values2, ids, labels, 2.0)) == float(topk_kd(logits, values, ids, labels, 2.0))


def test_label_smoothing_and_mixture_golden():
    logits, values, ids, labels = _case()
    assert float(label_smoothed_nll(logits, labels, 0.1)) == pytest.approx(0.6243480, abs=1e-6)
    # the registered losses, weighted as C-MLM's alpha 0.5 is written in params: {token_nll: 0.5, topk_kd: 0.5}
    ctx = LossContext(temperature=2.0, label_smoothing=0.1)
    student, teacher = ModelOutput(logits={MAIN: logits}), ModelOutput(logits={MAIN: values}, ids=ids)
    mixed = sum(w * LOSSES.get(n)(ctx)(student, teacher, {"labels": labels}) for n, w in (("token_nll", 0.5), ("topk_kd", 0.5)))
    assert float(mixed) == pytest.approx(0.6259584, abs=1e-6)
    assert LOSSES.get("topk_kd").needs == {"labels", "tokens", "topk"} and LOSSES.get("token_nll").needs == {"labels", "tokens"}


# --- masks ----------------------------------------------------------------------------------------------------
