"""The `augment` stage: the prepared train split -> originals + Tang et al. copies, streamed to disk."""

import csv
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


def _example_rng(seed: int, example_id: str) -> np.random.Generator:
    # Seeded per example: the output does not depend on chunking or order of processing.
    return np.random.default_rng([seed, int(example_id, 16) & 0x7FFFFFFFFFFFFFFF])


def augment(cfg: AugmentConfig, prepared_dir: str | Path, out_dir: str | Path, metrics_path: str | Path) -> dict:
    task, info, train, _ = load_prepared(prepared_dir)
    sides = ["text_a", "text_b"] if info["pair"] else ["text_a"]
    split = {s: [t.split() for t in train[s].tolist()] for s in sides}
    tags: dict[str, list[list[str]] | None] = {s: None for s in sides}
    vocab = None
    if cfg.p_pos > 0:
        nlp = load_tagger(cfg.tagger)
        distinct = sorted({tuple(ws) for s in sides for ws in split[s]})
        tagged = dict(zip(distinct, tag_sentences(nlp, distinct)))  # each distinct sentence once
        tags = {s: [tagged[tuple(ws)] for ws in split[s]] for s in sides}
        vocab = PosVocab.build(distinct, [tagged[d] for d in distinct])
    counts: Counter = Counter()
    seen: set[int] = set()
    out_dir = Path(out_dir)
    with atomic_file(out_dir / "augmented.tsv") as fh:
        w = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, escapechar=None, lineterminator="\n")
        w.writerow(AUG_COLUMNS)
        for i, row in enumerate(train.itertuples(index=False)):
            w.writerow([row.id, row.text_a, row.text_b, row.label, row.id, "original"])
            seen.add(int(row.id, 16))
            counts["original"] += 1
        for i, row in enumerate(tqdm(train.itertuples(index=False), total=len(train), desc="augment", unit="ex")):
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
                if key in seen:
                    counts["duplicates_dropped"] += 1
                    continue
                seen.add(key)
                rule_names = [r for r in ("mask", "pos", "ngram") if r in applied]
                w.writerow([f"{key:016x}", a, b, row.label, row.id, "+".join(rule_names)])
                counts["generated"] += 1
                for r in rule_names:
                    counts[f"rule_{r}"] += 1
    metrics = {
        "originals": counts["original"],
        "generated": counts["generated"],
        "duplicates_dropped": counts["duplicates_dropped"],
        "unchanged_dropped": counts["unchanged"],
        **{k: counts[k] for k in ("rule_mask", "rule_pos", "rule_ngram")},
    }
    write_json(metrics_path, metrics)
    return metrics
