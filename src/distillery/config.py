"""Frozen, validated configs: one per stage. Stages build them from typed options.

Each `__post_init__` raises `DistilleryError` naming the param (as written in params.yaml).
"""

from dataclasses import dataclass, field, fields
from typing import Any

from distillery.errors import DistilleryError


def _check(cond: bool, param: str, msg: str) -> None:
    if not cond:
        raise DistilleryError(f"param {param}: {msg}")


@dataclass(frozen=True)
class PrepareConfig:
    task: str = "sst2"
    data_dir: str | None = None  # a GLUE-format folder with train.tsv and dev.tsv
    hf_dataset: str | None = None  # or a Hugging Face dataset name (needs a network)
    hf_config: str | None = None
    max_train: int = 0  # 0 keeps every training example
    max_dev: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        from distillery.data.tasks import get_task

        get_task(self.task)
        _check(bool(self.data_dir) != bool(self.hf_dataset), "prepare.data_dir",
               "give exactly one of prepare.data_dir (a GLUE folder) or prepare.hf_dataset")
        _check(self.max_train >= 0, "prepare.max_train", f"must be >= 0, got {self.max_train}")
        _check(self.max_dev >= 0, "prepare.max_dev", f"must be >= 0, got {self.max_dev}")


@dataclass(frozen=True)
class TeacherConfig:
    base_model: str = "all-MiniLM-L6-v2"  # HF id, local path, or a name in KNOWN_OFFLINE_MODELS
    max_seq_len: int = 64
    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    seed: int = 0
    bf16: bool = True
    logging_steps: int = 50

    def __post_init__(self) -> None:
        _check(8 <= self.max_seq_len <= 4096, "teacher.max_seq_len", f"must be in 8..4096, got {self.max_seq_len}")
        _check(self.epochs >= 0, "teacher.epochs", f"must be >= 0 (0: use a fine-tuned teacher as is), got {self.epochs}")
        _check(self.batch_size >= 1, "teacher.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, "teacher.lr", f"must be > 0, got {self.lr}")
        _check(0 <= self.warmup_ratio < 1, "teacher.warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")


@dataclass(frozen=True)
class AugmentConfig:
    """Tang et al. 2019, section 3.1: masking, POS-guided replacement, n-gram sampling."""

    p_mask: float = 0.1
    p_pos: float = 0.1
    p_ng: float = 0.25
    max_ng: int = 5
    n_iter: int = 20
    seed: int = 0
    tagger: str = "en_core_web_sm"  # a spaCy pipeline with a tagger; "none" turns the POS rule off
    mask_token: str = "[MASK]"

    def __post_init__(self) -> None:
        for name in ("p_mask", "p_pos", "p_ng"):
            v = getattr(self, name)
            _check(0.0 <= v <= 1.0, f"augment.{name}", f"is a probability and must be in [0, 1], got {v}")
        _check(self.p_mask + self.p_pos <= 1.0, "augment.p_pos",
               f"p_mask + p_pos must be <= 1, got {self.p_mask} + {self.p_pos}")
        _check(self.max_ng >= 1, "augment.max_ng", f"must be an integer >= 1, got {self.max_ng}")
        _check(self.n_iter >= 1, "augment.n_iter", f"must be an integer >= 1, got {self.n_iter}")
        _check(self.p_pos == 0 or self.tagger != "none", "augment.tagger",
               "p_pos > 0 needs a POS tagger: name an installed spaCy pipeline, or set augment.p_pos to 0")


@dataclass(frozen=True)
class SoftLabelConfig:
    batch_tokens: int = 8192  # tokens per teacher forward pass (texts per batch = batch_tokens // length)
    max_seq_len: int = 64
    bf16: bool = True
    checkpoint_every: int = 4096  # texts per store part: a killed run loses at most this much work
    features: tuple[str, ...] = ()  # teacher features stored next to the logits, e.g. ("cls@3", "cls@6")

    def __post_init__(self) -> None:
        _check(self.checkpoint_every >= 1, "soft_labels.checkpoint_every", f"must be >= 1, got {self.checkpoint_every}")
        _check(self.batch_tokens >= 1, "soft_labels.batch_tokens", f"must be >= 1, got {self.batch_tokens}")
        _check(8 <= self.max_seq_len <= 4096, "soft_labels.max_seq_len", f"must be in 8..4096, got {self.max_seq_len}")


STEP_FIELDS = ("losses", "transfer_set", "epochs", "batch_size", "lr", "temperature", "max_examples")


@dataclass(frozen=True)
class StepConfig:
    """One training step of a student: what it learns from, on which data, for how long."""

    param: str  # where it sits in params.yaml, for error messages
    losses: dict[str, float]
    transfer_set: str
    epochs: int
    batch_size: int
    lr: float
    temperature: float
    max_examples: int = 0  # 0: the whole transfer set; else a seeded sample of this many

    def __post_init__(self) -> None:
        p = self.param
        _check(bool(self.losses), f"{p}.losses", "name at least one loss with a weight")
        for k, w in self.losses.items():
            _check(float(w) >= 0, f"{p}.losses.{k}", f"weight must be >= 0, got {w}")
        _check(self.transfer_set in ("augmented", "train"), f"{p}.transfer_set",
               f"must be 'augmented' or 'train', got {self.transfer_set!r}")
        _check(self.epochs >= 1, f"{p}.epochs", f"must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"{p}.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, f"{p}.lr", f"must be > 0, got {self.lr}")
        _check(self.temperature > 0, f"{p}.temperature", f"must be > 0, got {self.temperature}")
        _check(self.max_examples >= 0, f"{p}.max_examples", f"must be >= 0, got {self.max_examples}")


@dataclass(frozen=True)
class StudentConfig:
    """One `students.<name>` block of params.yaml.

    The top-level losses/transfer_set/epochs/... are the student's (last) training step. An optional
    `intermediate` block with the same keys runs first: TinyBERT's intermediate-layer distillation,
    MobileBERT's layer-to-layer transfer; keys it leaves out are taken from the top level."""

    name: str
    model: str  # registered student family, e.g. "bilstm"
    losses: dict[str, float] = field(default_factory=dict)  # registered loss name -> weight
    model_args: dict[str, Any] = field(default_factory=dict)
    transfer_set: str = "augmented"  # "augmented" (train + generated texts) or "train"
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    temperature: float = 1.0
    max_examples: int = 0
    max_seq_len: int = 64
    seed: int = 0
    optimizer: str = "adam"  # "adam" (constant lr) or "adamw" (linear warm-up and decay, weight decay)
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    intermediate: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = f"students.{self.name}"
        self.steps()  # validates both steps
        _check(self.optimizer in ("adam", "adamw"), f"{p}.optimizer", f"must be 'adam' or 'adamw', got {self.optimizer!r}")
        _check(0 <= self.warmup_ratio < 1, f"{p}.warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        _check(self.weight_decay >= 0, f"{p}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        unknown = [k for k in self.intermediate if k not in STEP_FIELDS]
        _check(not unknown, f"{p}.intermediate.{unknown[0] if unknown else ''}",
               f"unknown setting; use {', '.join(STEP_FIELDS)}")

    def steps(self) -> list[StepConfig]:
        p = f"students.{self.name}"
        main = {k: getattr(self, k) for k in STEP_FIELDS}
        out = []
        if self.intermediate:
            inter = {**main, **self.intermediate}
            if "losses" not in self.intermediate:
                inter["losses"] = {}
            out.append(StepConfig(param=f"{p}.intermediate", **inter))
        out.append(StepConfig(param=p, **main))
        return out


@dataclass(frozen=True)
class EvaluateConfig:
    threads: int = 2
    repeats: int = 30
    warmup: int = 5
    batch_sizes: tuple[int, ...] = (1, 32)

    def __post_init__(self) -> None:
        _check(self.threads >= 1, "evaluate.threads", f"must be >= 1, got {self.threads}")
        _check(self.repeats >= 1, "evaluate.repeats", f"must be >= 1, got {self.repeats}")


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17
    min_agreement: float = 0.999
    quantize: bool = True

    def __post_init__(self) -> None:
        _check(0 <= self.min_agreement <= 1, "export.min_agreement", f"must be in [0, 1], got {self.min_agreement}")


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]
