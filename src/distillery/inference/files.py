"""A file to label, read in chunks, and the labelled copy written chunk by chunk: CSV (any delimiter), TSV, JSON
Lines and Parquet, as `prepare` reads them (`data.files`: the same suffixes, cells and checks), but streamed, so a
file of millions of rows is never held whole.

Each chunk keeps the rows as the input has them (a CSV record's strings, a JSON object as it was, a Parquet
batch's typed columns) and the texts the model reads (cleaned as `prepare` cleans them), with each row's line
(Parquet: its row, from 1) for a one-line error."""

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from distillery.data.files import FORMATS, SUFFIXES, _unique_keys, cell, check_regular, file_format
from distillery.data.glue import clean_text, is_blank
from distillery.errors import DistilleryError

OUT_COLUMNS = ("prediction", "probability")  # a regression model writes `prediction` only (its score)


@dataclass
class Chunk:
    frame: pd.DataFrame  # the rows as read (columns as in the file)
    records: list | None  # JSON Lines: the objects as they were (key order, keys some rows lack)
    lines: list[int]
    text_a: list[str]
    text_b: list[str] | None


@dataclass(frozen=True)
class Source:
    path: Path
    fmt: str
    delimiter: str | None
    text: str
    pair: str | None


def source(path: Path, fmt: str | None, delimiter: str | None, text: str, pair: str | None) -> Source:
    check_regular(path)
    return Source(path, file_format(path, fmt), delimiter, text, pair)


def _decoded(path: Path, n: int, raw: bytes) -> str:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DistilleryError(f"{path}:{n}: not valid UTF-8 (byte {e.start} of the line); save the file as UTF-8") from None
    return line.removeprefix("\ufeff") if n == 1 else line


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) read in binary and decoded a line at a time (a CR inside a line kept, as `prepare` does)."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            yield n, _decoded(path, n, raw).removesuffix("\n").removesuffix("\r")


def _csv_records(path: Path, sep: str) -> Iterator[tuple[int, list[str]]]:
    with open(path, "rb") as fh:
        decoded = (_decoded(path, n, raw) for n, raw in enumerate(fh, start=1))  # an invalid byte named by its line
        reader, end = csv.reader(decoded, delimiter=sep), 0
        try:
            for record in reader:
                line, end = end + 1, reader.line_num
                if record:
                    yield line, record
        except csv.Error as e:
            raise DistilleryError(f"{path}:{end + 1}: not readable as delimited text ({e})") from None


def _delimited(src: Source, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, None, list[int]]]:
    quoted = not (src.fmt == "tsv" and not src.delimiter)
    sep = src.delimiter or ("\t" if src.fmt == "tsv" else ",")
    it = _csv_records(src.path, sep) if quoted else ((n, ln.split(sep)) for n, ln in _lines(src.path) if ln != "")
    first = next(it, None)
    if first is None:
        raise DistilleryError(f"{src.path}: file is empty; give a file with a header row and at least one row")
    header = [h.strip() for h in first[1]]
    rows, lines = [], []
    for n, record in it:
        if len(record) != len(header):
            raise DistilleryError(f"{src.path}:{n}: {len(record)} field{'s' if len(record) != 1 else ''} where the "
                                  f"header has {len(header)}; fix or delete this row (or set --delimiter)")
        rows.append(record)
        lines.append(n)
        if len(rows) == chunk_rows:
            yield pd.DataFrame(rows, columns=header, dtype=object), None, lines
            rows, lines = [], []
    if rows or not lines:
        yield pd.DataFrame(rows, columns=header, dtype=object), None, lines


def _jsonl(src: Source, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, list, list[int]]]:
    records, lines = [], []
    for n, text in _lines(src.path):
        if not text.strip():
            continue
        try:
            record = json.loads(text, object_pairs_hook=_unique_keys(n, src.path))
        except ValueError as e:
            raise DistilleryError(f"{src.path}:{n}: not valid JSON ({getattr(e, 'msg', e)}); fix or delete this line") from None
        if not isinstance(record, dict):
            raise DistilleryError(f"{src.path}:{n}: a JSON Lines record must be an object {{\"text\": ...}}; fix or "
                                  "delete this line")
        records.append(record)
        lines.append(n)
        if len(records) == chunk_rows:
            yield pd.DataFrame(records, dtype=object), records, lines
            records, lines = [], []
    yield pd.DataFrame(records, dtype=object), records, lines


def _parquet(src: Source, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, None, list[int]]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(src.path)
    except Exception as e:  # noqa: BLE001 - pyarrow's own error types for a file that is not Parquet
        raise DistilleryError(f"{src.path}: not readable as parquet ({str(e).splitlines()[0][:160]})") from None
    start = 1
    for batch in pf.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas()
        yield frame, None, list(range(start, start + len(frame)))
        start += len(frame)
    if start == 1:
        yield pf.schema_arrow.empty_table().to_pandas(), None, []


