"""Frozen, validated configs: one per stage, built from its section of params.yaml (`from_section`).

A field that params.yaml sets has no default here: params.yaml is the one place where a pipeline
default is written, so the two cannot disagree. A numeric field's range is written beside it (`Range`);
every check raises `DistilleryError` naming the param (as written in params.yaml).
"""

import math
import re
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, ClassVar

from distillery.errors import DistilleryError

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")


def check(cond: bool, param: str, msg: str) -> None:
    if not cond:
        raise DistilleryError(f"param {param}: {msg}")


def check_name(name: str, param: str) -> str:
    """A student name becomes a folder, a file and a DVC stage name: a plain identifier only."""
    check(isinstance(name, str) and NAME.fullmatch(name) is not None, param,
           f"{name!r} is not a plain name; use letters, digits, '_' and '-' (at most 64, not starting with '-')")
    return name


def load_yaml(path: Path) -> Any:
    """A YAML file (params.yaml), refused in one line naming the file and line: a byte that is not UTF-8, a tab
    where YAML wants spaces, a key given twice in one block (YAML keeps the last one silently), any other error."""
    import yaml

    from distillery.io import read_utf8

    text = read_utf8(path)

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, typing.Hashable) and key in seen:
                    raise DistilleryError(f"{path}:{key_node.start_mark.line + 1}: key {key!r} is given twice in one "
                                          f"block (first on line {seen[key]}); keep one of them")
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep)

    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        if "\t" in str(e) or "'\\t'" in str(e):  # PyYAML: found character '\t' that cannot start any token
            raise DistilleryError(f"{where}: a tab character where YAML wants spaces; indent with spaces") from None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DistilleryError(f"{where}: not valid YAML ({problem})") from None


def check_int(value: Any, param: str, lo: int, hi: int | None = None) -> None:
    """An integer (not a fraction, not a bool) in lo..hi."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    check(ok, param, f"must be a whole number, got {value!r}")
    rng = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
    check(value >= lo and (hi is None or value <= hi), param, f"must be {rng}, got {value}")


def check_num(value: Any, param: str, lo: float, hi: float | None = None, lo_open: bool = False,
         hi_open: bool = False) -> None:
    """A finite number in [lo, hi] (or open at either end)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    check(ok, param, f"must be a finite number, got {value!r}")
    above = value > lo if lo_open else value >= lo
    below = hi is None or (value < hi if hi_open else value <= hi)
    if hi is None:
        rng = f"{'>' if lo_open else '>='} {lo}"
    else:
        rng = "in " + ("(" if lo_open else "[") + f"{lo}, {hi}" + (")" if hi_open else "]")
    check(above and below, param, f"must be {rng}, got {value}")


@dataclass(frozen=True)
class Range:
    """A numeric param's range, written beside its field (`batch_size: Annotated[int, Range(1)]`): a whole number
    for an int field, a finite number otherwise, in [lo, hi] (`lo_open` / `hi_open` leave an end out; no `hi`: no
    upper bound); every item of a list; an unset (None) optional value passes."""

    lo: float
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def check(self, value: Any, param: str, whole: bool) -> None:
        if isinstance(value, (list, tuple)):
            for v in value:
                self.check(v, param, whole)
        elif value is not None and whole:
            check_int(value, param, int(self.lo), None if self.hi is None else int(self.hi))
        elif value is not None:
            check_num(value, param, self.lo, self.hi, self.lo_open, self.hi_open)


def _leaf(tp: Any) -> Any:
    """The item type of a field's type: int for `tuple[int, ...]`, float for `float | None`."""
    args = [a for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis]
    return _leaf(args[0]) if typing.get_origin(tp) in (tuple, typing.Union, types.UnionType) and args else tp


class Checked:
    """The base of every config: each field annotated with a `Range` is checked on construction and named in the
    error as `<section>.<field>`; a subclass's `__post_init__` adds the checks that are not ranges."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for name, hint in typing.get_type_hints(type(self), include_extras=True).items():
            for meta in getattr(hint, "__metadata__", ()):
                if isinstance(meta, Range):
                    meta.check(getattr(self, name), f"{self.section}.{name}", _leaf(hint.__origin__) is int)


def _is_tuple(tp: Any) -> bool:
    """Whether a field holds a list (a tuple, or an optional one): YAML's lists become tuples there."""
    return typing.get_origin(tp) is tuple or any(typing.get_origin(a) is tuple for a in typing.get_args(tp))


