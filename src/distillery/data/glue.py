"""What every reader of examples shares (module `files` reads GLUE's files and the user's alike): the
table's columns, text cleaning, what counts as an empty text, and what to do with repeated texts
(`merge_duplicates`), applied to training splits only, so evaluation sets are scored whole.
"""

import re
from collections import Counter

import pandas as pd

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
        elif rule == "majority" and pd.api.types.is_float_dtype(frame["label"]):
            means = frame[frame["id"].isin(conflicting)].groupby("id", sort=False)["label"].mean()
            out.loc[in_conflict, "label"] = out.loc[in_conflict, "id"].map(means)
        elif rule == "majority":
            sub = frame[frame["id"].isin(conflicting)]
            best = {eid: Counter(g.tolist()).most_common(1)[0][0]  # most_common keeps first-seen order on ties
                    for eid, g in sub.groupby("id", sort=False)["label"]}
            out.loc[in_conflict, "label"] = out.loc[in_conflict, "id"].map(best)
        if rule != "drop" and not pd.api.types.is_float_dtype(frame["label"]):
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
