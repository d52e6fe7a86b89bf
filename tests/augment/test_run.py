import pytest

from distillery.augment.run import augment
from distillery.config import AugmentConfig, PrepareConfig
from distillery.data.prepare import prepare
from distillery.data.table import read_table
from tests.conftest import GLUE, conf

pytestmark = pytest.mark.needs_data


def test_same_seed_same_bytes_and_provenance(tmp_path, sst2_prepared):
    cfg = conf(AugmentConfig, n_iter=3)
    augment(cfg, sst2_prepared, tmp_path / "a", tmp_path / "a.json")
    augment(cfg, sst2_prepared, tmp_path / "b", tmp_path / "b.json")
    a = (tmp_path / "a" / "augmented.tsv").read_bytes()
    assert a == (tmp_path / "b" / "augmented.tsv").read_bytes()
    augment(conf(AugmentConfig, n_iter=3, seed=1), sst2_prepared, tmp_path / "c", tmp_path / "c.json")
    assert a != (tmp_path / "c" / "augmented.tsv").read_bytes()
    frame = read_table(tmp_path / "a" / "augmented.tsv")
    assert frame["id"].is_unique
    orig = frame[frame["rules"] == "original"]
    gen = frame[frame["rules"] != "original"]
    assert len(orig) == 300 and len(gen) > 300
    assert set(gen["source_id"]) <= set(orig["id"])
    assert set("+".join(gen["rules"]).split("+")) == {"mask", "pos", "ngram"}


def test_pairs_keep_both_sides(tmp_path):
    prep = tmp_path / "prep"
    prepare(conf(PrepareConfig, task="rte", data_dir=str(GLUE / "RTE"), max_train=40, max_dev=10), prep)
    m = augment(conf(AugmentConfig, n_iter=2, p_ng=0.5), prep, tmp_path / "aug", tmp_path / "m.json")
    frame = read_table(tmp_path / "aug" / "augmented.tsv")
    assert (frame["text_b"] != "").all() and m["generated"] > 0


def test_workers_do_not_change_output_and_pos_rule_runs(tmp_path, sst2_prepared):
    cfg = conf(AugmentConfig, n_iter=3, p_pos=0.2, tagger="en_core_web_sm")
    m1 = augment(cfg, sst2_prepared, tmp_path / "one", tmp_path / "1.json", workers=1)
    m2 = augment(cfg, sst2_prepared, tmp_path / "two", tmp_path / "2.json", workers=2)
    assert (tmp_path / "one" / "augmented.tsv").read_bytes() == (tmp_path / "two" / "augmented.tsv").read_bytes()
    assert m1 == m2 and m1["rule_pos"] > 0
    frame = read_table(tmp_path / "one" / "augmented.tsv")
    assert not any(p.name.startswith(".candidates") for p in (tmp_path / "one").iterdir())
    # a POS-only copy keeps the sentence's length and changes only some words
    orig = dict(zip(frame["id"], frame["text_a"]))
    pos_only = frame[frame["rules"] == "pos"]
    for src, text in zip(pos_only["source_id"][:50], pos_only["text_a"][:50]):
        assert len(text.split()) == len(orig[src].split()) and text != orig[src]


def test_missing_tagger_is_a_param_error(tmp_path, sst2_prepared):
    from distillery.errors import DistilleryError

    with pytest.raises(DistilleryError, match="param augment.tagger: spaCy pipeline 'xx_missing' is not installed"):
        augment(conf(AugmentConfig, p_pos=0.1, tagger="xx_missing"), sst2_prepared, tmp_path / "a", tmp_path / "m.json")
    assert not (tmp_path / "a" / "augmented.tsv").exists()