def chunks(src: Source, chunk_rows: int) -> Iterator[Chunk]:
    """The file's rows, `chunk_rows` at a time, each checked: the text column(s) present, no empty text, no list or
    mapping where a text should be. An empty file, or one with a header only, is refused."""
    reader = {"csv": _delimited, "tsv": _delimited, "jsonl": _jsonl, "parquet": _parquet}[src.fmt]
    seen = 0
    for frame, records, lines in reader(src, chunk_rows):
        if not len(frame) and not seen:
            raise DistilleryError(f"{src.path}: no rows to label; give a file with at least one row")
        if not len(frame):
            continue
        seen += len(frame)
        cols = [str(c) for c in frame.columns]
        taken = [c for c in OUT_COLUMNS if c in cols]
        if taken:
            raise DistilleryError(f"{src.path}: already has a column {taken[0]!r}, which predict writes (is it an earlier "
                                  "predict output?); rename that column in the input")
        for flag, name in (("--text-column", src.text), ("--text-pair-column", src.pair)):
            if name is not None and name not in cols and src.fmt != "jsonl":
                raise DistilleryError(f"{src.path}: no column {name!r} ({flag}); it has: {', '.join(cols)}")
        yield Chunk(frame, records, lines, _texts(src, frame, records, lines, src.text, "--text-column"),
                    _texts(src, frame, records, lines, src.pair, "--text-pair-column") if src.pair else None)


def _texts(src: Source, frame: pd.DataFrame, records: list | None, lines: list[int], column: str, flag: str) -> list[str]:
    missing = next((n for r, n in zip(records or [], lines) if column not in r), None)
    if missing is not None or column not in frame.columns:  # JSON Lines: a record without the key
        raise DistilleryError(f"{src.path}:{missing or lines[0]}: no key {column!r} ({flag}); every record needs it")
    out = []
    for v, n in zip(frame[column].tolist(), lines):
        text = clean_text(cell(v, f"{src.path}:{n}", column, label=False))
        if is_blank(text) or (isinstance(v, float) and v != v):
            raise DistilleryError(f"{src.path}:{n}: empty text in column {column!r} (nothing visible); fix or delete "
                                  "this row")
        out.append(text)
    return out


def out_format(path: Path, given: str | None, input_fmt: str) -> str:
    """The output's format: --out-format, else its suffix where that names one, else the input's."""
    fmt = given or SUFFIXES.get(path.suffix.lower()) or input_fmt
    if fmt not in FORMATS:
        raise DistilleryError(f"--out-format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def _plain(v):
    """A value as JSON can hold it: numpy scalars as Python numbers, NaN as null."""
    if hasattr(v, "item") and not isinstance(v, (list, dict)):
        v = v.item()
    return None if isinstance(v, float) and v != v else v


class Writer:
    """The labelled rows, written chunk by chunk into an open file in one format: the input's columns (a CSV's
    header from its first chunk), then the prediction columns."""

    def __init__(self, fh, fmt: str, delimiter: str | None):
        self.fh, self.fmt, self.columns, self.parquet = fh, fmt, None, None
        if fmt in ("csv", "tsv"):
            self.csv = csv.writer(fh, delimiter=delimiter or ("\t" if fmt == "tsv" else ","), lineterminator="\n")

    def write(self, chunk: Chunk, preds: dict[str, list], src: Path) -> None:
        if self.fmt == "jsonl":
            rows = chunk.records or [{k: _plain(v) for k, v in r.items()} for r in chunk.frame.to_dict("records")]
            self.fh.write("".join(json.dumps({**r, **dict(zip(preds, vals))}, ensure_ascii=False, default=str) + "\n"
                                  for r, vals in zip(rows, zip(*preds.values()))))
            return
        frame = self._frame(chunk, src)
        if self.fmt == "parquet":
            return self._parquet(frame.assign(**preds))
        if self.columns is None:
            self.columns = [*frame.columns]
            self.csv.writerow([*self.columns, *preds])
        values = frame.to_numpy(dtype=object).tolist()
        self.csv.writerows([*("" if _plain(v) is None else v for v in row), *p]
                           for row, p in zip(values, zip(*preds.values())))

    def _frame(self, chunk: Chunk, src: Path) -> pd.DataFrame:
        if self.columns is None or list(chunk.frame.columns) == self.columns:
            return chunk.frame
        new = [c for c in chunk.frame.columns if c not in self.columns]
        if new:
            raise DistilleryError(f"{src}:{chunk.lines[0]}: key {new[0]!r} first appears here, after the columns of the "
                                  "output were written; write JSON Lines (--out-format jsonl) to keep every key")
        return chunk.frame.reindex(columns=self.columns)

    def _parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.parquet is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            schema = table.schema.with_metadata({**(table.schema.metadata or {}), b"distillery": b"predict"})
            self.parquet = pq.ParquetWriter(self.fh, schema)
        else:
            table = pa.Table.from_pandas(frame, schema=self.parquet.schema, preserve_index=False)
        self.parquet.write_table(table)

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
