"""The `distill` stage with transformer students on the tiny teacher and real SST-2 sentences."""

import json
import subprocess
import sys

import pytest

import dataclasses
from pathlib import Path

from distillery.config import SoftLabelConfig
from distillery.distill.recipe import Paths, distill
from distillery.errors import DistilleryError
from distillery.logits.run import soft_labels
from tests.conftest import REPO, make_student, write_params, conf

pytestmark = pytest.mark.needs_data


@pytest.fixture(scope="module")
def logits_with_cls(tmp_path_factory, tiny_teacher, sst2_prepared):
    d = tmp_path_factory.mktemp("lg")
    soft_labels(conf(SoftLabelConfig, batch_tokens=512, features=("cls@1",)), tiny_teacher, sst2_prepared, None,
                d / "logits", d / "store", d / "m.json")
    return d / "logits"


def _run(tmp_path, cfg, sst2_prepared, tiny_teacher, logits):
    return distill(cfg, Paths(Path(sst2_prepared), Path(tiny_teacher), Path(logits), None, tmp_path / "out",
                              tmp_path / "m.json", tmp_path / "live"))


def test_two_step_tinybert_learns_its_intermediate_targets(tmp_path, sst2_prepared, tiny_teacher, logits_with_cls):
    cfg = make_student(
        "tb", model="tinybert", transfer_set="train", losses={"soft_ce": 1.0}, epochs=1, batch_size=32, lr=1e-3,
        model_args={"num_layers": 2, "hidden_size": 16}, optimizer="adamw", warmup_ratio=0.1,
        intermediate={"losses": {"tinybert_embedding": 1.0, "tinybert_attention": 1.0, "tinybert_hidden": 1.0},
                      "epochs": 3, "lr": 3e-3})
    m = _run(tmp_path, cfg, sst2_prepared, tiny_teacher, logits_with_cls)
    info = json.loads((tmp_path / "out" / "student.json").read_text())
    steps = [(h["step"], h["loss"]) for h in info["history"]]
    assert [s for s, _ in steps] == ["intermediate"] * 3 + ["train"] * (len(steps) - 3)  # then its dev scores
    assert steps[2][1] < steps[0][1]  # layer-to-layer MSE falls: the student (and W_e, W_h) learn
    assert m["teacher_forward_texts"] == 3 * 300  # the teacher ran alongside in step 1 only
    assert 0 <= m["dev_accuracy"] <= 1 and (tmp_path / "out" / "config.json").is_file()


def test_pkd_reads_cls_from_the_store_else_runs_the_teacher(tmp_path, sst2_prepared, tiny_teacher, logits_with_cls):
    cfg = make_student("pk", model="pkd_skip", transfer_set="train", epochs=1, batch_size=32, lr=5e-4,
                        losses={"ce": 0.5, "soft_ce": 0.5, "pkd": 100.0}, temperature=5.0,
                        model_args={"num_layers": 2, "patient_layers": [1]})
    m = _run(tmp_path / "a", cfg, sst2_prepared, tiny_teacher, logits_with_cls)
    assert m["teacher_forward_texts"] == 0  # cls@1 came from the logits artifact
    cfg2 = dataclasses.replace(cfg, model_args={"num_layers": 2, "patient_layers": [2]})
    m2 = _run(tmp_path / "b", cfg2, sst2_prepared, tiny_teacher, logits_with_cls)
    assert m2["teacher_forward_texts"] == 300  # cls@2 not stored: computed alongside


def test_feature_loss_on_a_student_without_features_is_refused(tmp_path, sst2_prepared, tiny_teacher, logits_with_cls):
    cfg = make_student("b", model="bilstm", transfer_set="train", losses={"cosine_hidden": 1.0},
                        model_args={"hidden_size": 8, "mlp_size": 8})
    with pytest.raises(DistilleryError, match="param students.b.losses.cosine_hidden: the bilstm student has no hidden"):
        _run(tmp_path, cfg, sst2_prepared, tiny_teacher, logits_with_cls)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_student_that_does_not_fit_the_teacher(tmp_path, sst2_prepared, tiny_teacher, logits_with_cls):
    """One line naming the param, exit 2, nothing written: 3 layers copied from a 2-layer teacher."""
    write_params(tmp_path, {"d": {"model": "distilbert", "losses": {"soft_ce": 1}, "transfer_set": "train",
                                  "model_args": {"num_layers": 3, "init_layers": [1, 2, 3]}}})
    r = subprocess.run(
        [sys.executable, "-m", "stages.cli", "distill", "--name", "d", "--prepared", str(sst2_prepared), "--teacher", str(tiny_teacher),
         "--logits", str(logits_with_cls), "--out", str(tmp_path / "out")],
        cwd=tmp_path, capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: param students.d.model_args: init_layers [1, 2, 3] names teacher layer 3, but the teacher has layers 1..2"]
    assert not (tmp_path / "out").exists()


def test_intermediate_block_is_validated():
    with pytest.raises(DistilleryError, match="param students.x.intermediate.lr: must be > 0"):
        make_student("x", model="tinybert", losses={"soft_ce": 1.0},
                     intermediate={"losses": {"tinybert_hidden": 1.0}, "lr": 0})
    with pytest.raises(DistilleryError, match="param students.x.intermediate.losses: name at least one loss"):
        make_student("x", model="tinybert", losses={"soft_ce": 1.0}, intermediate={"epochs": 2})


def _cli_distill(tmp_path, name, prepared, teacher, logits, launcher=()):
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *launcher, "-m", "stages.cli", "distill", "--name", name,
                           "--prepared", str(prepared), "--teacher", str(teacher), "--logits", str(logits),
                           "--out", str(tmp_path / name), "--metrics", str(tmp_path / f"{name}.json"),
                           "--live-dir", str(tmp_path / f"live_{name}")],
                          cwd=tmp_path, capture_output=True, text=True, env=env)


def test_two_processes_over_gloo_train_the_student_one_process_does(tmp_path, sst2_prepared, tiny_teacher,
                                                                    logits_with_cls):
    """torchrun with 2 CPU processes: each takes half of every global batch of 64 and the gradients are
    averaged, so the student equals the one-process student (dropout off: no per-process randomness)."""
    import torch

    block = {"model": "bilstm", "transfer_set": "train", "epochs": 2, "losses": {"mse_logits": 1.0},
             "model_args": {"hidden_size": 16, "mlp_size": 16, "dropout": 0.0, "freeze_embeddings": False}}
    write_params(tmp_path, {"one": block, "two": block})
    r1 = _cli_distill(tmp_path, "one", sst2_prepared, tiny_teacher, logits_with_cls)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = _cli_distill(tmp_path, "two", sst2_prepared, tiny_teacher, logits_with_cls,
                      launcher=("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"))
    assert r2.returncode == 0, r2.stderr[-2000:]
    one = torch.load(tmp_path / "one" / "student.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "student.pt", weights_only=True)
    assert one.keys() == two.keys()
    moved = torch.load(tmp_path / "one" / "student.pt", weights_only=True)["head.1.weight"]
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5, msg=f"{k} differs")
    m1, m2 = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert m2["processes"] == 2 and m1["processes"] == 1
    assert abs(m1["dev_accuracy"] - m2["dev_accuracy"]) <= 1 / 100
    assert moved.abs().sum() > 0
