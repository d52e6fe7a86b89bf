"""Regression (issue 31, GLUE STS-B): the preset, score labels, the losses and metrics against hand-computed
values, the refusals (losses on class probabilities, FastBERT), and a one-output teacher and students through
every stage as the commands run them."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from distillery.config import PrepareConfig
from distillery.data.prepare import load_prepared, prepare
from distillery.errors import DistilleryError
from distillery.losses import LOSSES
from distillery.losses.kd import hard_mse, mse_logits
from distillery.metrics import agreement, task_metric
from tests.conftest import GLUE, REPO, conf, repo_params

pytestmark = pytest.mark.needs_data


def test_hard_mse_skips_rows_without_a_score():
    pred = torch.tensor([[1.0], [2.0], [3.0]])
    target = torch.tensor([1.5, float("nan"), 2.0])
    assert hard_mse(pred, target).item() == pytest.approx((0.5**2 + 1.0**2) / 2)  # 0.625
    assert hard_mse(pred, torch.full((3,), float("nan"))).item() == 0.0
    assert mse_logits(pred, torch.tensor([[0.0], [2.0], [5.0]])).item() == pytest.approx((1 + 0 + 4) / 3)


def test_pearson_spearman_and_agreement_against_hand_values():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    # deviations (-1.5, -0.5, 0.5, 1.5) and (-1.5, 0.5, -0.5, 1.5): covariance 4, variances 5 and 5 -> r 0.8
    assert task_metric("pearson", y, np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)
    assert task_metric("spearman", y, np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)
    p = np.array([1.0, 4.0, 9.0, 100.0])  # monotone: Spearman 1; Pearson 151 / sqrt(5 * 6849)
    assert task_metric("spearman", y, p) == pytest.approx(1.0)
    assert task_metric("pearson", y, p) == pytest.approx(151 / np.sqrt(5 * 6849))
    assert task_metric("pearson", y, np.full(4, 2.0)) == 0.0  # a constant prediction: no correlation, not NaN
    a = y.reshape(-1, 1)
    assert agreement("regression", a, a) == 1.0 and agreement("regression", a, 2 * a + 1) == pytest.approx(1.0)
    assert agreement("classification", np.eye(3), np.eye(3)[[0, 2, 1]]) == pytest.approx(1 / 3)


def test_stsb_preset_reads_scores_pairs_and_both_metrics(tmp_path):
    info = prepare(conf(PrepareConfig, task="stsb", data_dir=str(GLUE / "STS-B"), max_train=0, max_dev=0),
                   tmp_path / "p")
    assert info["problem"] == "regression" and info["metrics"] == ["pearson", "spearman"]
    prep = load_prepared(tmp_path / "p")
    assert prep.num_labels == 1 and prep.task.regression and prep.task.is_pair and len(prep.dev) == 1500
    assert prep.counts["train"]["rows_read"] == 5749
    first = (GLUE / "STS-B" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1].split("\t")
    assert prep.dev["label"].iloc[0] == float(first[9]) and prep.dev["text_b"].iloc[0] == first[8].strip()
    assert prep.dev["label"].dtype == np.float64 and 0.0 <= prep.dev["label"].min() < prep.dev["label"].max() <= 5.0


@pytest.mark.parametrize("train,expect", [
    ("a\tb\tscore\nx\ty\t2.5\nu\tv\thigh\n", r"train\.tsv:3: label 'high' is not a finite number, and prepare\.problem "
                                            r"is regression"),
    ("a\tb\tscore\nx\ty\t2.5\nu\tv\tnan\n", r"train\.tsv:3: label 'nan' is not a finite number"),
    ("a\tb\tscore\nx\ty\t2.5\nu\tv\t2.5\n", r"train\.tsv: every score in column 'score' is the same"),
])
def test_bad_scores_name_file_and_line(tmp_path, train, expect):
    (tmp_path / "train.tsv").write_text(train, encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("a\tb\tscore\nx\ty\t1\n", encoding="utf-8")
    cfg = conf(PrepareConfig, task="sim", data_dir=str(tmp_path), train_file="train.tsv", dev_file="dev.tsv",
               text_column="a", text_pair_column="b", label_column="score", problem="regression", max_train=0)
    with pytest.raises(DistilleryError, match=expect):
        prepare(cfg, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_a_repeated_pair_keeps_the_mean_of_its_scores(tmp_path):
    (tmp_path / "train.tsv").write_text("a\tb\tscore\nx\ty\t1.0\nx\ty\t2.0\nu\tv\t4\n", encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("a\tb\tscore\nx\ty\t1\n", encoding="utf-8")
    cfg = conf(PrepareConfig, task="sim", data_dir=str(tmp_path), train_file="train.tsv", dev_file="dev.tsv",
               text_column="a", text_pair_column="b", label_column="score", problem="regression", max_train=0)
    prepare(cfg, tmp_path / "p")
    assert load_prepared(tmp_path / "p").train["label"].tolist() == [1.5, 4.0]


def run_stage(cwd, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_regression_through_every_stage(tmp_path, tiny_base):
    """STS-B pairs: a one-output teacher (MSE), soft labels, a BiLSTM (MSE on the teacher's score) and a PKD
    student (MSE on the score and the gold score + the patient loss), their exports and evaluate with Pearson and
    Spearman; a loss on class probabilities and FastBERT are refused with one line naming the param."""
    import yaml

    doc = repo_params()
    doc["prepare"].update(task="stsb", data_dir=str(GLUE / "STS-B"), max_train=300, max_dev=100)
    doc["teacher"].update(base_model=str(tiny_base), epochs=1, bf16=False, lr=1e-3)
    doc["soft_labels"]["features"] = ["cls@1"]
    doc["augment"]["n_iter"] = 1
    doc["evaluate"].update(repeats=1, warmup=0)
    doc["students"] = {
        "bilstm_kd": {"model": "bilstm", "losses": {"mse_logits": 1.0}, "epochs": 1,
                      "model_args": {"hidden_size": 8, "mlp_size": 8}},
        "pkd_skip": {"model": "pkd_skip", "transfer_set": "train", "losses": {"mse_logits": 0.5, "mse": 0.5, "pkd": 10.0},
                     "model_args": {"num_layers": 2}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    for cmd in (["prepare"], ["teacher"], ["augment", "--workers", "1"], ["soft-labels"],
                ["distill", "--name", "bilstm_kd"], ["distill", "--name", "pkd_skip"],
                ["export", "--name", "bilstm_kd"], ["export", "--name", "pkd_skip"], ["evaluate"]):
        r = run_stage(tmp_path, *cmd)
        assert r.returncode == 0, (cmd, r.stderr[-2000:])
    config = json.loads((tmp_path / "models/teacher/config.json").read_text())
    assert len(config["id2label"]) == 1 and config["problem_type"] == "regression"
    summary = json.loads((tmp_path / "metrics/eval/summary.json").read_text())
    assert summary["metric"] == "pearson" and set(summary["teacher"]) >= {"pearson", "spearman", "retention"}
    assert {"bilstm_kd", "pkd_skip"} <= set(summary) and -1 <= summary["pkd_skip"]["pearson"] <= 1
    table = (tmp_path / "metrics/eval/table.md").read_text()
    assert "| model | family | params (M) | pearson | retention | spearman |" in table and "Pearson r with PyTorch" in table
    siamese = json.loads((tmp_path / "exports/bilstm_kd/export.json").read_text())
    assert siamese["int8_agreement"] > 0.95  # the shared LSTM stays fp32 in the int8 graph (quantised per tensor: ~0.6)
    export = json.loads((tmp_path / "exports/pkd_skip/export.json").read_text())
    assert export["onnx_agreement"] > 0.999 and "onnx_dev_spearman" in export
    card = (tmp_path / "exports/pkd_skip/README.md").read_text()
    assert "a regression: one output, the predicted score" in card and "type: spearman" in card

    doc["students"] |= {"bert_soft": {"model": "bert", "losses": {"soft_ce": 1.0}, "model_args": {"num_layers": 1}},
                        "fastbert": {"model": "fastbert", "losses": {"self_distill": 1.0}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    r = run_stage(tmp_path, "distill", "--name", "bert_soft")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: param students.bert_soft.losses.soft_ce: needs class probabilities, and task stsb is a regression "
        "(one output); use " + ", ".join(sorted(n for n in LOSSES if not LOSSES.get(n).probabilities))]
    r = run_stage(tmp_path, "distill", "--name", "fastbert")
    assert r.returncode == 2 and "param students.fastbert.model: the fastbert student cannot learn a regression" in r.stderr
    assert not (tmp_path / "models/students/bert_soft").exists() and not (tmp_path / "models/students/fastbert").exists()
