"""The user's own classification data: one file per split, in CSV (any delimiter), TSV, JSON Lines or
Parquet, with the text (and optional second text) and label columns named by params. Read with pandas:
it reads all four formats offline, keeps every value as the text the file holds (`dtype=str`, no NA
guessing) and reports ragged rows with their line, which `prepare` turns into one line naming the file.

Labels are the training split's (sorted: numerically when every label is an integer), or the order a
param fixes; a dev label that training lacks, an empty label or a label column with one class stops
`prepare` naming the file, the line and the label.
"""

import csv
import re
from pathlib import Path

import pandas as pd

from distillery.data.glue import COLUMNS, clean_text, is_blank
from distillery.data.ids import text_id
from distillery.errors import DistilleryError

FORMATS = ("csv", "tsv", "jsonl", "parquet")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def file_format(path: Path, given: str | None) -> str:
    fmt = given or SUFFIXES.get(path.suffix.lower())
    if fmt not in FORMATS:
        raise DistilleryError(f"{path}: cannot tell its format from the suffix {path.suffix!r}; set prepare.format "
                              f"({', '.join(FORMATS)})")
    return fmt


def read_frame(path: Path, fmt: str, delimiter: str | None) -> tuple[pd.DataFrame, int]:
    """The file as a frame of strings, and the line of its first data row (header + 1; 1 for JSON Lines)."""
    if not path.is_file():
        raise DistilleryError(f"{path}: no such file; check prepare.train_file / prepare.dev_file")
    try:
        if fmt in ("csv", "tsv"):
            sep = delimiter or ("\t" if fmt == "tsv" else ",")
            quoting = csv.QUOTE_NONE if fmt == "tsv" and not delimiter else csv.QUOTE_MINIMAL
            frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, quoting=quoting,
                                encoding="utf-8", engine="c")
            return frame, 2
        if fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
            return frame.astype(str).where(frame.notna(), ""), 1
        return pd.read_parquet(path).astype(str), 1  # rows, not lines: the first row is 1
    except pd.errors.ParserError as e:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if m:
            raise DistilleryError(f"{path}:{m.group(2)}: {m.group(3)} fields where the header has {m.group(1)}; "
                                  "fix or delete this row (or set prepare.delimiter)") from None
        raise DistilleryError(f"{path}: not readable as {fmt} ({str(e).splitlines()[0][:160]})") from None
    except UnicodeDecodeError as e:
        raise DistilleryError(f"{path}: not valid UTF-8 (byte {e.start}); save the file as UTF-8") from None
    except (ValueError, OSError) as e:
        raise DistilleryError(f"{path}: not readable as {fmt} ({str(e).splitlines()[0][:160]})") from None
    except pd.errors.EmptyDataError:
        raise DistilleryError(f"{path}: file is empty") from None


def read_split(path: Path, fmt: str | None, delimiter: str | None, text: str, pair: str | None,
               label: str) -> pd.DataFrame:
    """One split: columns text_a, text_b, label_raw, row (the file's line), every row validated."""
    fmt = file_format(path, fmt)
    frame, first_line = read_frame(path, fmt, delimiter)
    cols = [str(c) for c in frame.columns]
    for param, name in (("text_column", text), ("text_pair_column", pair), ("label_column", label)):
        if name is not None and name not in cols:
            raise DistilleryError(f"{path}: no column {name!r} (param prepare.{param}); the file has: "
                                  f"{', '.join(cols)}")
    if not len(frame):
        raise DistilleryError(f"{path}: no rows after the header; the split is empty")
    a = [clean_text(t) for t in frame[text].tolist()]
    b = [clean_text(t) for t in frame[pair].tolist()] if pair else [""] * len(frame)
    raw = [str(v).strip() for v in frame[label].tolist()]
    rows = [first_line + i for i in range(len(frame))]
    for i in range(len(frame)):
        if is_blank(a[i]) or (pair and is_blank(b[i])):
            raise DistilleryError(f"{path}:{rows[i]}: empty text (nothing visible); fix or delete this row")
        if raw[i] == "":
            raise DistilleryError(f"{path}:{rows[i]}: empty label in column {label!r}; fill it in or delete the row")
    return pd.DataFrame({"text_a": a, "text_b": b, "label_raw": raw, "row": rows})


def label_order(train: pd.DataFrame, path: Path, fixed: tuple[str, ...] | None) -> list[str]:
    """The label set: `fixed` in its order, else the training split's, sorted (numerically if all integers)."""
    seen = list(dict.fromkeys(train["label_raw"]))
    if fixed:
        known = set(fixed)
        bad = train.index[~train["label_raw"].isin(known)]
        if len(bad):
            r = train.loc[bad[0]]
            raise DistilleryError(f"{path}:{r['row']}: label {r['label_raw']!r} is not in prepare.labels "
                                  f"({', '.join(fixed)}); add it there or fix the row")
        return list(fixed)
    if len(seen) < 2:
        raise DistilleryError(f"{path}: the label column has one class ({seen[0]!r}); a classifier needs at least "
                              "two (check prepare.label_column)")
    if all(re.fullmatch(r"-?\d+", s) for s in seen):
        return sorted(seen, key=int)
    return sorted(seen)


def with_ids(split: pd.DataFrame, labels: list[str], path: Path) -> pd.DataFrame:
    """Map label strings to ids (refusing one the label set lacks, naming file and line) and add text ids."""
    index = {n: i for i, n in enumerate(labels)}
    bad = split.index[~split["label_raw"].isin(index)]
    if len(bad):
        r = split.loc[bad[0]]
        raise DistilleryError(f"{path}:{r['row']}: label {r['label_raw']!r} does not occur in the training split "
                              f"(labels: {', '.join(labels[:10])}{' ...' if len(labels) > 10 else ''}); fix the "
                              "row, or name every label in prepare.labels")
    out = pd.DataFrame({
        "id": [text_id(a, b) for a, b in zip(split["text_a"], split["text_b"])],
        "text_a": split["text_a"], "text_b": split["text_b"],
        "label": split["label_raw"].map(index).astype(int), "row": split["row"],
    })
    return out[COLUMNS]
