"""`distillery export`: one student to ONNX + int8 ONNX + tokenizer + model card."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import check_outputs, PARAMS_HELP, SET_HELP, one_line_errors, stage_config


@one_line_errors
def export(
    name: Annotated[str, typer.Option(help="Student to export (a folder under --students).")],
    students: Annotated[Path, typer.Option(help="Folder holding one folder per student.")] = Path("models/students"),
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    teacher: Annotated[Optional[Path], typer.Option(help="Teacher folder (names its base checkpoint in the card).")] = None,
    augmented: Annotated[Optional[Path], typer.Option(help="`augment` output (the transfer set's size in the card).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default exports/<name>).")] = None,
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
) -> None:
    """Export a student to ONNX with dynamic batch/sequence axes and check it against PyTorch on dev.

    Settings: the `export` section (opset, min_agreement, quantize, license)."""
    from distillery.config import ExportConfig, check_name

    check_name(name, "--name (a key of students in params.yaml)")
    check_outputs("export", out or Path("exports") / name)
    cfg = stage_config(ExportConfig, params, "export", set_)
    from distillery.export.onnx import export_student

    r = export_student(cfg, students / name, prepared, out or Path("exports") / name, teacher, augmented)
    typer.echo(f"exported {name}: ONNX agreement {r['onnx_agreement']:.4%}, max |diff| {r['onnx_max_abs_diff']:.2e}")
