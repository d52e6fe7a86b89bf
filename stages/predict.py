"""`distillery predict`: label a file with a trained student (or the teacher). Not a pipeline stage: a command users
run on their own files once the pipeline has made a model."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import one_line_errors


def _default_out(inputs: Path) -> Path:
    return inputs.with_name(f"{inputs.stem}.predictions{inputs.suffix}")


def _runtime(model: Path, runtime: str) -> str:
    """`auto`: fp32 ONNX where the folder has it (the table's agreement column: same answers as PyTorch, faster),
    else PyTorch."""
    if runtime != "auto":
        return runtime
    return "onnx" if (model / "model.onnx").is_file() or (model / "embeddings.onnx").is_file() else "pytorch"


def _stop_on_term() -> None:
    """SIGTERM ends the run the way Ctrl-C does: the scratch file is removed and nothing is written."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@one_line_errors
def predict(
    inputs: Annotated[Path, typer.Argument(help="The file to label: CSV, TSV, JSON Lines or Parquet (by its suffix, or --format).")],
    model: Annotated[Path, typer.Option(help="A student (models/students/<name>), its export (exports/<name>) or the teacher (models/teacher).")],
    out: Annotated[Optional[Path], typer.Option(help="Where the labelled rows go (default: <input>.predictions.<suffix>); its suffix or --out-format picks the format.")] = None,
    runtime: Annotated[str, typer.Option(help="pytorch, onnx, int8, or auto (ONNX where the folder has it, else PyTorch).")] = "auto",
    text_column: Annotated[str, typer.Option(help="The column (JSON key) that holds the text.")] = "text",
    text_pair_column: Annotated[Optional[str], typer.Option(help="The second text's column, for a model trained on pairs.")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="The input's format when its suffix does not say: csv, tsv, jsonl, parquet.")] = None,
    delimiter: Annotated[Optional[str], typer.Option(help="The input's field delimiter (csv's default is ',', tsv's a tab).")] = None,
    out_format: Annotated[Optional[str], typer.Option(help="The output's format (default: by --out's suffix, else the input's).")] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per model call (length-sorted within each chunk).")] = 64,
    chunk_rows: Annotated[int, typer.Option(help="Rows read, labelled and written at a time (memory stays bounded).")] = 8192,
    threads: Annotated[int, typer.Option(help="CPU threads for the model (0: the runtime's default).")] = 0,
) -> None:
    """Label every row of a file with a student or the teacher: the same rows, then `prediction` (the label's name;
    a regression model's score) and `probability`. Streamed in chunks, written only when every row is done; a bad
    row is named by its line and nothing is written. --out may replace only an unchanged earlier predict output."""
    from distillery.config import check_int
    from distillery.inference.run import predict_file

    check_int(batch_size, "--batch-size", 1, 65536)
    check_int(chunk_rows, "--chunk-rows", 1, 10_000_000)
    check_int(threads, "--threads", 0, 1024)
    _stop_on_term()
    r = predict_file(model, _runtime(model, runtime), inputs, out or _default_out(inputs), text_column,
                     text_pair_column, fmt, delimiter, out_format, batch_size, chunk_rows, threads)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(r["labels"].items(), key=lambda kv: -kv[1])[:10])
    typer.echo(f"labelled {r['rows']} rows of {inputs} with {r['student']} ({r['runtime']}) in {r['seconds']} s "
               f"({r['rows_per_s']} rows/s) -> {out or _default_out(inputs)}" + (f"; {counts}" if counts else ""))
