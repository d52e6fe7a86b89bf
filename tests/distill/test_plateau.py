"""Training to a plateau (issue 49): teacher and students stop after an evaluation that gains less than
`min_gain`, keep the weights of their best evaluation, and record the curve of every evaluation."""

import json
from pathlib import Path

import pytest
import torch

from distillery.config import SoftLabelConfig, TeacherConfig
from distillery.distill.recipe import Paths, distill
from distillery.logits.run import soft_labels
from distillery.teacher.train import PlateauStop, train_teacher
from tests.conftest import conf, make_student

pytestmark = pytest.mark.needs_data

SCRIPT = [0.50, 0.60, 0.70, 0.65, 0.66, 0.90]  # the dev scores the evaluations are made to return, in order


@pytest.fixture(scope="module")
def logits(tmp_path_factory, tiny_teacher, sst2_prepared):
    d = tmp_path_factory.mktemp("plateau_logits")
    soft_labels(conf(SoftLabelConfig, batch_tokens=512), tiny_teacher, sst2_prepared, None, d / "logits",
                d / "store", d / "m.json")
    return d / "logits"


def _scripted_student(monkeypatch, seen: list):
    """Every evaluation of a classification student returns the next score of SCRIPT and records the weights it saw."""
    from distillery.tasks.classification import Classification

    def evaluate(self):
        seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return {"accuracy": SCRIPT[len(seen) - 1]}

    monkeypatch.setattr(Classification, "evaluate", evaluate)


def _bilstm(**kw):
    return make_student("plat", model="bilstm", transfer_set="train", losses={"mse_logits": 1.0}, batch_size=32,
                        lr=1e-3, model_args={"hidden_size": 8, "mlp_size": 8}, **{"patience": 1, **kw})


def _run(tmp_path, cfg, prepared, teacher, logits) -> dict:
    return distill(cfg, Paths(Path(prepared), Path(teacher), Path(logits), None, tmp_path / "out",
                              tmp_path / "m.json", tmp_path / "live"))


def test_student_stops_at_the_plateau_and_keeps_its_best_weights(tmp_path, monkeypatch, sst2_prepared,
                                                                  tiny_teacher, logits):
    from distillery.students import load_student

    seen: list = []
    _scripted_student(monkeypatch, seen)
    # 300 rows / 32 = 10 batches an epoch, 2 evaluations an epoch (after batches 5 and 10); cap 10 epochs
    m = _run(tmp_path, _bilstm(epochs=10, min_gain=0.01, evals_per_epoch=2), sst2_prepared, tiny_teacher, logits)
    # 0.50, 0.60, 0.70 rise; 0.65 gains less than 0.01 over 0.70: the step stops after the 4th evaluation
    assert len(seen) == 4
    info = json.loads((tmp_path / "out" / "student.json").read_text())
    evals = [h for h in info["history"] if not h.get("kept")]
    assert [h["epoch"] for h in evals] == [0.5, 1, 1.5, 2]
    assert [h["dev_accuracy"] for h in evals] == SCRIPT[:4]  # the curve of every evaluation
    assert all(h["loss"] > 0 for h in evals)
    kept = info["history"][-1]
    assert kept["kept"] and kept["epoch"] == 1.5 and kept["dev_accuracy"] == 0.70
    assert m["dev_accuracy"] == 0.70  # the metrics are the kept weights'
    assert m["kept_epoch"] == 1.5 and [c["accuracy"] for c in m["curve"]] == SCRIPT[:4]
    model, _, _ = load_student(tmp_path / "out")
    saved = model.state_dict()
    assert all(torch.equal(saved[k], seen[2][k]) for k in saved)  # the weights of the best evaluation, not the last
    assert not all(torch.equal(saved[k], seen[3][k]) for k in saved)
    plot = tmp_path / "live" / "plots" / "metrics" / "dev" / "accuracy.tsv"
    assert len(plot.read_text().strip().splitlines()) == 1 + 4  # every evaluation in the DVCLive curve


def test_patience_and_max_steps_cap_a_student(tmp_path, monkeypatch, sst2_prepared, tiny_teacher, logits):
    seen: list = []
    _scripted_student(monkeypatch, seen)
    # patience 3: 0.65 and 0.66 do not stop it, 0.90 resets the count; max_steps 28 ends the run inside epoch 3
    m = _run(tmp_path, _bilstm(epochs=10, min_gain=0.01, evals_per_epoch=2, patience=3, max_steps=28),
             sst2_prepared, tiny_teacher, logits)
    info = json.loads((tmp_path / "out" / "student.json").read_text())
    evals = [h["epoch"] for h in info["history"] if not h.get("kept")]
    assert evals == [0.5, 1, 1.5, 2, 2.5, 2.8]  # the last evaluation is where max_steps ends the step
    assert m["dev_accuracy"] == 0.90 and info["history"][-1]["epoch"] == 2.8


