import numpy as np
import pytest

from tests.conftest import conf

from distillery.augment.rules import RULES, PosVocab, augment_sentence, mask_words, ngram_sample, pos_replace
from distillery.config import AugmentConfig
from distillery.errors import DistilleryError


def test_rules_registered():
    assert RULES.names() == ["mask", "ngram", "pos"]


def test_mask_rate_near_p_mask():
    cfg = conf(AugmentConfig, p_mask=0.3, p_pos=0.0, p_ng=0.0)
    rng = np.random.default_rng(0)
    words = ["w"] * 50
    masked = total = 0
    for _ in range(400):
        out, _ = augment_sentence(words, None, cfg, None, rng)
        masked += sum(w == "[MASK]" for w in out)
        total += len(out)
    assert abs(masked / total - 0.3) < 0.01


def test_pos_replacement_keeps_tag():
    sents = [["the", "cat", "runs"], ["a", "dog", "sleeps"], ["the", "bird", "sings"]]
    tags = [["DT", "NN", "VBZ"]] * 3
    vocab = PosVocab.build(sents, tags)
    cfg = conf(AugmentConfig, p_mask=0.0, p_pos=1.0, p_ng=0.0, tagger="x")
    rng = np.random.default_rng(1)
    by_tag = {"DT": {"the", "a"}, "NN": {"cat", "dog", "bird"}, "VBZ": {"runs", "sleeps", "sings"}}
    changed = 0
    for _ in range(200):
        x = rng.random(3)
        out, hit = pos_replace(["the", "cat", "runs"], x, cfg, tags=["DT", "NN", "VBZ"], vocab=vocab, u=rng.random(3))
        changed += hit
        for w, t in zip(out, ["DT", "NN", "VBZ"]):
            assert w in by_tag[t]
    assert changed > 150


def test_pos_unigram_frequencies():
    vocab = PosVocab.build([["a"] * 3 + ["b"]], [["X"] * 4])
    draws = [vocab.sample("X", u) for u in np.random.default_rng(0).random(4000)]
    assert abs(draws.count("a") / 4000 - 0.75) < 0.03


def test_ngrams_are_contiguous_spans():
    cfg = conf(AugmentConfig, p_mask=0.0, p_pos=0.0, p_ng=1.0, max_ng=3)
    words = [str(i) for i in range(10)]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(500):
        out, hit = ngram_sample(words, np.ones(10), cfg, rng=rng)
        assert hit and 1 <= len(out) <= 3
        start = int(out[0])
        assert out == words[start:start + len(out)]
        seen.add(len(out))
    assert seen == {1, 2, 3}


def test_mask_zero_probability_changes_nothing():
    out, hit = mask_words(["a", "b"], np.array([0.5, 0.9]), conf(AugmentConfig, p_mask=0.0, p_pos=0.0))
    assert out == ["a", "b"] and not hit


def test_empty_and_one_word():
    cfg = conf(AugmentConfig, p_mask=0.5, p_pos=0.0, p_ng=1.0)
    rng = np.random.default_rng(0)
    assert augment_sentence([], None, cfg, None, rng) == ([], [])
    for _ in range(20):
        out, _ = augment_sentence(["fine"], None, cfg, None, rng)
        assert out in (["fine"], ["[MASK]"])


@pytest.mark.parametrize("kw,param", [
    ({"p_mask": 1.5}, "augment.p_mask"),
    ({"p_ng": -0.1}, "augment.p_ng"),
    ({"p_mask": 0.6, "p_pos": 0.6, "tagger": "x"}, "augment.p_pos"),
    ({"max_ng": 0}, "augment.max_ng"),
    ({"n_iter": 0}, "augment.n_iter"),
    ({"p_pos": 0.1, "tagger": "none"}, "augment.tagger"),
    ({"p_pos": 0.0, "tagger": "none"}, None),
])
def test_bad_params(kw, param):
    if param is None:  # the POS rule switched off needs no tagger
        conf(AugmentConfig, **kw)
        return
    with pytest.raises(DistilleryError, match=f"param {param}"):
        conf(AugmentConfig, **kw)
