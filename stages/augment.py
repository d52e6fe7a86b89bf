"""`distillery augment`: Tang et al. 2019's transfer set (masking, POS replacement, n-grams)."""

import os
from pathlib import Path
from typing import Annotated

import typer

from stages.common import check_outputs, PARAMS_HELP, SET_HELP, one_line_errors, stage_config


@one_line_errors
def augment(
    workers: Annotated[int, typer.Option(help="Processes (0: one per CPU core). The output does not depend on it.")] = 0,
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    out: Annotated[Path, typer.Option(help="Output folder (augmented.tsv).")] = Path("data/augmented"),
    metrics: Annotated[Path, typer.Option(help="Counts per rule, as JSON.")] = Path("metrics/augment.json"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
) -> None:
    """Write the training texts plus generated copies, each with its id, source id and rules applied.

    Settings: the `augment` section (p_mask, p_pos, p_ng, max_ng, n_iter, seed, tagger)."""
    from distillery.config import AugmentConfig

    check_outputs("augment", out, metrics)
    cfg = stage_config(AugmentConfig, params, "augment", set_)
    from distillery.augment.run import augment as run

    m = run(cfg, prepared, out, metrics, workers=workers or os.cpu_count() or 1)
    typer.echo(f"augment: {m['originals']} originals + {m['generated']} generated -> {out}")
