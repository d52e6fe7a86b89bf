"""Examples from files or a Hugging Face dataset: one file per split in CSV (any delimiter), TSV, JSON Lines
or Parquet, or a dataset's splits, with the text (and optional second text) and label columns named by
params. The GLUE tasks are presets of these params (`data.tasks.PRESETS`).

CSV is read with Python's `csv` module, record by record: it knows the line each record starts on (a
quoted field may span lines), so a ragged row, short or long, is named by its line, where pandas' C
reader silently pads a short row with empty fields. TSV is read a line at a time without quote handling
(GLUE's texts hold bare `"`; a stray CR inside a text becomes a space). JSON Lines and Parquet are read with pandas. `bench/readers.py` compares these readers
with `datasets.load_dataset`.

Labels are the training split's (sorted: numerically when every label is an integer), or the order a
param fixes; a dev label that training lacks, an empty label or a label column with one class stops
`prepare` naming the file, the line and the label. A regression label must be a finite number.
"""

import csv
import itertools
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from distillery.data.glue import COLUMNS, clean_text, is_blank
from distillery.data.ids import text_id
from distillery.errors import DistilleryError
from distillery.io import read_utf8

FORMATS = ("csv", "tsv", "jsonl", "parquet")
csv.field_size_limit(2**31 - 1)  # a long text is a text, not an error
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def file_format(path: Path, given: str | None) -> str:
    fmt = given or SUFFIXES.get(path.suffix.lower())
    if fmt not in FORMATS:
        raise DistilleryError(f"{path}: cannot tell its format from the suffix {path.suffix!r}; set prepare.format "
                              f"({', '.join(FORMATS)})")
    return fmt


def split_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of a file read without quote handling: lines end in LF or CRLF; a CR inside a line
    is kept (text cleaning makes it a space); a file whose lines end in a bare CR is refused."""
    text = read_utf8(path)  # a byte-order mark dropped; an invalid byte named by its line
    if "\r" in text and "\n" not in text:
        raise DistilleryError(f"{path}: lines end in a bare CR (old Mac line endings); convert the file to LF "
                              "or CRLF line endings (e.g. `tr '\\r' '\\n'`)")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(i, ln[:-1] if ln.endswith("\r") else ln) for i, ln in enumerate(lines, start=1)]


def records(path: Path, sep: str, quoted: bool):
    """(line the record starts on, fields) of every non-blank record. Quoted (CSV): Python's `csv` module, so a
    quoted field may span lines; unquoted (TSV): one record a line, split on `sep`."""
    if not quoted:
        yield from ((i, ln.split(sep)) for i, ln in split_lines(path) if ln != "")
        return
    read_utf8(path)  # an invalid byte named by its line before the csv module meets it
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep)
        end = 0
        try:
            for record in reader:
                line, end = end + 1, reader.line_num
                if record:
                    yield line, record
        except csv.Error as e:
            raise DistilleryError(f"{path}:{end + 1}: not readable as delimited text ({e})") from None


def read_delimited(path: Path, sep: str, quoted: bool, columns: tuple[str, ...] | None
                   ) -> tuple[pd.DataFrame, list[int]]:
    """A CSV/TSV file as strings, and the line each record starts on; a ragged record, short or long, is
    refused by its line. `columns` names the fields of a file without a header row."""
    it = records(path, sep, quoted)
    header = list(columns) if columns else next(it, (0, None))[1]
    if header is None:
        raise DistilleryError(f"{path}: file is empty")
    if columns:  # a header row in a file said to have none: the first record is the names given, field for field
        first = next(it, None)
        if first is not None and [f.strip() for f in first[1]] == [c.strip() for c in columns]:
            print(f"warning: {path}:{first[0]}: this row is the names prepare.columns gives ({', '.join(columns)}): "
                  "read as a header row and skipped (leave prepare.columns unset for a file with a header)",
                  file=sys.stderr)
        elif first is not None:
            it = itertools.chain([first], it)
    rows, lines = [], []
    for line, record in it:
        if len(record) != len(header):
            raise DistilleryError(f"{path}:{line}: {len(record)} field{'s' if len(record) != 1 else ''} where the "
                                  f"{'header has' if not columns else 'param prepare.columns names'} "
                                  f"{len(header)}; fix or delete this row (or set prepare.delimiter)")
        rows.append(record)
        lines.append(line)
    return pd.DataFrame(rows, columns=[h.strip() for h in header], dtype=object), lines


def read_frame(path: Path, fmt: str, delimiter: str | None, columns: tuple[str, ...] | None = None
               ) -> tuple[pd.DataFrame, list[int]]:
    """The file as a frame (CSV/TSV: strings; JSON Lines and Parquet: values as they are typed there), and each
    row's line (JSON Lines: its line; Parquet: its row, from 1)."""
    check_regular(path)
    try:
        if fmt in ("csv", "tsv"):
            sep = delimiter or ("\t" if fmt == "tsv" else ",")
            return read_delimited(path, sep, quoted=not (fmt == "tsv" and not delimiter), columns=columns)
        if fmt == "jsonl":
            return read_jsonl(path)
        frame = pd.read_parquet(path)
        return frame, list(range(1, len(frame) + 1))
    except UnicodeDecodeError as e:
        raise DistilleryError(f"{path}: not valid UTF-8 (byte {e.start}); save the file as UTF-8") from None
    except (ValueError, OSError) as e:
        raise DistilleryError(f"{path}: not readable as {fmt} ({str(e).splitlines()[0][:160]})") from None


