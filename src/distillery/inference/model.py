"""One model in one runtime, ready to label texts: a student folder (`models/students/<name>`, PyTorch), an export
folder (`exports/<name>`: ONNX, int8 ONNX, and PyTorch where the family's weights ship there) or a teacher folder
(`models/teacher`, PyTorch). Batches come from the model's own `collate`, logits from the same predictors that
`evaluate` scores and times, so `predict` answers exactly as the table's figures were measured."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillery.errors import DistilleryError

RUNTIMES = ("pytorch", "onnx", "int8")
ONE_FILE_FAMILIES = ("seq2seq", "multitask")  # they write text or answer several tasks: not one label per row


@dataclass
class Labeller:
    """What `predict` needs of a model: its labels (None: a regression score), whether it reads text pairs (None: it
    does not say), how to batch texts, and batch -> logits."""

    name: str
    runtime: str
    label_names: list[str] | None
    pair: bool | None
    collate: Callable[[list[str], list[str] | None], dict]
    run: Callable[[dict], np.ndarray]
    max_seq_len: int


def _info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DistilleryError(f"{path}: cannot be read ({e}); re-run the stage that wrote it") from None
    if not isinstance(info, dict):
        raise DistilleryError(f"{path}: not a model description; re-run the stage that wrote it")
    return info


def open_model(folder: str | Path, runtime: str, threads: int = 0) -> Labeller:
    """The model in `folder` in `runtime` (pytorch, onnx, int8), refused in one line where the folder does not hold
    it in that runtime."""
    from distillery.students.base import INFO
    from distillery.teacher.train import TEACHER_INFO

    d = Path(folder)
    if runtime not in RUNTIMES:
        raise DistilleryError(f"--runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    if not d.is_dir():
        raise DistilleryError(f"--model {d}: no such folder; give a student (models/students/<name>), its export "
                              "(exports/<name>) or the teacher (models/teacher)")
    if (d / INFO).is_file():
        return _student(d, _info(d / INFO), runtime, threads)
    if (d / TEACHER_INFO).is_file():
        return _teacher(d, _info(d / TEACHER_INFO), runtime)
    raise DistilleryError(f"--model {d}: neither a student ({INFO}) nor a teacher ({TEACHER_INFO}) is here; give "
                          "models/students/<name>, exports/<name> or models/teacher")


def _labels(info: dict, where: Path) -> list[str] | None:
    if info.get("problem") == "regression":
        return None
    names = info.get("label_names")
    if not isinstance(names, list) or not names:
        raise DistilleryError(f"{where}: names no labels (label_names); re-run the stage that wrote it")
    return [str(n) for n in names]


def _teacher(d: Path, info: dict, runtime: str) -> Labeller:
    from distillery.students.transformer import TransformerConfig, TransformerStudent
    from distillery.teacher.train import TEACHER_INFO, load_teacher

    if runtime != "pytorch":
        raise DistilleryError(f"--model {d}: the teacher is a PyTorch folder; use --runtime pytorch (its ONNX graphs "
                              "are made by `evaluate` for timing only)")
    labels = _labels(info, d / TEACHER_INFO)
    hf, tok, _ = load_teacher(d, n_labels=1 if labels is None else len(labels))
    model = TransformerStudent(TransformerConfig(num_labels=hf.config.num_labels,
                                                 input_names=list(tok.model_input_names)), hf).eval()
    seq = int(info.get("max_seq_len", 128))
    return Labeller("teacher", runtime, labels, info.get("pair"), lambda a, b: model.collate(tok, a, b, seq),
                    model.predictor(), seq)


def _student(d: Path, info: dict, runtime: str, threads: int) -> Labeller:
    from distillery.students.base import CHECKPOINT, INFO, STUDENTS, load_student

    family = str(info.get("family"))
    if family in ONE_FILE_FAMILIES:
        why = "it writes text" if family == "seq2seq" else "one head per task"
        raise DistilleryError(f"--model {d}: a {family} student ({why}); predict labels files with a single-task "
                              "student or teacher")
    cls = STUDENTS.get(family, param=f"{d / INFO}:family")
    has_weights = (d / CHECKPOINT).is_file() or (d / "config.json").is_file()
    if runtime == "pytorch" and not has_weights:
        raise DistilleryError(f"--model {d}: holds no PyTorch weights for a {family} student (its export ships ONNX "
                              f"only); use --runtime onnx or int8, or --model models/students/{info.get('name', '<name>')}")
    if has_weights:
        model, tok, info = load_student(d)
    else:  # an ONNX-only export: the model object only batches texts (its weights are in the graphs)
        from distillery.teacher.models import load_tokenizer

        model, tok = cls(cls.Config(**info["config"])).eval(), load_tokenizer(d, None, f"student {d}")
    seq = int(info["max_seq_len"])
    if runtime == "pytorch":
        run = model.predictor()
    else:
        run = _onnx(model, d, runtime, threads, info)
    pair = info.get("pair", getattr(model.config, "pair", None))
    return Labeller(str(info.get("name", d.name)), runtime, _labels(info, d / INFO), pair,
                    lambda a, b: model.collate(tok, a, b, seq), run, seq)


def _onnx(model, d: Path, runtime: str, threads: int, info: dict) -> Callable:
    from distillery.export.onnx import onnx_predictors

    run = onnx_predictors(model, d, [runtime], threads).get(runtime)
    if run is None:
        what = "int8 ONNX graph" if runtime == "int8" else "ONNX graph"
        hint = f"exports/{info.get('name', '<name>')}" if not (d / "export.json").is_file() else \
            "export it again with export.quantize: true" if runtime == "int8" else "export it again"
        raise DistilleryError(f"--model {d}: no {what} here; point --model at {hint}, or use --runtime pytorch")
    return run