def _type_name(tp: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text", dict: "a block of settings"}
    if tp in names:
        return names[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null (unset)" if a is type(None) else _type_name(a) for a in args)
    if origin is tuple:
        return f"a list of {_type_name(args[0]).removeprefix('a ')}s" if args else "a list"
    if origin is dict:
        return "a block of settings"
    return getattr(tp, "__name__", str(tp))


def _fits(value: Any, tp: Any) -> bool:
    """Whether a value read from YAML (or --set) has the type a config field declares."""
    if tp is Any:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value) if args else True
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return True


def _coerce(value: Any, tp: Any) -> Any:
    """A value as the type its field declares where nothing is lost: a whole-number float where a whole number is
    wanted (`--set max_train=1e3`: 1000), a whole number where text is wanted (`--set data_dir=2024`: "2024")."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if any(_fits(value, a) for a in args):
            return value
        for a in args:
            if _fits(c := _coerce(value, a), a):
                return c
        return value
    if origin is tuple and args and isinstance(value, (list, tuple)):
        return type(value)(_coerce(v, args[0]) for v in value)
    if tp is int and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if tp is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def coerce(cls: type, values: dict) -> dict:
    """`values` with each one a field of `cls` declares converted where that is exact (`_coerce`)."""
    hints = typing.get_type_hints(cls)
    return {k: _coerce(v, hints[k]) if k in hints else v for k, v in values.items()}


def check_types(cls: type, values: dict, prefix: str) -> None:
    """Refuse a value of the wrong type (`bf16: perhaps`, `task: 5`, `features: cls@1` where a list is meant)
    with one line naming the param and the type it wants."""
    hints = typing.get_type_hints(cls)
    for k, v in values.items():
        if k in hints and not _fits(v, hints[k]):
            want = _type_name(hints[k])
            raise DistilleryError(f"param {prefix}.{k}: must be {want}, got {v!r}"
                                  + (" (a list is written [a, b])" if "list" in want and isinstance(v, str) else ""))


@dataclass(frozen=True)
class PrepareConfig(Checked):
    """Where the data is and how to read it. `task` names a GLUE preset (sst2, cola, mrpc, rte, stsb: its
    files, columns, labels and metrics filled in, module `data.tasks`) or your own task; a setting you give
    overrides the preset's."""

    section = "prepare"
    task: str
    data_dir: str | None  # the folder of train_file and dev_file (a GLUE task folder for a preset)
    max_train: Annotated[int, Range(0)]  # 0 keeps every training example
    max_dev: Annotated[int, Range(0)]
    seed: Annotated[int, Range(0)]
    duplicates: str  # a training text seen with different labels: majority | first | drop
    hf_dataset: str | None = None  # or a Hugging Face dataset: a name (needs a network) or a local folder
    hf_config: str | None = None
    train_split: str = "train"  # the dataset's splits (hf_dataset only); dev_split null: carved from train
    dev_split: str | None = "validation"
    test_split: str | None = None
    # your own files: one per split (CSV, TSV, JSON Lines, Parquet) and the columns to read. No dev_file: a
    # seeded, stratified `dev_share` of the training texts is set aside as dev (never trained on); test_file
    # (optional) is scored by `evaluate` beside dev and never used to stop or choose
    train_file: str | None = None
    dev_file: str | None = None
    test_file: str | None = None
    dev_share: Annotated[float, Range(0, 0.5, lo_open=True)] = 0.1
    format: str | None = None  # csv | tsv | jsonl | parquet; None: from the file's suffix (.txt reads as csv)
    delimiter: str | None = None  # csv: "," unless set (e.g. ";")
    columns: tuple[str, ...] | None = None  # names for the columns of a CSV/TSV file without a header row
    text_column: str | None = None
    text_pair_column: str | None = None  # the second text of a pair task
    label_column: str | None = None  # a class, or (problem regression) a number
    problem: str | None = None  # classification (default) | regression (one output, MSE)
    labels: tuple[str | int, ...] | None = None  # fixes the label order; None: the training split's, sorted
    label_names: tuple[str, ...] | None = None  # display names of `labels`, in their order (default: the labels)
    metrics: tuple[str, ...] | None = None  # first = main; accuracy macro_f1 f1 mcc | pearson spearman

    def __post_init__(self) -> None:
        from distillery.data.files import FORMATS
        from distillery.data.glue import DUPLICATE_RULES
        from distillery.data.tasks import PRESETS, PROBLEMS, preset_params
        from distillery.metrics import METRICS

        super().__post_init__()
        check(bool(self.data_dir or self.train_file) != bool(self.hf_dataset), "prepare.data_dir",
               "give exactly one of prepare.data_dir (a GLUE folder, or the folder of prepare.train_file), "
               "prepare.hf_dataset, or prepare.train_file (your own files)")
        source = "hf" if self.hf_dataset else "files"
        for key, value in (preset_params(self.task, source) or {}).items():  # a preset fills what is unset
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        if not (self.train_file or self.hf_dataset) or not self.text_column or not self.label_column:
            check(False, "prepare.task", f"unknown task {self.task!r}: not a GLUE preset "
                   f"({', '.join(PRESETS)}); for your own data set prepare.train_file (or prepare.hf_dataset), "
                   "prepare.text_column and prepare.label_column")
        check_name(self.task, "prepare.task (your task's name)")
        if self.hf_dataset:
            stray = [k for k in ("train_file", "dev_file", "test_file", "format", "delimiter", "columns")
                     if getattr(self, k)]
            check(not stray, f"prepare.{stray[0] if stray else ''}", "reads files; with prepare.hf_dataset name "
                   "the dataset's splits in prepare.train_split / prepare.dev_split / prepare.test_split instead")
        else:
            stray = [k for k in ("test_split",) if getattr(self, k)]
            check(not stray, "prepare.test_split", "names a dataset's split; for files set prepare.test_file")
            for key, others in (("dev_file", (self.train_file,)), ("test_file", (self.train_file, self.dev_file))):
                check(not getattr(self, key) or getattr(self, key) not in others, f"prepare.{key}",
                      "names the same file as another split; each split needs its own file (leave "
                      "prepare.dev_file out to carve dev from train)")
        check(self.format is None or self.format in FORMATS, "prepare.format",
               f"must be one of {', '.join(FORMATS)}, got {self.format!r}")
        check(self.delimiter is None or len(self.delimiter) == 1, "prepare.delimiter",
               f"must be one character, got {self.delimiter!r}")
        if self.columns is not None:
            check(len(self.columns) >= 2 and len(set(self.columns)) == len(self.columns), "prepare.columns",
                   "must name at least two distinct columns (one for the text, one for the label)")
        if self.problem is None:
            object.__setattr__(self, "problem", "classification")
        problem = self.problem
        check(problem in PROBLEMS, "prepare.problem", f"must be one of {', '.join(PROBLEMS)}, got {self.problem!r}")
        for m in self.metrics or ():
            check(METRICS.get(m) == problem, "prepare.metrics", f"{m!r} does not score a {problem} task; use "
                   + ", ".join(k for k, v in METRICS.items() if v == problem))
        check(self.metrics is None or len(self.metrics) >= 1, "prepare.metrics", "must list at least one metric")
        if problem == "regression":
            stray = [k for k in ("labels", "label_names") if getattr(self, k) is not None]
            check(not stray, f"prepare.{stray[0] if stray else ''}", "a regression task has no label set; remove it")
        if self.labels is not None:
            check(len(self.labels) >= 2 and len(set(map(str, self.labels))) == len(self.labels), "prepare.labels",
                   "must list at least two distinct labels")
        if self.label_names is not None:
            check(self.labels is not None and len(self.label_names) == len(self.labels)
                   and len(set(self.label_names)) == len(self.label_names), "prepare.label_names",
                   "must give one distinct name for each of prepare.labels (set prepare.labels too)")
        check(self.duplicates in DUPLICATE_RULES, "prepare.duplicates",
               f"must be one of {', '.join(DUPLICATE_RULES)}, got {self.duplicates!r}")


@dataclass(frozen=True, kw_only=True)
class TrainerConfig(Checked):
    """What every teacher stage trains with (its `teacher` section): the base model and the transformers
    `Trainer`'s settings (`teacher.train.fit`). Each task's teacher config adds its own."""

    section = "teacher"
    base_model: str  # HF id, local path, or a name in KNOWN_OFFLINE_MODELS
    epochs: Annotated[float, Range(0)]  # 0: use a fine-tuned teacher as is
    batch_size: Annotated[int, Range(1)]
    lr: Annotated[float, Range(0, lo_open=True)]
    weight_decay: Annotated[float, Range(0)]
    warmup_ratio: Annotated[float, Range(0, 1, hi_open=True)]
    seed: Annotated[int, Range(0)]
    bf16: bool
    logging_steps: Annotated[int, Range(1)]  # steps per point of the training-loss curve


@dataclass(frozen=True, kw_only=True)
class TeacherConfig(TrainerConfig):
    """A sequence classifier (or regressor) fine-tuned on the prepared task."""

    max_seq_len: Annotated[int, Range(8, 4096)]  # and at most the model's positions (checked on load)
    # hidden and attention dropout; None: the base model's own (an ensemble varies it)
    dropout: Annotated[float | None, Range(0, 1, hi_open=True)] = None
    # training to a plateau, as a student's (StudentConfig): optional, unset trains every epoch and keeps the last
    max_steps: Annotated[int, Range(0)] = 0
    min_gain: Annotated[float | None, Range(0, 1)] = None
    evals_per_epoch: Annotated[int, Range(1, 1000)] = 1
    patience: Annotated[int, Range(1, 1000)] = 1  # evaluations in a row that gain less than min_gain: then stop
    threads: Annotated[int, Range(0, 1024)] = 0  # torch threads; 0: torch's default


@dataclass(frozen=True)
class AugmentConfig(Checked):
    """Tang et al. 2019, section 3.1: masking, POS-guided replacement, n-gram sampling."""

    section = "augment"
    p_mask: Annotated[float, Range(0, 1)]
    p_pos: Annotated[float, Range(0, 1)]
    p_ng: Annotated[float, Range(0, 1)]
    max_ng: Annotated[int, Range(1)]
    n_iter: Annotated[int, Range(1)]
    seed: Annotated[int, Range(0)]
    tagger: str  # a spaCy pipeline with a tagger; "none" turns the POS rule off
    mask_token: str = "[MASK]"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.p_mask + self.p_pos <= 1.0, "augment.p_pos",
               f"p_mask + p_pos must be <= 1, got {self.p_mask} + {self.p_pos}")
        check(self.p_pos == 0 or self.tagger != "none", "augment.tagger",
               "p_pos > 0 needs a POS tagger: name an installed spaCy pipeline, or set augment.p_pos to 0")


