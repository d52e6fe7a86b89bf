"""`distillery prepare`: read a GLUE folder (or HF dataset), validate it, write stable-id splits."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import one_line_errors


@one_line_errors
def prepare(
    task: Annotated[str, typer.Option(help="GLUE task: sst2, cola, mrpc or rte.")] = "sst2",
    data_dir: Annotated[Optional[str], typer.Option(help="A GLUE-format folder holding train.tsv and dev.tsv.")] = None,
    hf_dataset: Annotated[Optional[str], typer.Option(help="Or a Hugging Face dataset, e.g. nyu-mll/glue (needs a network).")] = None,
    hf_config: Annotated[Optional[str], typer.Option(help="Config of --hf-dataset; defaults to the task's GLUE name.")] = None,
    max_train: Annotated[int, typer.Option(help="Keep a seeded random sample of this many training examples (0: all).")] = 0,
    max_dev: Annotated[int, typer.Option(help="Likewise for dev (0: all).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the sampling.")] = 0,
    duplicates: Annotated[str, typer.Option(help="A training text seen with different labels: keep the majority label (ties: the first), the first row's, or drop the text (majority|first|drop). Dev is always kept whole.")] = "majority",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("data/prepared"),
    metrics: Annotated[Path, typer.Option(help="Rows read and kept per split, duplicates and conflicts, as JSON.")] = Path("metrics/prepare.json"),
) -> None:
    """Read and validate a task's train and dev splits; write them with stable ids (hash of the text)."""
    from distillery.config import PrepareConfig
    from distillery.data.prepare import prepare as run

    cfg = PrepareConfig(task=task, data_dir=data_dir or None, hf_dataset=hf_dataset or None,
                        hf_config=hf_config or None, max_train=max_train, max_dev=max_dev, seed=seed,
                        duplicates=duplicates)
    info = run(cfg, out, metrics)
    c = info["counts"]
    typer.echo(f"prepared {info['task']}: train {c['train']['rows_read']} rows read, {info['n_train']} kept; "
               f"dev {c['dev']['rows_read']} rows read, {info['n_dev']} kept -> {out}")
