"""`distillery prepare`: read a task's files (a GLUE preset or your own) or a HF dataset; write stable-id splits."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import PARAMS_HELP, SECTION_HELP, SET_HELP, check_outputs, one_line_errors, read_params
from stages.common import section_values_set, stage_config, task_stage


@one_line_errors
def prepare(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("data/prepared"),
    metrics: Annotated[Path, typer.Option(help="Rows read and kept per split, duplicates and conflicts, as JSON.")] = Path("metrics/prepare.json"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
    section: Annotated[str, typer.Option(help=SECTION_HELP)] = "prepare",
) -> None:
    """Read and validate a task's train and dev splits; write them with stable ids (hash of the text).

    Settings: the `prepare` section: task (a GLUE preset: sst2 cola mrpc rte stsb, or your task's name), data_dir
    with train_file / dev_file (or hf_dataset), the columns, labels or problem: regression, metrics, max_train,
    max_dev, seed, duplicates (README "Your own data"). A seq2seq study (`distill.common.task: seq2seq`) reads
    parallel text instead: data_dir, src_lang, tgt_lang, splits, tokenizer, max_src_len, max_tgt_len, ..."""
    from distillery.config import PrepareConfig
    from distillery.data.prepare import prepare as run

    check_outputs("prepare", out, metrics)
    doc = read_params(params, required=True)
    own = task_stage(doc, "prepare_data")
    if own:  # a study whose data is not a classification task's (seq2seq: parallel text)
        typer.echo(own(section_values_set(doc, section, set_), section, out, metrics))
        return
    cfg = stage_config(PrepareConfig, params, section, set_)
    info = run(cfg, out, metrics)
    c = info["counts"]
    typer.echo(f"prepared {info['task']}: train {c['train']['rows_read']} rows read, {info['n_train']} kept; "
               f"dev {c['dev']['rows_read']} rows read, {info['n_dev']} kept -> {out}")
