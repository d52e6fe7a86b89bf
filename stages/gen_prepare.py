"""`distillery gen-prepare`: read and validate parallel text for the generation study (C-MLM)."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import (
    check_outputs,
    PARAMS_HELP,
    SECTION_HELP,
    SET_HELP,
    one_line_errors,
    stage_config,
)


@one_line_errors
def gen_prepare(
    out: Annotated[Path, typer.Option(help="Folder for train/dev/test.tsv (id, src, tgt).")] = Path("data/prepared"),
    metrics: Annotated[Path, typer.Option(help="Counts, as JSON.")] = Path("metrics/prepare.json"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
    section: Annotated[str, typer.Option(help=SECTION_HELP)] = "gen_prepare",
) -> None:
    """Validate every pair (line counts, empty sides, WordPiece limits: one error naming file and line),
    sample the training pairs, give each pair a stable id. Settings: `gen_prepare`."""
    from distillery.generation.config import GenPrepareConfig
    from distillery.generation.data import prepare_stage

    check_outputs("gen-prepare", out, metrics)
    counts = prepare_stage(stage_config(GenPrepareConfig, params, section, set_), out, metrics)
    typer.echo(f"pairs: train {counts['train']}, dev {counts['dev']}, test {counts['test']} -> {out}")
