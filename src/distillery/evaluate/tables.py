"""What every table of `distillery evaluate` is written with (the main pipeline's, the early-exit curves,
MT-DNN's and C-MLM's): markdown rows, one figure helper, and the files each writes atomically (the table as
markdown and CSV, `summary.json` for `dvc exp show`, a plot)."""

from pathlib import Path

import pandas as pd

from distillery.io import atomic_file, write_json


def md(head: list[str], rows: list[list]) -> list[str]:
    """A markdown table's lines: the header, the rule, a line per row."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(str(c) for c in r) + " |" for r in rows)]


def pyplot():
    """matplotlib's pyplot on the file-only backend (no display here, nor on CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 110) -> None:
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    pyplot().close(fig)


def write_tables(out: Path, markdown: str, frame: pd.DataFrame, summary: dict | None, csv: str = "table.csv",
                 table: str = "table.md", float_format: str | None = None) -> None:
    """`table` (markdown), `csv` (every figure) and, given a summary, summary.json, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / table) as fh:
        fh.write(markdown)
    with atomic_file(out / csv) as fh:
        frame.to_csv(fh, index=False, float_format=float_format)
    if summary is not None:
        write_json(out / "summary.json", summary)
