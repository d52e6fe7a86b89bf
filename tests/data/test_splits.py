"""The dev split carved from train when no dev file is named, and the optional test file (issue 49), on real data."""

import json

import numpy as np
import pandas as pd
import pytest

from distillery.config import PrepareConfig, TeacherConfig
from distillery.data.prepare import load_prepared, prepare
from distillery.errors import DistilleryError
from tests.conftest import GLUE, SHARED_DATA, conf

pytestmark = pytest.mark.needs_data

TREC = SHARED_DATA / "text-classification" / "trec"


def _trec(tmp_path, name="p", **kw):
    """TREC's 5,452 training questions and 6 coarse labels, no dev file: dev is carved from train."""
    values = dict(task="trec", data_dir=str(TREC), train_file="train.csv", text_column="text",
                  label_column="coarse_label", max_train=0, max_dev=0, seed=0)
    info = prepare(conf(PrepareConfig, **{**values, **kw}), tmp_path / name)
    return info, load_prepared(tmp_path / name)


def test_carved_dev_is_stratified_disjoint_and_seeded(tmp_path):
    raw = pd.read_csv(TREC / "train.csv")
    info, prep = _trec(tmp_path, dev_share=0.1)
    assert set(prep.train["id"]).isdisjoint(prep.dev["id"])  # no text in both
    assert prep.train["id"].nunique() + prep.dev["id"].nunique() == raw["text"].nunique()
    # stratified: each label keeps its share of the texts in dev (within one text of 10% of its count)
    per_label = raw.drop_duplicates("text")["coarse_label"].value_counts()
    dev_counts = prep.dev.drop_duplicates("id")["label"].map(dict(enumerate(prep.label_names))).value_counts()
    for label, n in per_label.items():
        assert abs(dev_counts.get(label, 0) - round(0.1 * n)) <= 1, label
    assert "set aside" in info["files"]["dev"] and info["files"]["train"].endswith("train.csv")
    _, again = _trec(tmp_path, "again", dev_share=0.1)
    assert list(again.dev["id"]) == list(prep.dev["id"])  # the same seed, the same split
    _, other = _trec(tmp_path, "other", dev_share=0.1, seed=1)
    assert set(other.dev["id"]) != set(prep.dev["id"])


def test_regression_dev_is_carved_across_the_scores(tmp_path):
    values = dict(task="sts", data_dir=str(GLUE / "STS-B"), train_file="train.tsv", format="tsv", problem="regression",
                  text_column="sentence1", text_pair_column="sentence2", label_column="score", max_train=0,
                  max_dev=0, seed=0)  # the user's own pairs with a score, and no dev file
    prepare(conf(PrepareConfig, **values, dev_share=0.2), tmp_path / "p")
    prep = load_prepared(tmp_path / "p")
    assert set(prep.train["id"]).isdisjoint(prep.dev["id"])
    share = len(prep.dev) / (len(prep.dev) + len(prep.train))
    assert 0.18 < share < 0.22
    bins = np.linspace(0, 5, 6)  # every fifth of the 0-5 scale is in dev about as often as in train
    dev_hist = np.histogram(prep.dev["label"], bins)[0] / len(prep.dev)
    train_hist = np.histogram(prep.train["label"], bins)[0] / len(prep.train)
    assert np.abs(dev_hist - train_hist).max() < 0.03


def test_a_test_file_never_changes_training(tmp_path, tiny_base):
    from distillery.teacher.train import train_teacher

    _, plain = _trec(tmp_path, "plain")
    info, with_test = _trec(tmp_path, "with_test", test_file="test.csv")
    for split in ("train.tsv", "dev.tsv"):  # the same bytes: nothing of test reaches training or its stop
        assert (tmp_path / "plain" / split).read_bytes() == (tmp_path / "with_test" / split).read_bytes()
    assert len(with_test.test) == 500 and info["n_test"] == 500 and plain.test is None
    assert info["files"]["test"].endswith("test.csv")
    digests = []
    for name in ("plain", "with_test"):
        cfg = conf(TeacherConfig, base_model=str(tiny_base), epochs=1, batch_size=64, lr=1e-3, bf16=False,
                   min_gain=0.0, evals_per_epoch=2)
        train_teacher(cfg, tmp_path / name, tmp_path / f"t_{name}", tmp_path / f"live_{name}")
        digests.append(json.loads((tmp_path / f"t_{name}" / "distillery.json").read_text())["weights_sha256"])
    assert digests[0] == digests[1]


def test_split_params_are_checked(tmp_path):
    base = dict(task="trec", data_dir=str(TREC), train_file="train.csv", text_column="text",
                label_column="coarse_label")
    with pytest.raises(DistilleryError, match=r"prepare.dev_file: names the same file as another split"):
        conf(PrepareConfig, **base, dev_file="train.csv")
    with pytest.raises(DistilleryError, match=r"prepare.test_file: names the same file as another split"):
        conf(PrepareConfig, **base, dev_file="test.csv", test_file="test.csv")
    with pytest.raises(DistilleryError, match=r"prepare.dev_share: must be in \(0, 0.5\], got 0.9"):
        conf(PrepareConfig, **base, dev_share=0.9)
    with pytest.raises(DistilleryError, match=r"prepare.test_split: names a dataset's split"):
        conf(PrepareConfig, **base, test_split="test")