def test_without_min_gain_every_epoch_runs_and_the_last_weights_are_kept(tmp_path, monkeypatch, sst2_prepared,
                                                                          tiny_teacher, logits):
    seen: list = []
    _scripted_student(monkeypatch, seen)
    m = _run(tmp_path, _bilstm(epochs=3, min_gain=None, evals_per_epoch=1), sst2_prepared, tiny_teacher, logits)
    info = json.loads((tmp_path / "out" / "student.json").read_text())
    assert [h["epoch"] for h in info["history"]] == [1, 2, 3] and len(seen) == 3
    assert m["dev_accuracy"] == SCRIPT[2]


def test_teacher_stops_at_the_plateau_and_keeps_its_best_weights(tmp_path, monkeypatch, tiny_base, sst2_prepared):
    from safetensors.torch import load_file

    from distillery.data.tasks import TaskSpec

    calls, weights = [], []
    def score(self, labels, logits):
        calls.append(1)
        return {"accuracy": SCRIPT[len(calls) - 1]}

    monkeypatch.setattr(TaskSpec, "score", score)
    on_evaluate = PlateauStop.on_evaluate

    def record(self, args, state, control, metrics=None, model=None, **kw):
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return on_evaluate(self, args, state, control, metrics=metrics, model=model, **kw)

    monkeypatch.setattr(PlateauStop, "on_evaluate", record)
    cfg = conf(TeacherConfig, base_model=str(tiny_base), epochs=10, batch_size=32, lr=1e-3, bf16=False,
               logging_steps=5, min_gain=0.01, evals_per_epoch=2, patience=1)
    r = train_teacher(cfg, sst2_prepared, tmp_path / "teacher", tmp_path / "live")
    assert [c["accuracy"] for c in r["curve"]] == SCRIPT[:4] and r["steps"] == 20  # stopped after the 4th
    assert r["dev_accuracy"] == 0.70 and r["kept_epoch"] == 1.5
    saved = load_file(tmp_path / "teacher" / "model.safetensors")
    assert all(torch.equal(saved[k], weights[2][k]) for k in saved if k in weights[2])
    assert not all(torch.equal(saved[k], weights[3][k]) for k in saved if k in weights[3])
    info = json.loads((tmp_path / "teacher" / "distillery.json").read_text())
    assert info["dev_accuracy"] == 0.70


def test_plateau_settings_are_checked():
    from distillery.errors import DistilleryError

    with pytest.raises(DistilleryError, match=r"students.plat.evals_per_epoch: must be in 1..1000, got 0"):
        _bilstm(epochs=1, min_gain=0.01, evals_per_epoch=0)
    with pytest.raises(DistilleryError, match=r"teacher.min_gain: must be in \[0, 1\], got -0.1"):
        conf(TeacherConfig, min_gain=-0.1)
    with pytest.raises(DistilleryError, match=r"teacher.patience: must be in 1..1000, got 0"):
        conf(TeacherConfig, patience=0)


def test_teacher_epochs_cap_before_max_steps(tmp_path, tiny_base, sst2_prepared):
    """max_steps is a cap beside epochs, not instead of them: 2 epochs of 10 steps under max_steps 1000 is 20 steps."""
    cfg = conf(TeacherConfig, base_model=str(tiny_base), epochs=2, max_steps=1000, batch_size=32, lr=1e-3, bf16=False,
               min_gain=1.0, patience=1000, evals_per_epoch=1)
    r = train_teacher(cfg, sst2_prepared, tmp_path / "teacher", tmp_path / "live")
    assert r["steps"] == 20 and [c["epoch"] for c in r["curve"]] == [1.0, 2.0]
    capped = conf(TeacherConfig, base_model=str(tiny_base), epochs=2, max_steps=15, batch_size=32, lr=1e-3,
                  bf16=False, min_gain=1.0, patience=1000, evals_per_epoch=1)
    r = train_teacher(capped, sst2_prepared, tmp_path / "teacher2", tmp_path / "live2")
    assert r["steps"] == 15 and [c["epoch"] for c in r["curve"]] == [1.0, 1.5]  # the last step is evaluated too
