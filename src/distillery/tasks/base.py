"""The task interface: what varies between studies, and nothing else.

A task knows its data (transfer set, batches, collation), where the teacher's targets come from and how
they are read back as a `ModelOutput`, which student it builds, and how a model is scored. The `Recipe`
(`distill/recipe.py`) drives every task the same way: optimizer, schedule, clipping, data parallelism,
logging, save. Tasks are registered in `TASKS` by the name a student's `task` param gives.

Lifecycle, as the recipe calls it:

    task = TASKS.get(cfg.task)(cfg, paths, device)
    task.setup()                       # data, student (task.model, task.tokenizer), task.steps; every input checked
    for step in task.steps:
        task.start(step, rng)          # the step's transfer set and teacher targets
        for key in task.batches(step, rng):      # one epoch of batch keys
            loss = task.loss(step, task.shard(key, rank, size))
        task.evaluate()                # dev metrics after each epoch of the last step (model on the CPU, fp32)
    task.save(seconds, history)        # the student (on the CPU) and its metrics
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from distillery.config import StepConfig, StudentConfig
from distillery.errors import DistilleryError
from distillery.losses import LOSSES, Loss, LossContext
from distillery.losses.base import STUDENT_PARTS
from distillery.registry import Registry


@dataclass
class Paths:
    """A student's inputs and outputs. `prepared`: the prepared task (a folder of tasks for a multi-task
    student); `logits`: the teacher targets (the soft-labels artifact, or a folder of ensembles)."""

    prepared: Path
    teacher: Path | None
    logits: Path
    augmented: Path | None
    out: Path
    metrics: Path
    live: Path


@dataclass
class Step:
    """One training step, set up: its losses (weight, module), transfer set and teacher outputs."""

    cfg: StepConfig
    losses: dict[str, tuple[float, Loss]]
    needs: set[str]
    data: object = None  # the transfer set, as the task keeps it
    labels: torch.Tensor | None = None
    stored: dict = field(default_factory=dict)
    alongside: bool = False
    block: int | None = None  # a progressive stage (MobileBERT): the one student layer it trains, those below frozen

    @property
    def last(self) -> bool:
        return not self.cfg.param.endswith(".intermediate")


def build_losses(weights: dict[str, float], param: str, ctx: LossContext, model, regression: str = "",
                 allowed: frozenset[str] | None = None, device: torch.device | None = None) -> dict:
    """`{name: (weight, Loss)}` of the losses with a weight > 0, each checked against what the student gives
    (`model.provides`), the task's problem (`regression`: the name of a regression task, which has no class
    probabilities) and the needs the task can serve (`allowed`)."""
    losses = {}
    for name, weight in weights.items():
        cls = LOSSES.get(name, param=f"{param}.losses")
        if allowed is not None and cls.needs - allowed:
            fits = sorted(n for n in LOSSES if not LOSSES.get(n).needs - allowed)
            raise DistilleryError(f"param {param}.losses.{name}: this task gives gold labels and the teacher's "
                                  f"logits only, not {', '.join(sorted(cls.needs - allowed))}; use {', '.join(fits)}")
        if weight <= 0:
            continue
        if cls.probabilities and regression:
            fits = sorted(n for n in LOSSES if not LOSSES.get(n).probabilities
                          and not (LOSSES.get(n).needs & STUDENT_PARTS) - model.provides)
            raise DistilleryError(f"param {param}.losses.{name}: needs class probabilities, and task {regression} is a "
                                  f"regression (one output); use {', '.join(fits)}")
        lacking = (cls.needs & STUDENT_PARTS) - model.provides
        if "cls" in cls.needs and "hidden" not in model.provides:
            lacking.add("hidden")
        if lacking:
            raise DistilleryError(f"param {param}.losses.{name}: the {model.family} student has no "
                                  f"{' or '.join(sorted(lacking))}; use it with output-layer losses only")
        try:
            losses[name] = (weight, cls(ctx).to(device or torch.device("cpu")))
        except ValueError as e:
            raise DistilleryError(f"param {param}.losses.{name}: {e}") from None
    return losses


class Task:
    """The base of every task (module docstring). Subclasses set `model`, `tokenizer` and `steps` in `setup`."""

    name = ""
    # the study's other stages where they differ from the classification pipeline's (None: they do not);
    # each is called by its stage command with the params section's values: see tasks/seq2seq.py
    prepare_data = train_teacher = label = evaluate_study = None
    eval_each_epoch = True  # dev score after every epoch of the last step (else after its last epoch only)

    def __init__(self, cfg: StudentConfig, paths: Paths, device: torch.device) -> None:
        self.cfg, self.paths, self.device = cfg, paths, device
        self.model = None
        self.tokenizer = None
        self.steps: list[Step] = []

    def setup(self) -> None:
        raise NotImplementedError

    def start(self, step: Step, rng: np.random.Generator) -> None:
        """Read the step's transfer set and teacher targets (before its first epoch)."""

    def batches(self, step: Step, rng: np.random.Generator) -> list:
        """One epoch of batch keys; by default row indices of the step's transfer set."""
        raise NotImplementedError

    def shard(self, key, rank: int, size: int):
        """This process's share of a global batch (data parallelism)."""
        return np.array_split(key, size)[rank]

    def rows(self, key) -> int:
        return len(key)

    def group(self, key) -> str | None:
        """The name a batch's loss is also summed under (a sub-task of a multi-task student)."""
        return None

    def loss(self, step: Step, key, bf16: bool) -> torch.Tensor:
        raise NotImplementedError

    def trainable(self, step: Step) -> list[torch.Tensor]:
        """The student's trainable weights and the step's loss parameters (TinyBERT's W_e, W_h)."""
        return [p for p in self.model.parameters() if p.requires_grad] + \
            [p for _, loss in step.losses.values() for p in loss.parameters()]

    def evaluate(self) -> dict[str, float]:
        raise NotImplementedError

    def plateau_score(self, dev: dict[str, float]) -> float:
        """The figure of `evaluate()` that training to a plateau follows (higher is better): the main metric."""
        return float(next(iter(dev.values())))

    def save(self, seconds: float, history: list[dict], processes: int) -> dict:
        raise NotImplementedError

    @staticmethod
    def export(cfg, student_dir: Path, prepared: Path, out: Path, teacher: Path | None = None,
               augmented: Path | None = None) -> dict:
        """`distillery export` of a student of this task (`cfg`: the export section), checked against PyTorch;
        returns the export's figures."""
        raise NotImplementedError


TASKS: Registry[type[Task]] = Registry("task")
