"""Read GLUE-format TSV files (or a Hugging Face dataset) into validated example tables.

Every problem in a file is reported as `path:line: what is wrong; what to do`. Readers keep every
row, in file order, with its source line (`row`); what to do with repeated texts is a separate
step (`merge_duplicates`), applied to training splits only, so evaluation sets are scored whole.
"""

import re
from collections import Counter
from pathlib import Path

import pandas as pd

from distillery.data.ids import text_id
from distillery.data.tasks import TaskSpec
from distillery.errors import DistilleryError

COLUMNS = ["id", "text_a", "text_b", "label", "row"]
DUPLICATE_RULES = ("majority", "first", "drop")

# Line and tab characters inside a text (CR, vertical tab, form feed, NEL, Unicode line/paragraph
# separators, and tabs or newlines in a Hugging Face field) become one space: the prepared tables are
# tab-separated, one example a line, and every later stage must read back exactly what was accepted.
_BREAKS = re.compile("[\t\n\r\x0b\x0c\x1c-\x1f\x85\u2028\u2029]")


# Characters that show nothing: a text made only of these (NUL bytes, other control characters, zero-width
# spaces) is as empty as a whitespace-only one. Inside a text they are kept (real GLUE rows hold some).
_INVISIBLE = re.compile(r"[\x00-\x20\x7f-\xa0\u200b-\u200f\u2028-\u202f\u2060\ufeff\s]+")


def clean_text(text: str) -> str:
    return _BREAKS.sub(" ", text).strip()


def is_blank(text: str) -> bool:
    """No visible character: empty, whitespace, or only control / zero-width characters (a NUL-filled field)."""
    return _INVISIBLE.fullmatch(text) is not None or text == ""


def read_lines(path: Path) -> list[str]:
    """The file's lines (LF or CRLF endings), decoded as UTF-8; one-line errors for what is not."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DistilleryError(f"{path}:{line}: byte {e.start} (0x{raw[e.start]:02x}) is not valid UTF-8; "
                              "save the file as UTF-8") from None
    if "\r" in text and "\n" not in text:
        raise DistilleryError(f"{path}: lines end in a bare CR (old Mac line endings); convert the file to LF "
                              "or CRLF line endings (e.g. `tr '\\r' '\\n'`)")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def read_glue_tsv(path: str | Path, task: TaskSpec) -> pd.DataFrame:
    """Parse one GLUE split with no quote handling; validate every row; keep every row in order.

    Returns a frame with columns id (hash of the text), text_a, text_b ('' for single sentences),
    label (int) and row (the line number in the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DistilleryError(f"{path}: no such file; point prepare.data_dir at a GLUE task folder")
    lines = read_lines(path)
    if not lines:
        raise DistilleryError(f"{path}: file is empty; it needs a {task.name} split in GLUE format")
    start = 0
    if task.header is not None:
        header = tuple(c.strip() for c in lines[0].split("\t"))
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
    rows: list[tuple[str, str, str, int, int]] = []
    for lineno, line in enumerate(lines[start:], start=start + 1):
        fields = line.split("\t")
        if len(fields) != n_cols:
            raise DistilleryError(
                f"{path}:{lineno}: expected {n_cols} tab-separated columns, found {len(fields)}; "
                "fix or delete this row"
            )
        a = clean_text(fields[idx_a])
        b = clean_text(fields[idx_b]) if idx_b is not None else ""
        if is_blank(a) or (idx_b is not None and is_blank(b)):
            raise DistilleryError(f"{path}:{lineno}: empty text (nothing visible: blank or only control characters "
                                  "such as NUL); fix or delete this row")
        raw = fields[idx_label].strip()
        if raw not in label_of:
            raise DistilleryError(
                f"{path}:{lineno}: label {raw!r} is not one of task {task.name}'s labels "
                f"({', '.join(task.raw_labels)}); fix the row or choose the right prepare.task"
            )
        rows.append((text_id(a, b), a, b, label_of[raw], lineno))
    if not rows:
        raise DistilleryError(f"{path}: no examples after the header; the split is empty")
    return pd.DataFrame(rows, columns=COLUMNS)


def read_hf_split(dataset: str, config: str | None, split: str, task: TaskSpec) -> pd.DataFrame:
    """Load one split of a Hugging Face dataset (needs a network or a local HF cache); every row kept."""
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
    names = ds.column_names
    a_col = next((c for c in ("sentence", "sentence1", "question", "text") if c in names), None)
    b_col = next((c for c in ("sentence2", "question2") if c in names), None) if task.is_pair else None
    if a_col is None or "label" not in names or (task.is_pair and b_col is None):
        raise DistilleryError(
            f"dataset {dataset}/{config} split {split}: columns {names} do not fit task {task.name}"
        )
    frame = ds.to_pandas()
    rows = []
    for i, r in enumerate(frame.itertuples(index=False)):
        a = clean_text(str(getattr(r, a_col)))
        b = clean_text(str(getattr(r, b_col))) if b_col else ""
        label = int(r.label)
        if is_blank(a) or (b_col and is_blank(b)):
            raise DistilleryError(f"dataset {dataset} split {split} row {i}: empty text (nothing visible)")
        if not 0 <= label < len(task.label_names):
            raise DistilleryError(
                f"dataset {dataset} split {split} row {i}: label {label} outside 0..{len(task.label_names) - 1}"
            )
        rows.append((text_id(a, b), a, b, label, i))
    return pd.DataFrame(rows, columns=COLUMNS)


def merge_duplicates(frame: pd.DataFrame, rule: str) -> tuple[pd.DataFrame, dict]:
    """One row per distinct text, for a training split. Exact repeats (same text, same label) are
    merged; for a text seen with different labels, `rule` decides: "majority" keeps its most frequent
    label (ties: the first row's), "first" the first row's label, "drop" removes the text.

    Returns the frame (first occurrence's position and row) and counts for the stage's metrics."""
    if rule not in DUPLICATE_RULES:
        raise ValueError(f"unknown duplicate rule {rule!r}")
    first = ~frame.duplicated("id")
    labels_per_id = frame.groupby("id", sort=False)["label"]
    n_labels = labels_per_id.nunique()
    conflicting = set(n_labels.index[n_labels > 1])
    out = frame[first].copy()
    kept_labels: Counter = Counter()
    if conflicting:
        in_conflict = out["id"].isin(conflicting)
        if rule == "drop":
            out = out[~in_conflict]
        elif rule == "majority":
            sub = frame[frame["id"].isin(conflicting)]
            best = {eid: Counter(g.tolist()).most_common(1)[0][0]  # most_common keeps first-seen order on ties
                    for eid, g in sub.groupby("id", sort=False)["label"]}
            out.loc[in_conflict, "label"] = out.loc[in_conflict, "id"].map(best)
        if rule != "drop":
            kept_labels.update(out.loc[out["id"].isin(conflicting), "label"].tolist())
    report = {
        "rows_read": int(len(frame)),
        "rows_kept": int(len(out)),
        "exact_duplicates_merged": int((~first).sum() - (frame[~first]["id"].isin(conflicting)).sum()),
        "conflicting_texts": len(conflicting),
        "conflicting_rows": int(frame["id"].isin(conflicting).sum()),
        "conflict_rule": rule,
        "conflict_labels_kept": {int(k): int(v) for k, v in sorted(kept_labels.items())},
    }
    return out.reset_index(drop=True), report
