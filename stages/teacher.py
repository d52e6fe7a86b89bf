"""`distillery teacher`: fine-tune the teacher on the prepared data."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import one_line_errors


@one_line_errors
def teacher(
    base_model: Annotated[str, typer.Option(help="Hugging Face id or local folder; 'all-MiniLM-L6-v2' works offline.")] = "all-MiniLM-L6-v2",
    max_seq_len: Annotated[int, typer.Option(help="Truncate inputs to this many tokens.")] = 64,
    epochs: Annotated[float, typer.Option(help="Training epochs (0: use an already fine-tuned teacher as is).")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (linear warm-up and decay).")] = 5e-5,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    warmup_ratio: Annotated[float, typer.Option(help="Fraction of steps spent warming up.")] = 0.06,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast where the hardware supports it.")] = True,
    logging_steps: Annotated[int, typer.Option(help="Log the training loss every N steps.")] = 50,
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    out: Annotated[Path, typer.Option(help="Where to save the teacher (save_pretrained format).")] = Path("models/teacher"),
    metrics: Annotated[Path, typer.Option(help="Dev metrics JSON.")] = Path("metrics/teacher.json"),
    live_dir: Annotated[Path, typer.Option(help="DVCLive folder for the training curves.")] = Path("dvclive/teacher"),
) -> None:
    """Fine-tune a sequence classifier from a base checkpoint with the transformers Trainer."""
    from distillery.config import TeacherConfig
    from distillery.io import write_json

    cfg = TeacherConfig(base_model=base_model, max_seq_len=max_seq_len, epochs=epochs, batch_size=batch_size,
                        lr=lr, weight_decay=weight_decay, warmup_ratio=warmup_ratio, seed=seed, bf16=bf16,
                        logging_steps=logging_steps)
    from distillery.teacher.train import train_teacher

    result = train_teacher(cfg, prepared, out, live_dir)
    write_json(metrics, result)
    typer.echo(f"teacher dev {result['metric']}: {result['dev_' + result['metric']]:.4f} -> {out}")