def check_regular(path: Path) -> None:
    """A split file must be a regular file: a missing one, a folder, a FIFO or a device (a link to /dev/zero) is
    named for what it is."""
    if not path.exists():
        what = f"a link to {path.readlink()}, which does not exist" if path.is_symlink() else "no such file"
        raise DistilleryError(f"{path}: {what}; check prepare.data_dir, prepare.train_file / prepare.dev_file")
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "a pipe (FIFO)" if path.is_fifo() else \
            "a device" if path.is_char_device() or path.is_block_device() else "not a regular file"
        link = f" (a link to {path.readlink()})" if path.is_symlink() else ""
        raise DistilleryError(f"{path}: is {kind}{link}, not a data file; point prepare.train_file / prepare.dev_file "
                              "at a regular file")


def _unique_keys(line: int, path: Path):
    def hook(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise DistilleryError(f"{path}:{line}: key {k!r} is given twice in this record; keep one")
            seen.add(k)
        return dict(pairs)
    return hook


def read_jsonl(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """JSON Lines: one object a line (a byte-order mark dropped, blank lines skipped but counted), values as typed."""
    import json

    rows, lines = [], []
    for i, text in split_lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text, object_pairs_hook=_unique_keys(i, path))
        except ValueError as e:
            raise DistilleryError(f"{path}:{i}: not valid JSON ({getattr(e, 'msg', e)}); fix or delete this line") from None
        if not isinstance(record, dict):
            raise DistilleryError(f"{path}:{i}: a JSON Lines record must be an object {{\"text\": ..., \"label\": ...}}, "
                                  f"got {type(record).__name__ if record is not None else 'null'}; fix or delete this line")
        rows.append(record)
        lines.append(i)
    return pd.DataFrame(rows, dtype=object), lines


NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # what a number is in a file: no `2_5`, no `inf`


def cell(value, where: str, column: str, label: bool) -> str:
    """One value of a used column as text: a number read as a number (a label `1.0` is the class `1`, a whole float
    written as its integer); a list, a mapping or an array refused by its row; a missing value as ''."""
    import numpy as np

    if isinstance(value, (list, tuple, dict, set, np.ndarray)):
        kind = "a mapping" if isinstance(value, dict) else "a list"
        raise DistilleryError(f"{where}: column {column!r} holds {kind} ({str(value)[:60]}), not a single "
                              f"{'label' if label else 'text'}; flatten the data so each row has one value there")
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, float, np.integer, np.floating)):
        return number_text(float(value)) if label else str(value)
    text = str(value)
    if label and NUMBER.fullmatch(text.strip()):
        return number_text(float(text.strip()))
    return text


def number_text(v: float) -> str:
    """A label that is a number, as one text per number: 1, 1.0 and 1e0 are `1`; 2.50 is `2.5`."""
    return str(int(v)) if math.isfinite(v) and v.is_integer() else repr(v)


def at(source: str, row: int) -> str:
    """Where a row is: `file:line`, or `dataset <name> split <split> row <i>`."""
    return f"{source} row {row}" if source.startswith("dataset ") else f"{source}:{row}"


def examples(frame: pd.DataFrame, rows: list, where: Callable[[int], str], text: str, pair: str | None,
             label: str, source: str) -> pd.DataFrame:
    """The split's examples: columns text_a, text_b, label_raw, row; every row validated (`where(i)` says
    where row i is: `file:line`)."""
    cols = [str(c) for c in frame.columns]
    twice = sorted({c for c in cols if cols.count(c) > 1})
    if twice:
        raise DistilleryError(f"{source}: the header names column {twice[0]!r} twice; give every column its own name")
    for param, name in (("text_column", text), ("text_pair_column", pair), ("label_column", label)):
        if name is not None and name not in cols:
            raise DistilleryError(f"{source}: no column {name!r} (param prepare.{param}); it has: {', '.join(cols)}")
    if not len(frame):
        raise DistilleryError(f"{source}: no rows after the header; the split is empty")

    def column(name: str, is_label: bool = False) -> list[str]:
        return [cell(v, where(i), name, is_label) for i, v in enumerate(frame[name].tolist())]

    a = [clean_text(t) for t in column(text)]
    b = [clean_text(t) for t in column(pair)] if pair else [""] * len(frame)
    raw = [v.strip() for v in column(label, True)]
    for i in range(len(frame)):
        if is_blank(a[i]) or (pair and is_blank(b[i])):
            raise DistilleryError(f"{where(i)}: empty text (nothing visible); fix or delete this row")
        if raw[i] == "":
            raise DistilleryError(f"{where(i)}: empty label in column {label!r}; fill it in or delete the row")
    return pd.DataFrame({"text_a": a, "text_b": b, "label_raw": raw, "row": rows})


