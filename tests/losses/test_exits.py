"""Golden values for FastBERT's losses and uncertainty, computed by hand (see each comment)."""

import math

import numpy as np
import pytest
import torch

from distillery.losses import LOSSES, LossContext
from distillery.outputs import ModelOutput
from distillery.students.exits import first_exit, uncertainty

L3 = math.log(3.0)  # logits [log 3, 0] -> p = [0.75, 0.25]


def test_uncertainty_golden():
    # [0, 0]: uniform, u = 1; [log 3, 0]: H = -(.75 ln .75 + .25 ln .25) = 0.5623351446, / ln 2 = 0.8112781245
    u = uncertainty(np.array([[0.0, 0.0], [L3, 0.0], [50.0, -50.0]]))
    assert u[0] == pytest.approx(1.0)
    assert u[1] == pytest.approx(0.8112781245, rel=1e-9)
    assert u[2] == pytest.approx(0.0, abs=1e-12)  # certain; no overflow for large logits
    # three classes, p = [0.5, 0.25, 0.25]: H = 1.5 ln 2 = 1.0397207708, / ln 3 = 0.9463946303
    assert uncertainty(np.array([[math.log(2.0), 0.0, 0.0]]))[0] == pytest.approx(0.9463946303, rel=1e-9)


def test_first_exit_takes_the_first_certain_exit_else_the_last():
    u = np.array([[0.9, 0.2, 0.1, 0.5], [0.9, 0.8, 0.7, 0.9], [0.05, 0.9, 0.9, 0.9]])
    assert first_exit(u, 0.3).tolist() == [2, 4, 1]
    assert first_exit(u, 0.0).tolist() == [4, 4, 4]  # speed 0: never early
    assert first_exit(u, 1.0).tolist() == [1, 1, 1]


def call(name, exits, main, labels=None, teacher=None, temperature=1.0):
    loss = LOSSES.get(name)(LossContext(temperature=temperature))
    logits = {f"exit{i + 1}": torch.tensor(z) for i, z in enumerate(exits)} | {"main": torch.tensor(main)}
    t = ModelOutput(logits={"main": torch.tensor(teacher)} if teacher is not None else {})
    return loss(ModelOutput(logits=logits), t, {"labels": torch.tensor(labels) if labels is not None else None}).item()


def test_self_distill_golden():
    # target p = [.5, .5]; exit 1 q = [.75, .25]: KL(p||q) = .5 ln(.5/.75) + .5 ln(.5/.25) = 0.1438410362;
    # exit 2 equals the target: 0. Sum over exits: 0.1438410362
    assert call("self_distill", [[[L3, 0.0]], [[0.0, 0.0]]], [[0.0, 0.0]]) == pytest.approx(0.1438410362, rel=1e-6)
    # T = 2: q = softmax([log 3, 0] / 2) = [sqrt3, 1] / (sqrt3 + 1); KL * T^2
    q = [math.sqrt(3) / (math.sqrt(3) + 1), 1 / (math.sqrt(3) + 1)]
    want = 4 * (0.5 * math.log(0.5 / q[0]) + 0.5 * math.log(0.5 / q[1]))
    assert call("self_distill", [[[L3, 0.0]]], [[0.0, 0.0]], temperature=2.0) == pytest.approx(want, rel=1e-6)


def test_self_distill_trains_the_exits_not_the_target():
    z = torch.tensor([[L3, 0.0]], requires_grad=True)
    main = torch.tensor([[0.0, 0.0]], requires_grad=True)
    loss = LOSSES.get("self_distill")(LossContext())(ModelOutput(logits={"exit1": z, "main": main}), ModelOutput(), {})
    loss.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert main.grad is None  # the last classifier is the teacher: no gradient reaches it


def test_exit_kd_reads_the_stored_teacher_not_the_last_classifier():
    # the same golden value as self_distill, with the target in the teacher's output and a different main head
    assert call("exit_kd", [[[L3, 0.0]]], [[5.0, 0.0]], teacher=[[0.0, 0.0]]) == pytest.approx(0.1438410362, rel=1e-6)


def test_exit_ce_golden_and_ignores_unlabelled():
    # exit 1: -ln .75 = 0.2876820725; exit 2 ([0, 0]): ln 2 = 0.6931471806; sum 0.9808292531
    assert call("exit_ce", [[[L3, 0.0]], [[0.0, 0.0]]], [[0.0, 0.0]], labels=[0]) == pytest.approx(0.9808292531,
                                                                                                    rel=1e-6)
    # a generated text (-100) adds nothing: the mean is over labelled rows only
    assert call("exit_ce", [[[L3, 0.0], [9.0, 0.0]]], [[0.0, 0.0]] * 2, labels=[0, -100]) == pytest.approx(
        0.2876820725, rel=1e-6)
    assert call("exit_ce", [[[L3, 0.0]]], [[0.0, 0.0]], labels=[-100]) == 0.0
