"""`distillery export`: one student to ONNX + int8 ONNX + tokenizer + model card."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import one_line_errors


@one_line_errors
def export(
    name: Annotated[str, typer.Option(help="Student to export (a folder under --students).")],
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    min_agreement: Annotated[float, typer.Option(help="Fail below this ONNX/PyTorch argmax agreement on dev.")] = 0.999,
    quantize: Annotated[bool, typer.Option(help="Also write a dynamically quantised int8 model.")] = True,
    license: Annotated[str, typer.Option(help="Licence id for the model card (the teacher's).")] = "apache-2.0",
    students: Annotated[Path, typer.Option(help="Folder holding one folder per student.")] = Path("models/students"),
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    teacher: Annotated[Optional[Path], typer.Option(help="Teacher folder (names its base checkpoint in the card).")] = None,
    augmented: Annotated[Optional[Path], typer.Option(help="`augment` output (the transfer set's size in the card).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default exports/<name>).")] = None,
) -> None:
    """Export a student to ONNX with dynamic batch/sequence axes and check it against PyTorch on dev."""
    from distillery.config import ExportConfig, check_name

    check_name(name, "--name (a key of students in params.yaml)")
    cfg = ExportConfig(opset=opset, min_agreement=min_agreement, quantize=quantize, license=license)
    from distillery.export.onnx import export_student

    r = export_student(cfg, students / name, prepared, out or Path("exports") / name, teacher, augmented)
    typer.echo(f"exported {name}: ONNX agreement {r['onnx_agreement']:.4%}, max |diff| {r['onnx_max_abs_diff']:.2e}")
