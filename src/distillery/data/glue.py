"""Read GLUE-format TSV files (or a Hugging Face dataset) into validated example tables.

Every problem in a file is reported as `path:line: what is wrong; what to do`.
"""

from pathlib import Path

import pandas as pd

from distillery.data.ids import text_id
from distillery.data.tasks import TaskSpec
from distillery.errors import DistilleryError

COLUMNS = ["id", "text_a", "text_b", "label"]


def read_glue_tsv(path: str | Path, task: TaskSpec) -> pd.DataFrame:
    """Parse one GLUE split with no quote handling; validate every row.

    Returns a frame with columns id, text_a, text_b ('' for single sentences), label (int).
    Duplicate texts keep their first row.
    """
    path = Path(path)
    if not path.is_file():
        raise DistilleryError(f"{path}: no such file; point prepare.data_dir at a GLUE task folder")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DistilleryError(f"{path}: file is empty; it needs a {task.name} split in GLUE format")
    start = 0
    if task.header is not None:
        header = tuple(c.strip() for c in lines[0].rstrip("\r").split("\t"))
        missing = [c for c in task.header if c not in header]
        if missing:
            raise DistilleryError(
                f"{path}:1: missing column {missing[0]!r} (header has {', '.join(header)}); "
                f"task {task.name} needs columns {', '.join(task.header)}"
            )
        cols = {c: header.index(c) for c in task.header}
        idx_a, idx_label = cols[task.header[task.text_a]], cols[task.header[task.label]]
        idx_b = cols[task.header[task.text_b]] if task.text_b is not None else None
        n_cols = len(header)
        start = 1
    else:
        idx_a, idx_b, idx_label, n_cols = task.text_a, task.text_b, task.label, task.n_cols
    label_of = {raw: i for i, raw in enumerate(task.raw_labels)}
    rows: list[tuple[str, str, str, int]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines[start:], start=start + 1):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != n_cols:
            raise DistilleryError(
                f"{path}:{lineno}: expected {n_cols} tab-separated columns, found {len(fields)}; "
                "fix or delete this row"
            )
        a = fields[idx_a].strip()
        b = fields[idx_b].strip() if idx_b is not None else ""
        if not a or (idx_b is not None and not b):
            raise DistilleryError(f"{path}:{lineno}: empty text; fix or delete this row")
        raw = fields[idx_label].strip()
        if raw not in label_of:
            raise DistilleryError(
                f"{path}:{lineno}: label {raw!r} is not one of task {task.name}'s labels "
                f"({', '.join(task.raw_labels)}); fix the row or choose the right prepare.task"
            )
        eid = text_id(a, b)
        if eid in seen:
            continue
        seen.add(eid)
        rows.append((eid, a, b, label_of[raw]))
    if not rows:
        raise DistilleryError(f"{path}: no examples after the header; the split is empty")
    return pd.DataFrame(rows, columns=COLUMNS)


def read_hf_split(dataset: str, config: str | None, split: str, task: TaskSpec) -> pd.DataFrame:
    """Load one split of a Hugging Face dataset (needs a network or a local HF cache)."""
    from datasets import load_dataset

    ds = load_dataset(dataset, config, split=split)
    names = ds.column_names
    a_col = next((c for c in ("sentence", "sentence1", "question", "text") if c in names), None)
    b_col = next((c for c in ("sentence2", "question2") if c in names), None) if task.is_pair else None
    if a_col is None or "label" not in names or (task.is_pair and b_col is None):
        raise DistilleryError(
            f"dataset {dataset}/{config} split {split}: columns {names} do not fit task {task.name}"
        )
    frame = ds.to_pandas()
    rows, seen = [], set()
    for i, r in enumerate(frame.itertuples(index=False)):
        a = str(getattr(r, a_col)).strip()
        b = str(getattr(r, b_col)).strip() if b_col else ""
        label = int(r.label)
        if not a or (b_col and not b):
            raise DistilleryError(f"dataset {dataset} split {split} row {i}: empty text")
        if not 0 <= label < len(task.label_names):
            raise DistilleryError(
                f"dataset {dataset} split {split} row {i}: label {label} outside 0..{len(task.label_names) - 1}"
            )
        eid = text_id(a, b)
        if eid not in seen:
            seen.add(eid)
            rows.append((eid, a, b, label))
    return pd.DataFrame(rows, columns=COLUMNS)
