"""The GLUE tasks distillery knows: columns of their TSV files, label sets and metrics."""

from dataclasses import dataclass

from distillery.errors import DistilleryError


@dataclass(frozen=True)
class TaskSpec:
    """How one GLUE task's TSV files are laid out.

    Column positions are 0-based; `raw_labels[i]` is the string in the file for label id i.
    """

    name: str
    header: tuple[str, ...] | None  # expected header row, or None if the file has none
    n_cols: int
    text_a: int
    text_b: int | None
    label: int
    raw_labels: tuple[str, ...]
    label_names: tuple[str, ...]
    metric: str  # accuracy | f1 | mcc
    hf_config: str  # config name in the `nyu-mll/glue` hub dataset

    @property
    def is_pair(self) -> bool:
        return self.text_b is not None


TASKS: dict[str, TaskSpec] = {
    "sst2": TaskSpec(
        name="sst2",
        header=("sentence", "label"),
        n_cols=2,
        text_a=0,
        text_b=None,
        label=1,
        raw_labels=("0", "1"),
        label_names=("negative", "positive"),
        metric="accuracy",
        hf_config="sst2",
    ),
    "cola": TaskSpec(
        name="cola",
        header=None,
        n_cols=4,
        text_a=3,
        text_b=None,
        label=1,
        raw_labels=("0", "1"),
        label_names=("unacceptable", "acceptable"),
        metric="mcc",
        hf_config="cola",
    ),
    "mrpc": TaskSpec(
        name="mrpc",
        header=("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
        n_cols=5,
        text_a=3,
        text_b=4,
        label=0,
        raw_labels=("0", "1"),
        label_names=("not_equivalent", "equivalent"),
        metric="f1",
        hf_config="mrpc",
    ),
    "rte": TaskSpec(
        name="rte",
        header=("index", "sentence1", "sentence2", "label"),
        n_cols=4,
        text_a=1,
        text_b=2,
        label=3,
        raw_labels=("entailment", "not_entailment"),
        label_names=("entailment", "not_entailment"),
        metric="accuracy",
        hf_config="rte",
    ),
}

ALIASES = {"sst-2": "sst2", "cola": "cola", "mrpc": "mrpc", "rte": "rte"}


def get_task(name: str, param: str = "prepare.task") -> TaskSpec:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise DistilleryError(
            f"unknown task {name!r} (param {param}); choose one of: {', '.join(sorted(TASKS))}"
        )
    return TASKS[key]