@dataclass(frozen=True)
class SoftLabelConfig(Checked):
    section = "soft_labels"
    batch_tokens: Annotated[int, Range(1)]  # tokens per teacher forward pass (texts per batch = batch_tokens // length)
    max_seq_len: Annotated[int, Range(8, 4096)]  # and at most the teacher's positions
    bf16: bool
    features: tuple[str, ...]  # teacher features stored next to the logits, e.g. ("cls@3", "cls@6")
    threads: Annotated[int, Range(0, 1024)]  # torch threads; 0: torch's default (does not change the logits)
    checkpoint_every: Annotated[int, Range(1)] = 4096  # texts per store part: a killed run loses at most this much


STEP_FIELDS = ("losses", "transfer_set", "epochs", "batch_size", "lr", "temperature", "max_examples", "max_steps")


@dataclass(frozen=True)
class StepConfig(Checked):
    """One training step of a student: what it learns from, on which data, for how long."""

    param: str  # where it sits in params.yaml, for error messages
    losses: dict[str, float]
    transfer_set: str
    epochs: Annotated[int, Range(1)]
    batch_size: Annotated[int, Range(1)]
    lr: Annotated[float, Range(0, lo_open=True)]
    temperature: Annotated[float, Range(0, lo_open=True)]
    max_examples: Annotated[int, Range(0)]  # 0: the whole transfer set; else a seeded sample of this many
    max_steps: Annotated[int, Range(0)] = 0  # optimizer steps at most (0: `epochs` alone caps the step)
    progressive: bool = False  # MobileBERT: one stage per student layer, the layers below it frozen (intermediate)

    @property
    def section(self) -> str:
        return self.param

    def __post_init__(self) -> None:
        p = self.param
        check(isinstance(self.progressive, bool), f"{p}.progressive", f"must be true or false, got {self.progressive!r}")
        check(isinstance(self.losses, dict) and bool(self.losses), f"{p}.losses", "name at least one loss with a weight")
        for k, w in self.losses.items():
            check_num(w, f"{p}.losses.{k}", 0)
        check(sum(self.losses.values()) > 0, f"{p}.losses",
               "every loss weight is 0, so nothing would be learnt; give at least one loss a weight > 0")
        check(self.transfer_set in ("augmented", "train"), f"{p}.transfer_set",
               f"must be 'augmented' or 'train', got {self.transfer_set!r}")
        super().__post_init__()


