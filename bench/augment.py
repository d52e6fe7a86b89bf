"""Augment SST-2's training set with Tang et al.'s settings and report speed and peak memory.

    python bench/augment.py [--data ../shared/data/glue/SST-2] [--n-iter 20] [--max-train 0]

Runs the real `augment` stage (POS tagging included) on all 67,349 training sentences by default,
with the paper's settings (p_mask 0.1, p_pos 0.1, p_ng 0.25, max_ng 5, n_iter 20). Peak RSS is the
process's high-water mark, so run it with two n_iter values to see that memory stays flat.
"""

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from distillery.augment.run import augment
from distillery.config import AugmentConfig, PrepareConfig
from distillery.data.prepare import prepare

REPO = Path(__file__).resolve().parents[1]


def conf(cls, **overrides):
    """A stage config as its command builds it: its section of the repository's params.yaml, then overrides."""
    import yaml

    from distillery.config import from_section

    section = {"PrepareConfig": "prepare", "AugmentConfig": "augment"}[cls.__name__]
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text(encoding="utf-8"))
    return from_section(cls, section, {**params[section], **overrides})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/glue/SST-2"))
    ap.add_argument("--n-iter", type=int, default=20)
    ap.add_argument("--max-train", type=int, default=0, help="0: all training sentences")
    ap.add_argument("--tagger", default="en_core_web_sm")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        info = prepare(conf(PrepareConfig, task="sst2", data_dir=args.data, max_train=args.max_train), tmp / "prep")
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cfg = conf(AugmentConfig, p_mask=0.1, p_pos=0.1, p_ng=0.25, max_ng=5, n_iter=args.n_iter, tagger=args.tagger)
        t0 = time.perf_counter()
        m = augment(cfg, tmp / "prep", tmp / "aug", tmp / "m.json", workers=args.workers)
        secs = time.perf_counter() - t0
        rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024  # workers included
        size = (tmp / "aug" / "augmented.tsv").stat().st_size / 2**20
    produced = m["generated"] + m["duplicates_dropped"]
    print(f"examples: {info['n_train']}, n_iter: {args.n_iter}, tagger: {args.tagger}, workers: {args.workers}")
    print(f"generated (kept): {m['generated']:,}, duplicates dropped: {m['duplicates_dropped']:,}, "
          f"unchanged dropped: {m['unchanged_dropped']:,}; per rule: mask {m['rule_mask']:,}, "
          f"pos {m['rule_pos']:,}, ngram {m['rule_ngram']:,}; output {size:.0f} MiB")
    print(f"wall time: {secs:.1f} s (tagging included); peak RSS: {rss:.0f} MiB (before augment: {rss0:.0f} MiB)")
    print(f"sentences_per_second={produced / secs:.0f} seconds={secs:.1f} peak_rss_mib={rss:.0f}")


if __name__ == "__main__":
    main()
