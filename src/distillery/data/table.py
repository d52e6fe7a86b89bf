"""The project's own example tables on disk: UTF-8, tab-separated, one header row, one row a line
(LF), no quoting. Read back exactly as written: a text never holds a tab or a line break (the
readers of raw data replace them with a space), and only LF ends a line."""

from pathlib import Path

import pandas as pd

from distillery.errors import DistilleryError
from distillery.io import atomic_file

FORBIDDEN = ("\t", "\n", "\r")


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    cols = [str(c) for c in frame.columns]
    for col in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            bad = frame[col].astype(str).str.contains("[\t\n\r]", regex=True)
            if bad.any():
                raise DistilleryError(f"{path}: column {col} row {int(bad.to_numpy().argmax()) + 2} holds a tab or "
                                      "line break, which this table format cannot hold; clean the text first")
    with atomic_file(path) as fh:
        fh.write("\t".join(cols) + "\n")
        for row in frame.itertuples(index=False, name=None):
            fh.write("\t".join(map(str, row)) + "\n")


def read_table(path: str | Path, required: tuple[str, ...] = ("id", "text_a", "text_b", "label"),
               score: bool = False) -> pd.DataFrame:
    """A table this project wrote; `label` an integer (a class id), or with `score` a number (regression)."""
    path = Path(path)
    if not path.is_file():
        raise DistilleryError(f"{path}: no such file; run the stage that makes it first (dvc repro)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DistilleryError(f"{path}: byte {e.start} is not valid UTF-8; re-run the stage that writes it") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DistilleryError(f"{path}: empty; re-run the stage that writes it")
    header = lines[0].split("\t")
    missing = [c for c in required if c not in header]
    if missing:
        raise DistilleryError(f"{path}:1: missing column {missing[0]!r}; re-run the stage that writes it")
    rows = [ln.split("\t") for ln in lines[1:]]
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise DistilleryError(f"{path}:{i + 2}: expected {len(header)} tab-separated columns, found {len(r)}; "
                                  "the file was changed or cut short: re-run the stage that writes it")
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    for col in ("label", "row"):
        if col in frame.columns:
            number = score and col == "label"
            pattern = r"-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?" if number else r"-?[0-9]+"
            ok = frame[col].str.fullmatch(pattern).to_numpy(dtype=bool)
            if not ok.all():
                i = int((~ok).argmax())
                raise DistilleryError(f"{path}:{i + 2}: {col} {frame[col][i]!r} is not "
                                      f"{'a number' if number else 'an integer'}; re-run the stage that writes it")
            frame[col] = frame[col].astype(float if number else int)
    return frame
