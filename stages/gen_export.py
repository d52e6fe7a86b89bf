"""`distillery gen-export`: ONNX encoder + decoder of a sequence-to-sequence student, checked against PyTorch."""

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
def gen_export(
    student: Annotated[Path, typer.Option(help="A student folder (`gen-distill`).")] = Path("models/students/student"),
    prepared: Annotated[Path, typer.Option(help="Folder written by `gen-prepare` (dev checks the export).")] = Path("data/prepared"),
    out: Annotated[Path, typer.Option(help="Export folder.")] = Path("exports/student"),
    metrics: Annotated[Path, typer.Option(help="Agreement and size, as JSON.")] = Path("metrics/exports/student.json"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
    section: Annotated[str, typer.Option(help=SECTION_HELP)] = "gen_export",
) -> None:
    """Export encoder.onnx and decoder.onnx (+ tokenizer, generation.json); refuse if greedy outputs from
    ONNX Runtime and PyTorch differ on too many dev sentences. Settings: `gen_export`."""
    from distillery.generation.config import GenExportConfig
    from distillery.generation.export import export_stage

    check_outputs("gen-export", out, metrics)
    r = export_stage(stage_config(GenExportConfig, params, section, set_), student, prepared, out, metrics)
    typer.echo(f"greedy output equal to PyTorch on {r['greedy_agreement_dev']:.2%} of dev -> {out}")
