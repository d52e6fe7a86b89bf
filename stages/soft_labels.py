"""`distillery soft-labels`: the teacher's raw logits for every text, cached and shared."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import PARAMS_HELP, SECTION_HELP, SET_HELP, check_outputs, one_line_errors, read_params
from stages.common import section_values_set, stage_config, task_stage


@one_line_errors
def soft_labels(
    teacher: Annotated[Path, typer.Option(help="Teacher folder written by `teacher`.")] = Path("models/teacher"),
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    augmented: Annotated[str, typer.Option(help="Folder written by `augment`; '' for none.")] = "data/augmented",
    store: Annotated[Path, typer.Option(help="Content-addressed logit store (git-ignored, reused across runs).")] = Path(".cache/logits"),
    out: Annotated[Path, typer.Option(help="Output folder: fp16 shards + manifest.json.")] = Path("data/logits"),
    metrics: Annotated[Path, typer.Option(help="Counts of texts labelled and reused, as JSON.")] = Path("metrics/soft_labels.json"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
    section: Annotated[str, typer.Option(help=SECTION_HELP)] = "soft_labels",
    ensemble_of: Annotated[str, typer.Option(help="MT-DNN KD: instead of running a teacher, average the probabilities "
                                             "of the prepared task's ensemble members (params `members`) from their "
                                             "soft-labels outputs in this folder (their teachers in --teacher).")] = "",
) -> None:
    """Label train, augmented and dev texts with the teacher; only texts the store has not seen run the teacher.

    Settings: the `soft_labels` section (batch_tokens, max_seq_len, bf16, checkpoint_every, features, threads).
    Scale out with `torchrun --nproc-per-node N -m stages.cli soft-labels ...` (or `accelerate launch`):
    each process labels every N-th batch into the shared store; rank 0 writes the output."""
    from distillery.config import SoftLabelConfig

    check_outputs("ensemble" if ensemble_of else "soft-labels", out, metrics)
    doc = read_params(params, required=True)
    if ensemble_of:  # MT-DNN KD: no teacher runs (the multitask task's own step)
        from distillery.tasks import get_task

        typer.echo(get_task("multitask", "--ensemble-of").ensemble(doc, prepared, teacher, ensemble_of, out, metrics))
        return
    own = task_stage(doc, "label")
    if own:  # seq2seq: the top-k logits and token ids at every target position
        msg = own(section_values_set(doc, section, set_), section, teacher, prepared, augmented, store, out, metrics)
        if msg:
            typer.echo(msg)
        return
    cfg = stage_config(SoftLabelConfig, params, section, set_)
    from distillery.logits.run import soft_labels as run

    m = run(cfg, teacher, prepared, Path(augmented) if augmented else None, out, store, metrics)
    if "rank" in m:  # a worker process under torchrun; rank 0 reports
        return
    typer.echo(f"soft-labels: {m['texts']} texts ({m['labelled']} labelled, {m['reused']} reused) -> {out}")
