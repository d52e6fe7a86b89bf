"""The `distillery` console command: one subcommand per DVC stage, in pipeline order."""

import typer

from stages.augment import augment
from stages.distill import distill
from stages.evaluate import evaluate
from stages.export import export
from stages.prepare import prepare
from stages.soft_labels import soft_labels
from stages.teacher import teacher

app = typer.Typer(
    help="Distil a fine-tuned BERT teacher into small, fast students. Each subcommand is one DVC stage; "
    "`dvc repro` runs them all from params.yaml.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # DVC unpacks params.yaml sections as `--max_seq_len 64`; accept underscores as dashes.
    context_settings={"token_normalize_func": lambda t: t.replace("_", "-") if t.startswith("--") else t},
)
app.command("prepare")(prepare)
app.command("teacher")(teacher)
app.command("augment")(augment)
app.command("soft-labels")(soft_labels)
app.command("distill", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(distill)
app.command("evaluate")(evaluate)
app.command("export")(export)

if __name__ == "__main__":
    app()