def read_split(path: Path, fmt: str | None, delimiter: str | None, text: str, pair: str | None, label: str,
               columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One split file: columns text_a, text_b, label_raw, row (the file's line), every row validated."""
    frame, lines = read_frame(path, file_format(path, fmt), delimiter, columns)
    return examples(frame, lines, lambda i: at(str(path), lines[i]), text, pair, label, str(path))


def read_hf(dataset: str, config: str | None, split: str, text: str, pair: str | None, label: str) -> pd.DataFrame:
    """One split of a Hugging Face dataset (a name: needs a network or the local Hub cache; or a local folder
    of data files), its columns named as for files; a class label is read as its integer id."""
    from datasets import load_dataset

    from distillery.hub import require_hub

    if not Path(dataset).exists():
        require_hub(dataset, "prepare.hf_dataset", what="dataset")
    try:
        ds = load_dataset(dataset, config, split=split)
    except (OSError, ValueError, ConnectionError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DistilleryError(f"param prepare.hf_dataset: cannot load {dataset!r} (config {config}, split {split}): "
                              f"{first}") from None
    frame = ds.to_pandas()
    src = f"dataset {dataset} split {split}"
    return examples(frame, list(range(len(frame))), lambda i: at(src, i), text, pair, label, src)


def label_order(train: pd.DataFrame, path: str, fixed: tuple[str, ...] | None) -> list[str]:
    """The label set: `fixed` in its order, else the training split's, sorted (numerically if all integers)."""
    seen = list(dict.fromkeys(train["label_raw"]))
    if fixed:
        check_labels(train, list(fixed), path, fixed=True)
        return list(fixed)
    if len(seen) < 2:
        raise DistilleryError(f"{path}: the label column has one class ({seen[0]!r}); a classifier needs at least "
                              "two (check prepare.label_column)")
    if all(NUMBER.fullmatch(s) for s in seen):
        return sorted(seen, key=float)
    return sorted(seen)


def check_labels(split: pd.DataFrame, labels: list[str], path: str, fixed: bool) -> None:
    bad = split.index[~split["label_raw"].isin(set(labels))]
    if len(bad):
        r = split.loc[bad[0]]
        where = at(path, r["row"])
        listed = f"{', '.join(labels[:10])}{' ...' if len(labels) > 10 else ''}"
        if fixed:
            raise DistilleryError(f"{where}: label {r['label_raw']!r} is not in prepare.labels ({listed}); add it "
                                  "there or fix the row")
        raise DistilleryError(f"{where}: label {r['label_raw']!r} does not occur in the training split (labels: "
                              f"{listed}); fix the row, or name every label in prepare.labels")


def scores(split: pd.DataFrame, path: str) -> list[float]:
    """A regression split's labels as numbers; one that is not a finite number is refused by its line."""
    out = []
    for raw, row in zip(split["label_raw"], split["row"]):
        value = float(raw) if NUMBER.fullmatch(raw) else math.nan  # float() would read `2_5` as 25
        if not math.isfinite(value):
            raise DistilleryError(f"{at(path, row)}: label {raw!r} is not a finite number, and prepare.problem is regression; "
                                  "fix the row, or check prepare.label_column")
        out.append(value)
    return out


def with_ids(split: pd.DataFrame, labels: list[str] | None, path: str, fixed: bool = False) -> pd.DataFrame:
    """Map label strings to ids (or, `labels` None, regression scores to floats), refusing one the label set
    lacks (naming file and line), and add text ids."""
    if labels is None:
        target = pd.Series(scores(split, path), index=split.index, dtype=float)
    else:
        check_labels(split, labels, path, fixed)
        target = split["label_raw"].map({n: i for i, n in enumerate(labels)}).astype(int)
    out = pd.DataFrame({
        "id": [text_id(a, b) for a, b in zip(split["text_a"], split["text_b"])],
        "text_a": split["text_a"], "text_b": split["text_b"], "label": target, "row": split["row"],
    })
    return out[COLUMNS]
