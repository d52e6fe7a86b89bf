"""The `augment` stage: the prepared train split -> originals + Tang et al. copies, streamed to disk.

Memory stays flat in n_iter: copies are streamed to a scratch file with one 8-byte hash each
(an `array('Q')`, not Python objects); a second pass keeps each text's first occurrence.
"""

import csv
import multiprocessing as mp
from array import array
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from distillery.augment.rules import PosVocab, augment_sentence
from distillery.augment.tagger import load_tagger, tag_sentences
from distillery.config import AugmentConfig
from distillery.data.ids import text_id
from distillery.data.prepare import load_prepared
from distillery.io import atomic_dir, atomic_file, scratch_dir, write_metrics

AUG_COLUMNS = ["id", "text_a", "text_b", "label", "source_id", "rules"]
RULE_ORDER = ("mask", "pos", "ngram")


def _example_rng(seed: int, example_id: str) -> np.random.Generator:
    # Seeded per example: the output does not depend on chunking or order of processing.
    return np.random.default_rng([seed, int(example_id, 16) & 0x7FFFFFFFFFFFFFFF])


def _writer(fh):
    return csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, escapechar=None, lineterminator="\n")


def _tag_chunk(args: tuple[str, list[tuple[str, ...]]]) -> list[list[str]]:
    name, sentences = args
    return tag_sentences(load_tagger(name), sentences)


def tag_train(cfg: AugmentConfig, split: dict[str, list[list[str]]], workers: int = 1):
    """Tag each distinct sentence once (in `workers` processes); build the per-tag unigram vocabulary."""
    sides = list(split)
    load_tagger(cfg.tagger)  # fail fast, with the param's name, before forking
    distinct = sorted({tuple(ws) for s in sides for ws in split[s] if ws})
    chunks = [distinct[i::workers] for i in range(workers)]
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_tag_chunk, [(cfg.tagger, c) for c in chunks])
    else:
        parts = [_tag_chunk((cfg.tagger, chunks[0]))]
    tagged = {sent: tags for chunk, part in zip(chunks, parts) for sent, tags in zip(chunk, part)}
    tagged[()] = []
    tags = {s: [tagged[tuple(ws)] for ws in split[s]] for s in sides}
    return tags, PosVocab.build(distinct, [tagged[d] for d in distinct])


# What forked augmentation workers read (set just before the pool starts; fork shares it copy-on-write).
_JOB: dict = {}


def _augment_chunk(bounds: tuple[int, int, str]) -> tuple[bytes, int]:
    """Augment examples [lo, hi) into `scratch`; return their candidates' hashes and the unchanged count."""
    lo, hi, scratch = bounds
    cfg, train, split, tags, vocab, pair = (_JOB[k] for k in ("cfg", "train", "split", "tags", "vocab", "pair"))
    sides = list(split)
    keys = array("Q")
    unchanged = 0
    with open(scratch, "w", encoding="utf-8", newline="") as fh:
        w = _writer(fh)
        rows = train.iloc[lo:hi].itertuples(index=False)
        for i, row in enumerate(tqdm(rows, total=hi - lo, desc="augment", unit="ex", mininterval=2,
                                     disable=lo > 0), start=lo):
            rng = _example_rng(cfg.seed, row.id)
            for _ in range(cfg.n_iter):
                texts, applied = [], set()
                for s in sides:
                    ws, rules = augment_sentence(split[s][i], tags[s][i] if tags[s] else None, cfg, vocab, rng)
                    texts.append(" ".join(ws))
                    applied.update(rules)
                a, b = texts[0], texts[1] if len(texts) > 1 else ""
                if not applied or not a or (pair and not b):
                    unchanged += 1
                    continue
                key = int(text_id(a, b), 16)
                w.writerow([f"{key:016x}", a, b, row.label, row.id, "+".join(r for r in RULE_ORDER if r in applied)])
                keys.append(key)
    return keys.tobytes(), unchanged


def _write_augmented(path: Path, train, jobs: list[tuple[int, int, str]], cand: np.ndarray, counts: Counter) -> None:
    """Originals first, then each candidate that is the first of its text and not an original."""
    originals = np.array([int(i, 16) for i in train["id"]], dtype=np.uint64)
    keep = np.zeros(len(cand), dtype=bool)
    keep[np.unique(cand, return_index=True)[1]] = True  # first occurrence of each text
    keep &= ~np.isin(cand, originals)  # and never a copy identical to an original
    counts["duplicates_dropped"] = int(len(cand) - keep.sum())
    with atomic_file(path) as out:
        w = _writer(out)
        w.writerow(AUG_COLUMNS)
        for row in train.itertuples(index=False):
            w.writerow([row.id, row.text_a, row.text_b, row.label, row.id, "original"])
        pos = 0
        for _, _, scratch in jobs:
            with open(scratch, encoding="utf-8", newline="") as src:
                for line in src:
                    if keep[pos]:
                        out.write(line)
                        counts["generated"] += 1
                        for r in line.rstrip("\n").rsplit("\t", 1)[1].split("+"):
                            counts[f"rule_{r}"] += 1
                    pos += 1


def augment(cfg: AugmentConfig, prepared_dir: str | Path, out_dir: str | Path, metrics_path: str | Path,
            workers: int = 1) -> dict:
    """Write originals + augmented copies to out_dir/augmented.tsv. `workers` processes share the work;
    the output does not depend on it (every example has its own seeded generator)."""
    prep = load_prepared(prepared_dir)
    train = prep.train
    workers = max(1, min(workers, len(train)))
    sides = ["text_a", "text_b"] if prep.task.is_pair else ["text_a"]
    split = {s: [t.split() for t in train[s].tolist()] for s in sides}
    tags: dict[str, list[list[str]] | None] = {s: None for s in sides}
    vocab = None
    if cfg.p_pos > 0:
        tags, vocab = tag_train(cfg, split, workers)
    counts: Counter = Counter()
    out_dir = Path(out_dir)
    with scratch_dir(out_dir, "candidates") as scratch:  # beside the output; gone after a kill on the next run
        edges = np.linspace(0, len(train), workers + 1).astype(int)
        jobs = [(int(lo), int(hi), str(scratch / f"candidates-{k}.tsv")) for k, (lo, hi) in enumerate(zip(edges, edges[1:]))]
        _JOB.update(cfg=cfg, train=train, split=split, tags=tags, vocab=vocab, pair=prep.task.is_pair)
        try:
            if workers > 1:
                with mp.get_context("fork").Pool(workers) as pool:
                    results = pool.map(_augment_chunk, jobs)
            else:
                results = [_augment_chunk(jobs[0])]
        finally:
            _JOB.clear()
        counts["unchanged"] = sum(u for _, u in results)
        with atomic_dir(out_dir, "augment") as tmp:
            _write_augmented(tmp / "augmented.tsv", train, jobs,
                             np.frombuffer(b"".join(k for k, _ in results), dtype=np.uint64), counts)
    metrics = {
        "originals": len(train),
        "generated": counts["generated"],
        "duplicates_dropped": counts["duplicates_dropped"],
        "unchanged_dropped": counts["unchanged"],
        **{f"rule_{r}": counts[f"rule_{r}"] for r in RULE_ORDER},
    }
    write_metrics(metrics_path, metrics, "augment", written=out_dir)
    return metrics
