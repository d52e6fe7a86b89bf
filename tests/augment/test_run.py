import pytest

from distillery.augment.run import augment
from distillery.config import AugmentConfig, PrepareConfig
from distillery.data.prepare import prepare
from distillery.data.table import read_table
from tests.conftest import GLUE

pytestmark = pytest.mark.needs_data


def test_same_seed_same_bytes_and_provenance(tmp_path, sst2_prepared):
    cfg = AugmentConfig(n_iter=3)
    augment(cfg, sst2_prepared, tmp_path / "a", tmp_path / "a.json")
    augment(cfg, sst2_prepared, tmp_path / "b", tmp_path / "b.json")
    a = (tmp_path / "a" / "augmented.tsv").read_bytes()
    assert a == (tmp_path / "b" / "augmented.tsv").read_bytes()
    augment(AugmentConfig(n_iter=3, seed=1), sst2_prepared, tmp_path / "c", tmp_path / "c.json")
    assert a != (tmp_path / "c" / "augmented.tsv").read_bytes()
    frame = read_table(tmp_path / "a" / "augmented.tsv")
    assert frame["id"].is_unique
    orig = frame[frame["rules"] == "original"]
    gen = frame[frame["rules"] != "original"]
    assert len(orig) == 300 and len(gen) > 300
    assert set(gen["source_id"]) <= set(orig["id"])
    assert set("+".join(gen["rules"]).split("+")) <= {"mask", "ngram"}


def test_pairs_keep_both_sides(tmp_path):
    prep = tmp_path / "prep"
    prepare(PrepareConfig(task="rte", data_dir=str(GLUE / "RTE"), max_train=40, max_dev=10), prep)
    m = augment(AugmentConfig(n_iter=2, p_ng=0.5), prep, tmp_path / "aug", tmp_path / "m.json")
    frame = read_table(tmp_path / "aug" / "augmented.tsv")
    assert (frame["text_b"] != "").all() and m["generated"] > 0