@dataclass(frozen=True)
class StudentConfig(Checked):
    """One student: `distill.common`, then `distill.<its family's group>`, then `students.<name>` of
    params.yaml, merged (`merge_student`). No field has a default here: params.yaml is the one place
    where a default is written.

    The top-level losses/transfer_set/epochs/... are the student's (last) training step. An optional
    `intermediate` block with the same keys runs first: TinyBERT's intermediate-layer distillation,
    MobileBERT's layer-to-layer transfer; keys it leaves out are taken from the top level."""

    name: str
    model: str  # registered student family, e.g. "bilstm"
    losses: dict[str, float]  # registered loss name -> weight
    model_args: dict[str, Any]
    transfer_set: str  # "augmented" (train + generated texts) or "train"
    epochs: int
    batch_size: int
    lr: float
    temperature: float
    max_examples: int
    max_seq_len: Annotated[int, Range(2, 4096)]  # and at most the teacher's positions (checked on load)
    seed: Annotated[int, Range(0)]
    optimizer: str  # "adam" (constant lr) or "adamw" (linear warm-up and decay, weight decay)
    betas: tuple[float, ...]  # Adam's (beta1, beta2)
    weight_decay: Annotated[float, Range(0)]
    warmup_ratio: Annotated[float, Range(0, 1, hi_open=True)]
    grad_clip: Annotated[float, Range(0, lo_open=True)]  # max global gradient norm
    bucket_batches: Annotated[int, Range(1)]  # training batches are sorted by length within buckets of this many
    task: str  # a registered task (distillery.tasks.TASKS): what the data and the teacher's targets are
    intermediate: dict[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] = ()  # a multi-task student's tasks (folders of the prepared root)
    # training to a plateau (the last step): optional, so that a study written before it trains as it did.
    # min_gain None: every epoch runs and the last weights are kept; a number: the dev score is taken
    # `evals_per_epoch` times an epoch, the step stops after `patience` evaluations in a row that beat the best
    # so far by less than min_gain, and the best evaluated weights are kept (`epochs` and `max_steps` are caps)
    max_steps: Annotated[int, Range(0)] = 0
    min_gain: Annotated[float | None, Range(0, 1)] = None
    evals_per_epoch: Annotated[int, Range(1, 1000)] = 1
    patience: Annotated[int, Range(1, 1000)] = 1  # evaluations in a row that gain less than min_gain: then stop
    threads: Annotated[int, Range(0, 1024)] = 0  # torch threads; 0: torch's default
    loss_args: dict[str, Any] = field(default_factory=dict)  # per-token losses: label_smoothing, top_k

    @property
    def section(self) -> str:
        return f"students.{self.name}"

    def __post_init__(self) -> None:
        check_name(self.name, "students (a student's name)")
        p = self.section
        check_name(self.task, f"{p}.task")
        check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"{p}.betas",
              f"must be two numbers in [0, 1), got {list(self.betas)}")
        check(isinstance(self.loss_args, dict) and set(self.loss_args) <= {"label_smoothing", "top_k"},
              f"{p}.loss_args", f"must be a block of label_smoothing, top_k; got {self.loss_args!r}")
        if "label_smoothing" in self.loss_args:
            check_num(self.loss_args["label_smoothing"], f"{p}.loss_args.label_smoothing", 0, 1, hi_open=True)
        if "top_k" in self.loss_args:
            check_int(self.loss_args["top_k"], f"{p}.loss_args.top_k", 1, 1024)
        check(len(set(self.tasks)) == len(self.tasks), f"{p}.tasks", "names a task twice")
        for t in self.tasks:
            check_name(str(t), f"{p}.tasks")
        check(isinstance(self.model_args, dict), f"{p}.model_args", "must be a block of settings")
        check(isinstance(self.intermediate, dict), f"{p}.intermediate", "must be a block of step settings")
        unknown = [k for k in self.intermediate if k not in (*STEP_FIELDS, "progressive")]
        check(not unknown, f"{p}.intermediate.{unknown[0] if unknown else ''}",
               f"unknown setting; use {', '.join(STEP_FIELDS)}, progressive")
        self.steps()  # validates both steps
        check(self.optimizer in ("adam", "adamw"), f"{p}.optimizer", f"must be 'adam' or 'adamw', got {self.optimizer!r}")
        super().__post_init__()

    def steps(self) -> list[StepConfig]:
        p = f"students.{self.name}"
        main = {k: getattr(self, k) for k in STEP_FIELDS}
        out = []
        if self.intermediate:
            inter = {**main, "losses": {}, **self.intermediate}
            out.append(StepConfig(param=f"{p}.intermediate", **inter))
        out.append(StepConfig(param=p, **main))
        return out


def merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`, merging nested blocks key by key (a student's model_args adds to its
    family's)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def merge_student(name: str, block: Any, defaults: dict, group: str) -> StudentConfig:
    """The StudentConfig of `students.<name>`: `defaults["common"]`, then `defaults[group]`, then the
    block. `losses` is the student's own (never merged: a loss left in by a default would train)."""
    check_name(name, "students (a student's name)")
    check(isinstance(block, dict), f"students.{name}", "must be a block of settings")
    merged = merge(merge(defaults.get("common") or {}, defaults.get(group) or {}), {**block, "losses": {}})
    merged["losses"] = block.get("losses") or {}
    return from_section(StudentConfig, f"students.{name}", merged, {"name": name},
                        f"students.{name}, distill.{group} or distill.common")


@dataclass(frozen=True)
class EvaluateConfig(Checked):
    section = "evaluate"
    threads: Annotated[int, Range(1, 1024)]
    repeats: Annotated[int, Range(1)]
    warmup: Annotated[int, Range(0)]
    batch_sizes: Annotated[tuple[int, ...], Range(1, 65536)]
    runtimes: tuple[str, ...]  # pytorch, plus what export wrote: onnx, int8
    opset: Annotated[int, Range(13, 23)]  # the teacher's ONNX export (students are exported by `export`)
    exit_speeds: Annotated[tuple[float, ...], Range(0, 1)]  # models with early exits: the speed-accuracy curve's thresholds
    exit_repeats: Annotated[int, Range(1)]  # ... and the timed calls per speed and batch size
    budget: dict | None = None  # the pick: max_ms_per_text, batch_size, runtime (or any), min_retention

    def __post_init__(self) -> None:
        super().__post_init__()
        check(len(self.exit_speeds) > 0, "evaluate.exit_speeds", "name at least one speed")
        if self.budget is not None:
            self._check_budget(dict(self.budget))
        bad = [r for r in self.runtimes if r not in ("pytorch", "onnx", "int8")]
        check(not bad, "evaluate.runtimes", f"unknown runtime {bad[0] if bad else ''!r}; use pytorch, onnx, int8")
        check("pytorch" in self.runtimes, "evaluate.runtimes",
               "must include pytorch (retention and agreement are measured against it)")
        check(len(self.batch_sizes) > 0, "evaluate.batch_sizes", "name at least one batch size")

    def _check_budget(self, b: dict) -> None:
        """evaluate.budget: a latency per text that the machine can time, at a timed batch size, in a timed runtime."""
        keys = ("max_ms_per_text", "batch_size", "runtime", "min_retention")
        unknown = sorted(set(b) - set(keys))
        check(not unknown, f"evaluate.budget.{unknown[0] if unknown else ''}", f"unknown setting; use {', '.join(keys)}")
        check("max_ms_per_text" in b, "evaluate.budget.max_ms_per_text", "missing; the latency a text may take")
        check_num(b["max_ms_per_text"], "evaluate.budget.max_ms_per_text", 0, lo_open=True)
        check_int(b.get("batch_size", 1), "evaluate.budget.batch_size", 1)
        check(b.get("batch_size", 1) in self.batch_sizes, "evaluate.budget.batch_size",
              f"{b.get('batch_size', 1)} is not timed; use one of evaluate.batch_sizes {list(self.batch_sizes)}")
        check(b.get("runtime", "any") in (*self.runtimes, "any"), "evaluate.budget.runtime",
              f"{b.get('runtime')!r} is not evaluated; use any or one of evaluate.runtimes {list(self.runtimes)}")
        check_num(b.get("min_retention", 0.0), "evaluate.budget.min_retention", 0, 1)


@dataclass(frozen=True)
class ExportConfig(Checked):
    section = "export"
    opset: Annotated[int, Range(13, 23)]
    min_agreement: Annotated[float, Range(0, 1)]
    quantize: bool
    license: str  # the model cards' `license` (the teacher's; all-MiniLM-L6-v2 is apache-2.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(re.fullmatch(r"[a-z0-9][a-z0-9.+-]{0,63}", self.license)), "export.license",
               f"{self.license!r} is not a Hub licence id (lower case, e.g. apache-2.0, mit, other)")


@dataclass(frozen=True)
class MemberConfig(Checked):
    """One ensemble member (MT-DNN KD study, `members.<name>`): a teacher fine-tuned on `task` with its
    own seed and dropout, for its task's number of epochs (small tasks need more than one)."""

    name: str
    task: str
    seed: Annotated[int, Range(0)]
    dropout: Annotated[float, Range(0, 1, hi_open=True)]
    epochs: Annotated[float, Range(0, lo_open=True)]

    @property
    def section(self) -> str:
        return f"members.{self.name}"

    def __post_init__(self) -> None:
        from distillery.data.tasks import check_preset

        check_name(self.name, "members (a member's name)")
        check_preset(self.task, param=f"{self.section}.task")
        super().__post_init__()


def study_tasks(doc: dict) -> list[str]:
    """The task names of a multi-task study's params (the keys of its `tasks` section)."""
    tasks = doc.get("tasks") or {}
    check(isinstance(tasks, dict) and bool(tasks), "tasks", "must be a block of tasks (name: prepare settings)")
    return list(tasks)


def members_config(block: Any) -> list[MemberConfig]:
    """The `members` section: name -> {task, seed, dropout, epochs}; an empty section is no teacher at all."""
    keys = ", ".join(f.name for f in fields(MemberConfig) if f.name != "name")
    check(isinstance(block or {}, dict), "members", f"must be a block of members (name: {{{keys}}})")
    out = []
    for name, values in (block or {}).items():
        check(isinstance(values, dict), f"members.{name}", f"must be a block with {keys}")
        out.append(from_section(MemberConfig, f"members.{name}", values, {"name": str(name)}))
    return out


@dataclass(frozen=True)
class MtEvaluateConfig(Checked):
    section = "evaluate"
    threads: Annotated[int, Range(1, 1024)]
    latency_texts: Annotated[int, Range(1)]  # dev texts per task timed one at a time
    warmup: Annotated[int, Range(0)]


def from_section(cls: type, section: str, values: Any, fixed: dict | None = None, where: str = "params.yaml"):
    """A config from its params.yaml section (a dict; `fixed`: fields the caller sets, such as a student's name):
    unknown, missing and wrongly typed keys are errors that name the param (`where`: where a missing one is
    set); YAML lists become tuples where the field is one. The one parser of every section and block."""
    check(isinstance(values, dict), section, "must be a block of settings")
    fixed = fixed or {}
    known = {f.name: f for f in fields(cls) if f.name not in fixed}
    unknown = sorted(k for k in values if k not in known)
    check(not unknown, f"{section}.{unknown[0] if unknown else ''}", f"unknown setting; use {', '.join(sorted(known))}")
    missing = [n for n, f in known.items() if n not in values and f.default is MISSING and f.default_factory is MISSING]
    check(not missing, f"{section}.{missing[0] if missing else ''}", f"missing; set it in {where}")
    values = coerce(cls, values)
    check_types(cls, values, section)
    hints = typing.get_type_hints(cls)
    kw = {k: tuple(v) if isinstance(v, list) and _is_tuple(hints[k]) else v for k, v in values.items()}
    return cls(**fixed, **kw)
