"""What a task is (its labels or score, text pairs or not, its metrics) and the GLUE presets.

A task is read from the user's files (or a Hugging Face dataset) by the params of `prepare`; the five
GLUE tasks are nothing but named presets of those params (`PRESETS`): `prepare.task: sst2` with
`prepare.data_dir` pointing at GLUE's SST-2 folder fills in its file names, columns, labels and metrics.
"""

from dataclasses import dataclass

import numpy as np

from distillery.errors import DistilleryError
from distillery.metrics import METRICS, agreement, predictions, task_metric

PROBLEMS = ("classification", "regression")
DEFAULT_METRICS = {"classification": ("accuracy",), "regression": ("pearson", "spearman")}


@dataclass(frozen=True)
class TaskSpec:
    """One task as the stages after `prepare` see it.

    `label_names[i]` names output i: one per class for classification (id order), the score's column for
    regression (one output). `metrics[0]` is the main metric: retention, the Pareto plot and the model
    card's headline use it."""

    name: str
    label_names: tuple[str, ...]
    pair: bool
    metrics: tuple[str, ...]
    problem: str = "classification"

    def __post_init__(self) -> None:
        if self.problem not in PROBLEMS:
            raise ValueError(f"unknown problem {self.problem!r}")
        wrong = [m for m in self.metrics if METRICS.get(m) != self.problem]
        if wrong or not self.metrics:
            raise DistilleryError(f"param prepare.metrics: {wrong[0] if wrong else '[]'} does not score a "
                                  f"{self.problem} task; use {', '.join(m for m, p in METRICS.items() if p == self.problem)}")
        if self.problem == "regression" and len(self.label_names) != 1:
            raise ValueError("a regression task has one output")

    @property
    def metric(self) -> str:
        return self.metrics[0]

    @property
    def is_pair(self) -> bool:
        return self.pair

    @property
    def regression(self) -> bool:
        return self.problem == "regression"

    def predict(self, logits: np.ndarray) -> np.ndarray:
        """(n, outputs) -> a class id per row, or the predicted score."""
        return predictions(self.problem, logits)

    def score(self, labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
        """Every metric of the task, main first."""
        preds = self.predict(logits)
        return {m: task_metric(m, labels, preds) for m in self.metrics}

    def agreement(self, reference: np.ndarray, other: np.ndarray) -> float:
        """How closely two runs of one model agree (PyTorch against ONNX / int8)."""
        return agreement(self.problem, reference, other)


# Params of `prepare` that read each GLUE task's own files (GLUE's distribution, the layout of
# ../shared/data/glue) and its copy on the Hugging Face Hub (`nyu-mll/glue`, config `hf_config`).
_PAIR = {"text_column": "sentence1", "text_pair_column": "sentence2"}
PRESETS: dict[str, dict] = {
    "sst2": {"files": {"text_column": "sentence", "label_column": "label"},
             "hf": {"text_column": "sentence", "label_column": "label"},
             "labels": ("0", "1"), "label_names": ("negative", "positive"), "metrics": ("accuracy",)},
    "cola": {"files": {"columns": ("source", "label", "author_label", "sentence"), "text_column": "sentence",
                       "label_column": "label"},
             "hf": {"text_column": "sentence", "label_column": "label"},
             "labels": ("0", "1"), "label_names": ("unacceptable", "acceptable"), "metrics": ("mcc",)},
    "mrpc": {"files": {"text_column": "#1 String", "text_pair_column": "#2 String", "label_column": "Quality"},
             "hf": {**_PAIR, "label_column": "label"},
             "labels": ("0", "1"), "label_names": ("not_equivalent", "equivalent"), "metrics": ("f1", "accuracy")},
    "rte": {"files": {**_PAIR, "label_column": "label"},
            "hf": {**_PAIR, "label_column": "label"},  # the Hub's ids: 0 entailment, 1 not_entailment
            "labels": ("entailment", "not_entailment"), "hf_labels": ("0", "1"),
            "label_names": ("entailment", "not_entailment"), "metrics": ("accuracy",)},
    "stsb": {"files": {**_PAIR, "label_column": "score"},
             "hf": {**_PAIR, "label_column": "label"},
             "problem": "regression", "metrics": ("pearson", "spearman")},
}
for _name, _p in PRESETS.items():
    _p["files"] = {"train_file": "train.tsv", "dev_file": "dev.tsv", "format": "tsv", **_p["files"]}
    _p["hf"] = {"hf_config": _name, **_p["hf"]}
ALIASES = {"sst-2": "sst2", "sts-b": "stsb"}


def preset_params(name: str, source: str) -> dict | None:
    """The params a GLUE preset sets for its GLUE folder (`source` "files") or the Hub's copy ("hf"),
    or None if `name` is no preset."""
    p = PRESETS.get(ALIASES.get(name.lower(), name.lower()))
    if p is None:
        return None
    labels = p.get("hf_labels", p.get("labels")) if source == "hf" else p.get("labels")
    out = {**p[source], "metrics": p["metrics"], "problem": p.get("problem", "classification")}
    if labels:
        out |= {"labels": labels, "label_names": p["label_names"]}
    return out


def check_preset(name: str, param: str = "prepare.task") -> str:
    """A GLUE task's preset name (for studies that take GLUE tasks by name: MT-DNN's members)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in PRESETS:
        raise DistilleryError(f"unknown task {name!r} (param {param}); choose one of: {', '.join(sorted(PRESETS))}")
    return key
