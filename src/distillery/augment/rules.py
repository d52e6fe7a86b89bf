"""Tang et al. 2019 ("Distilling Task-Specific Knowledge from BERT into Simple Neural Networks"), sec. 3.1.

For each word draw X ~ U[0, 1]: if X < p_mask, the word becomes [MASK] (`mask`); else if
X < p_mask + p_pos, it becomes another word with the same POS tag, drawn from the training set's
unigram distribution of words carrying that tag (`pos`). Then, with probability p_ng, only a random
n-gram of the example is kept, n ~ U{1..max_ng} (`ngram`). Each rule is a small registered function
over one draw of random numbers, so tests can check each in isolation.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from distillery.config import AugmentConfig
from distillery.registry import Registry

RULES: Registry = Registry("augmentation rule")


@dataclass
class PosVocab:
    """Per POS tag: the words carrying it and their unigram probabilities (cumulative)."""

    words: dict[str, np.ndarray]
    cum: dict[str, np.ndarray]

    @classmethod
    def build(cls, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]]) -> "PosVocab":
        counts: dict[str, Counter] = {}
        for ws, ts in zip(sentences, tags):
            for w, t in zip(ws, ts):
                counts.setdefault(t, Counter())[w] += 1
        words, cum = {}, {}
        for t, c in sorted(counts.items()):
            items = sorted(c.items())
            words[t] = np.array([w for w, _ in items], dtype=object)
            p = np.array([n for _, n in items], dtype=np.float64)
            cum[t] = np.cumsum(p) / p.sum()
        return cls(words, cum)

    def sample(self, tag: str, u: float) -> str | None:
        if tag not in self.words:
            return None
        i = int(np.searchsorted(self.cum[tag], u, side="right"))
        return str(self.words[tag][min(i, len(self.words[tag]) - 1)])


@RULES.register("mask")
def mask_words(words: list[str], x: np.ndarray, cfg: AugmentConfig, **_) -> tuple[list[str], bool]:
    """Words whose draw X < p_mask become the mask token."""
    hit = x < cfg.p_mask
    if not hit.any():
        return words, False
    return [cfg.mask_token if h else w for w, h in zip(words, hit)], True


@RULES.register("pos")
def pos_replace(words: list[str], x: np.ndarray, cfg: AugmentConfig, *, tags: Sequence[str] | None,
                vocab: PosVocab | None, u: np.ndarray, **_) -> tuple[list[str], bool]:
    """Words with p_mask <= X < p_mask + p_pos become a same-tag word drawn by unigram frequency."""
    if cfg.p_pos == 0 or tags is None or vocab is None:
        return words, False
    hit = (x >= cfg.p_mask) & (x < cfg.p_mask + cfg.p_pos)
    if not hit.any():
        return words, False
    out, changed = list(words), False
    for i in np.flatnonzero(hit):
        w = vocab.sample(tags[i], float(u[i]))
        if w is not None and w != out[i]:
            out[i], changed = w, True
    return out, changed


@RULES.register("ngram")
def ngram_sample(words: list[str], x: np.ndarray, cfg: AugmentConfig, *, rng: np.random.Generator,
                 **_) -> tuple[list[str], bool]:
    """With probability p_ng keep one random contiguous n-gram, n ~ U{1..max_ng}."""
    if cfg.p_ng == 0 or rng.random() >= cfg.p_ng:
        return words, False
    n = int(rng.integers(1, cfg.max_ng + 1))
    if n >= len(words):
        return words, False
    start = int(rng.integers(0, len(words) - n + 1))
    return words[start:start + n], True


def augment_sentence(words: list[str], tags: Sequence[str] | None, cfg: AugmentConfig,
                     vocab: PosVocab | None, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """One augmented copy of a sentence and the names of the rules that changed it."""
    if not words:
        return words, []
    x = rng.random(len(words))  # one draw per word decides mask vs POS replacement
    u = rng.random(len(words))  # the unigram draw for replacements
    applied = []
    out, hit = mask_words(words, x, cfg)
    if hit:
        applied.append("mask")
    out2, hit = pos_replace(out, x, cfg, tags=tags, vocab=vocab, u=u)
    if hit:
        applied.append("pos")
    out3, hit = ngram_sample(out2, x, cfg, rng=rng)
    if hit:
        applied.append("ngram")
    return out3, applied
