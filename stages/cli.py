"""The `distillery` console command: one subcommand per DVC stage, in pipeline order."""

import typer
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars: noise in every stage's log

from stages.augment import augment
from stages.distill import distill
from stages.evaluate import evaluate
from stages.export import export
from stages.pick import pick
from stages.predict import predict
from stages.prepare import prepare
from stages.soft_labels import soft_labels
from stages.teacher import teacher

class App(typer.Typer):
    """A Typer app whose usage errors (an unknown option, a missing --name) are one line on stderr, exit 2."""

    def __call__(self, *args, **kwargs):
        import importlib
        import sys

        usage, abort = [], []
        for mod in ("typer._click.exceptions", "click.exceptions"):  # typer >= 0.20 vendors click
            try:
                m = importlib.import_module(mod)
            except ImportError:
                continue
            usage += [m.UsageError]
            abort += [getattr(m, "Abort", m.UsageError)]
        try:
            return super().__call__(*args, standalone_mode=False, **kwargs)
        except tuple(usage) as e:
            print(f"error: {e.format_message().rstrip('.')}; a stage's settings are its section of params.yaml "
                  "(override one with --set KEY=VALUE); see --help", file=sys.stderr)
            sys.exit(2)
        except tuple(abort):
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)


app = App(
    help="Distil a fine-tuned BERT teacher into small, fast students. Each subcommand is one DVC stage; "
    "`dvc repro` runs them all from params.yaml.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# DVC unpacks a params.yaml section as `--max_seq_len 64`: accept underscores for dashes.
SETTINGS = {"token_normalize_func": lambda name: name.replace("_", "-")}
app.command("prepare", context_settings=SETTINGS)(prepare)
app.command("teacher", context_settings=SETTINGS)(teacher)
app.command("augment", context_settings=SETTINGS)(augment)
app.command("soft-labels", context_settings=SETTINGS)(soft_labels)
app.command("distill", context_settings=SETTINGS)(distill)
app.command("evaluate", context_settings=SETTINGS)(evaluate)
app.command("export", context_settings=SETTINGS)(export)
app.command("predict", context_settings=SETTINGS)(predict)
app.command("pick", context_settings=SETTINGS)(pick)

if __name__ == "__main__":
    app()
