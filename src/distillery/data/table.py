"""The project's own example tables on disk: tab-separated, one header row, no quoting."""

import csv
from pathlib import Path

import pandas as pd

from distillery.errors import DistilleryError
from distillery.io import atomic_file


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    for col in frame.columns:
        if frame[col].dtype == object and frame[col].str.contains("[\t\n]", regex=True).any():
            raise ValueError(f"column {col} holds a tab or newline; it cannot go into {path}")
    with atomic_file(path) as fh:
        frame.to_csv(fh, sep="\t", index=False, quoting=csv.QUOTE_NONE, escapechar=None)


def read_table(path: str | Path, required: tuple[str, ...] = ("id", "text_a", "text_b", "label")) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DistilleryError(f"{path}: no such file; run the stage that makes it first (dvc repro)")
    frame = pd.read_csv(
        path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False, na_filter=False
    )
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DistilleryError(f"{path}:1: missing column {missing[0]!r}; re-run the stage that writes it")
    if "label" in frame.columns:
        frame["label"] = frame["label"].astype(int)
    return frame
