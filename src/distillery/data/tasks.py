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


METRICS = ("accuracy", "macro_f1", "f1", "mcc")  # f1: of the positive class (label id 1), as GLUE scores MRPC


def own_task(name: str, label_names: list[str], pair: bool, metric: str) -> TaskSpec:
    """The task of the user's own data (`prepare.train_file`): its labels come from the data, not from code."""
    return TaskSpec(name, None, 0, 0, 1 if pair else None, 0, tuple(label_names), tuple(label_names), metric, "")


TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    # name, header, n_cols, text_a, text_b, label, raw_labels, label_names, metric, hf_config
    TaskSpec("sst2", ("sentence", "label"), 2, 0, None, 1, ("0", "1"), ("negative", "positive"), "accuracy", "sst2"),
    TaskSpec("cola", None, 4, 3, None, 1, ("0", "1"), ("unacceptable", "acceptable"), "mcc", "cola"),
    TaskSpec("mrpc", ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"), 5, 3, 4, 0, ("0", "1"),
             ("not_equivalent", "equivalent"), "f1", "mrpc"),
    TaskSpec("rte", ("index", "sentence1", "sentence2", "label"), 4, 1, 2, 3, ("entailment", "not_entailment"),
             ("entailment", "not_entailment"), "accuracy", "rte"),
)}

ALIASES = {"sst-2": "sst2", "cola": "cola", "mrpc": "mrpc", "rte": "rte"}


def get_task(name: str, param: str = "prepare.task") -> TaskSpec:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise DistilleryError(
            f"unknown task {name!r} (param {param}); choose one of: {', '.join(sorted(TASKS))}"
        )
    return TASKS[key]
