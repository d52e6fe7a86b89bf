"""The one length-bucketing batcher: every stage that runs a model over many texts batches here.

Texts of similar length share a batch, so padding (and wasted work) stays small:
- inference (`rng` None): longest first, ties broken by `tie`, so the plan depends only on which
  texts are asked for (a resumed soft-labels run computes exactly what an uninterrupted one would).
  With `batch_tokens`, each batch holds texts of one length only (no padding at all) and about
  `batch_tokens` tokens: short texts go in large batches. Else `batch_size` texts per batch.
- training (`rng` given): shuffled, then sorted by length within chunks of 50 batches, and the
  batches shuffled: little padding, still random.
"""

import numpy as np
import pandas as pd


def text_lengths(frame: pd.DataFrame) -> np.ndarray:
    """A cheap length proxy for a prepared frame: characters of text_a + text_b."""
    return (frame["text_a"].str.len() + frame["text_b"].str.len()).to_numpy()


def _cut(order: np.ndarray, lengths: np.ndarray, batch_size: int, batch_tokens: int) -> list[np.ndarray]:
    if not batch_tokens:
        return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    batches = []
    for group in np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1):
        if len(group):
            size = max(1, batch_tokens // max(int(lengths[group[0]]), 1))
            batches.extend(group[s:s + size] for s in range(0, len(group), size))
    return batches


def length_batches(lengths: np.ndarray, batch_size: int = 0, batch_tokens: int = 0, tie: np.ndarray | None = None,
                   rng: np.random.Generator | None = None, chunk: int = 50) -> list[np.ndarray]:
    """Row-index batches over `lengths` (see the module docstring); give batch_size or batch_tokens."""
    if (batch_size > 0) == (batch_tokens > 0):
        raise ValueError("give exactly one of batch_size and batch_tokens")
    n = len(lengths)
    if rng is None:
        order = np.lexsort((np.arange(n) if tie is None else tie, -lengths))
        return _cut(order, lengths, batch_size, batch_tokens)
    perm = rng.permutation(n)
    batches = []
    for s in range(0, n, batch_size * chunk):
        part = perm[s:s + batch_size * chunk]
        batches.extend(_cut(part[np.argsort(lengths[part], kind="stable")], lengths, batch_size, 0))
    rng.shuffle(batches)
    return batches
