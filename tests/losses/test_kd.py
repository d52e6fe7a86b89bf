"""Golden values computed by hand (see each comment) on small tensors."""

import math

import pytest
import torch

from distillery.losses import LOSSES, LossContext
from distillery.outputs import ModelOutput


def call(name, student_logits, teacher_logits, labels, temperature=1.0):
    """A registered loss through the protocol: loss(student_out, teacher_out, batch)."""
    loss = LOSSES.get(name)(LossContext(temperature=temperature))
    teacher = ModelOutput(logits={"main": teacher_logits} if teacher_logits is not None else {})
    return loss(ModelOutput(logits={"main": student_logits}), teacher, {"labels": labels})

S = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
T = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
Y = torch.tensor([0, 1])


def _sm(a, b):
    e = [math.exp(a), math.exp(b)]
    return [x / sum(e) for x in e]


def test_mse_logits_golden():
    # ((1-2)^2 + 0 + 0 + (2-0)^2) / 4 = 5/4
    assert call("mse_logits", S, T, Y).item() == pytest.approx(1.25)


def test_hard_ce_golden_and_ignores_unlabelled():
    # row0: -log softmax([1,0])[0] = log(1+e^-1); row1: -log softmax([0,2])[1] = log(1+e^-2)
    want = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 2
    assert call("ce", S, None, Y).item() == pytest.approx(want, rel=1e-6)
    assert call("ce", S, None, torch.tensor([0, -100])).item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    assert call("ce", S, None, torch.tensor([-100, -100])).item() == 0.0


@pytest.mark.parametrize("t", [1.0, 2.0])
def test_soft_ce_golden(t):
    want = 0.0
    for s_row, t_row in zip(S.tolist(), T.tolist()):
        p = _sm(t_row[0] / t, t_row[1] / t)
        q = _sm(s_row[0] / t, s_row[1] / t)
        want += -(p[0] * math.log(q[0]) + p[1] * math.log(q[1]))
    want = want / 2 * t * t
    assert call("soft_ce", S, T, Y, t).item() == pytest.approx(want, rel=1e-6)


def test_kl_is_soft_ce_minus_teacher_entropy_and_zero_at_match():
    t = 2.0
    ent = 0.0
    for t_row in T.tolist():
        p = _sm(t_row[0] / t, t_row[1] / t)
        ent += -(p[0] * math.log(p[0]) + p[1] * math.log(p[1]))
    ent = ent / 2 * t * t
    kl = call("kl", S, T, Y, t).item()
    assert kl == pytest.approx(call("soft_ce", S, T, Y, t).item() - ent, rel=1e-5)
    assert call("kl", T, T, Y, t).item() == pytest.approx(0.0, abs=1e-7)


def test_unknown_loss_names_param():
    from distillery.errors import DistilleryError

    with pytest.raises(DistilleryError, match="unknown loss 'msee' \\(param students.x.losses\\)"):
        LOSSES.get("msee", param="students.x.losses")


def test_every_loss_declares_what_it_reads():
    from distillery.losses import NEEDS

    for name in LOSSES:
        needs = LOSSES.get(name).needs
        assert needs and needs <= set(NEEDS), name
    assert LOSSES.get("ce").needs == {"labels"} and LOSSES.get("soft_ce").needs == {"logits"}
