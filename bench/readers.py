"""Which library reads the user's files best: distillery's readers (module `data.files`: Python's csv module
for CSV, a line split for TSV, pandas for JSON Lines and Parquet) against `datasets.load_dataset` and pandas'
`read_csv`, on real files, for time and for what each does with a ragged row.

    python bench/readers.py

Prints one table: seconds to read each file into rows of strings (best of 3), and how each reader answers a
copy of Emotion's training file with one short row (line 5,000: a field missing).
"""

import csv
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from distillery.data.files import read_frame
from distillery.errors import DistilleryError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FILES = [  # (label, path, format, delimiter)
    ("SST-2 train (TSV, 67,349 rows)", DATA / "glue/SST-2/train.tsv", "tsv", "\t"),
    ("Emotion train (';' CSV, 16,000)", DATA / "text-classification/emotion/train.txt", "csv", ";"),
    ("TREC train (CSV, 5,452)", DATA / "text-classification/trec/train.csv", "csv", ","),
]


def best(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def with_datasets(path: Path, fmt: str, sep: str, cache: str):
    from datasets import load_dataset

    kw = {"sep": sep} | ({"quoting": csv.QUOTE_NONE} if fmt == "tsv" else {})
    return load_dataset("csv", data_files=str(path), split="train", cache_dir=cache, **kw).to_pandas()


def with_pandas(path: Path, fmt: str, sep: str):
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False,
                       quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)


def answer(fn) -> str:
    try:
        frame = fn()
    except DistilleryError as e:
        return f"refused: `{str(e).split(': ', 1)[1][:60]}...` (names line 5000)"
    except Exception as e:  # noqa: BLE001 - what the library raises is the finding
        return f"{type(e).__name__}: {str(e).splitlines()[0][:70]}"
    bad = frame.iloc[4998] if len(frame) > 4998 else None
    return f"read silently: the row's label is {bad.iloc[-1]!r}" if bad is not None else "read"


def main() -> None:
    cache = tempfile.mkdtemp(prefix="readers-hf-")
    try:
        print("| file | distillery (`data.files`) | pandas `read_csv` | `datasets.load_dataset` |")
        print("|---|---|---|---|")
        for label, path, fmt, sep in FILES:
            ours = best(lambda: read_frame(path, fmt, None if sep in ("\t", ",") else sep))
            pd_s = best(lambda: with_pandas(path, fmt, sep))
            shutil.rmtree(cache, ignore_errors=True)
            t0 = time.perf_counter()
            with_datasets(path, fmt, sep, cache)  # first read: converts to Arrow in the cache
            first = time.perf_counter() - t0
            hf = best(lambda: with_datasets(path, fmt, sep, cache))
            print(f"| {label} | {ours:.3f} s | {pd_s:.3f} s | {first:.3f} s first, {hf:.3f} s cached |")
        src = DATA / "text-classification/emotion/train.txt"
        lines = src.read_text(encoding="utf-8").splitlines()
        lines[4999] = lines[4999].split(";")[0]  # line 5,000 loses its label field
        broken = Path(cache) / "broken.txt"
        broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"| a short row (line 5,000) | {answer(lambda: read_frame(broken, 'csv', ';'))} | "
              f"{answer(lambda: with_pandas(broken, 'csv', ';'))} | "
              f"{answer(lambda: with_datasets(broken, 'csv', ';', cache + '/b'))} |")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
