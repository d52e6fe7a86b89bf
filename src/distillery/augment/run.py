"""The `augment` stage: the prepared train split -> originals + Tang et al. copies, streamed to disk.

Memory stays flat in n_iter: copies are streamed to a scratch file with one 8-byte hash each
(an `array('Q')`, not Python objects); a second pass keeps each text's first occurrence.
"""

import csv
import os
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
from distillery.io import atomic_file, write_json

AUG_COLUMNS = ["id", "text_a", "text_b", "label", "source_id", "rules"]
RULE_ORDER = ("mask", "pos", "ngram")


def _example_rng(seed: int, example_id: str) -> np.random.Generator:
    # Seeded per example: the output does not depend on chunking or order of processing.
    return np.random.default_rng([seed, int(example_id, 16) & 0x7FFFFFFFFFFFFFFF])


def _writer(fh):
    return csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, escapechar=None, lineterminator="\n")


def tag_train(cfg: AugmentConfig, split: dict[str, list[list[str]]]):
    """Tag each distinct sentence once; build the per-tag unigram vocabulary of the training set."""
    sides = list(split)
    nlp = load_tagger(cfg.tagger)
    distinct = sorted({tuple(ws) for s in sides for ws in split[s] if ws})
    tagged = dict(zip(distinct, tag_sentences(nlp, tqdm(distinct, desc="POS tagging", unit="sent", mininterval=2))))
    tagged[()] = []
    tags = {s: [tagged[tuple(ws)] for ws in split[s]] for s in sides}
    return tags, PosVocab.build(distinct, [tagged[d] for d in distinct])


def augment(cfg: AugmentConfig, prepared_dir: str | Path, out_dir: str | Path, metrics_path: str | Path) -> dict:
    task, info, train, _ = load_prepared(prepared_dir)
    sides = ["text_a", "text_b"] if info["pair"] else ["text_a"]
    split = {s: [t.split() for t in train[s].tolist()] for s in sides}
    tags: dict[str, list[list[str]] | None] = {s: None for s in sides}
    vocab = None
    if cfg.p_pos > 0:
        tags, vocab = tag_train(cfg, split)
    counts: Counter = Counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = out_dir / ".candidates.tsv.tmp"
    keys = array("Q")
    try:
        with open(scratch, "w", encoding="utf-8", newline="") as fh:
            w = _writer(fh)
            rows = train.itertuples(index=False)
            for i, row in enumerate(tqdm(rows, total=len(train), desc="augment", unit="ex", mininterval=2)):
                rng = _example_rng(cfg.seed, row.id)
                for _ in range(cfg.n_iter):
                    texts, applied = [], set()
                    for s in sides:
                        ws, rules = augment_sentence(split[s][i], tags[s][i] if tags[s] else None, cfg, vocab, rng)
                        texts.append(" ".join(ws))
                        applied.update(rules)
                    a, b = texts[0], texts[1] if len(texts) > 1 else ""
                    if not applied or not a or (info["pair"] and not b):
                        counts["unchanged"] += 1
                        continue
                    key = int(text_id(a, b), 16)
                    names = "+".join(r for r in RULE_ORDER if r in applied)
                    w.writerow([f"{key:016x}", a, b, row.label, row.id, names])
                    keys.append(key)
        cand = np.frombuffer(keys, dtype=np.uint64) if len(keys) else np.zeros(0, np.uint64)
        originals = np.array([int(i, 16) for i in train["id"]], dtype=np.uint64)
        keep = np.zeros(len(cand), dtype=bool)
        keep[np.unique(cand, return_index=True)[1]] = True  # first occurrence of each text
        keep &= ~np.isin(cand, originals)  # and never a copy identical to an original
        counts["duplicates_dropped"] = int(len(cand) - keep.sum())
        with atomic_file(out_dir / "augmented.tsv") as out, open(scratch, encoding="utf-8", newline="") as src:
            w = _writer(out)
            w.writerow(AUG_COLUMNS)
            for row in train.itertuples(index=False):
                w.writerow([row.id, row.text_a, row.text_b, row.label, row.id, "original"])
            for line, k in zip(src, keep):
                if k:
                    out.write(line)
                    rules = line.rstrip("\n").rsplit("\t", 1)[1]
                    counts["generated"] += 1
                    for r in rules.split("+"):
                        counts[f"rule_{r}"] += 1
    finally:
        if scratch.exists():
            os.unlink(scratch)
    metrics = {
        "originals": len(train),
        "generated": counts["generated"],
        "duplicates_dropped": counts["duplicates_dropped"],
        "unchanged_dropped": counts["unchanged"],
        **{f"rule_{r}": counts[f"rule_{r}"] for r in RULE_ORDER},
    }
    write_json(metrics_path, metrics)
    return metrics
