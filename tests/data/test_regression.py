"""Regression (issue 31, GLUE STS-B): the preset, score labels, the losses and metrics against hand-computed
values. A one-output teacher and students through the real DAG, and the refusals (losses on class
probabilities, FastBERT): tests/integration/test_own_data_dag.py."""

import numpy as np
import pytest
import torch

from distillery.config import PrepareConfig
from distillery.data.prepare import load_prepared, prepare
from distillery.errors import DistilleryError
from distillery.losses.kd import hard_mse, mse_logits
from distillery.metrics import agreement, task_metric
from tests.conftest import GLUE, conf

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
