"""What every student family provides, and saving/loading a student with the config that built it.

A family is a `Student` subclass registered in STUDENTS with:
- `Config`: a dataclass of its architecture (checkpoints carry it, as in nanoGPT);
- `from_teacher(config, teacher_dir)`: build it, initialised from the teacher where the paper says so;
- `provides`: what its `ModelOutput` can hold beyond logits ("hidden", "scores"), which decides the
  losses it can learn with;
- `input_names`: the tensor names `collate` returns and `forward` takes (also the ONNX inputs);
- `collate(tokenizer, texts_a, texts_b, max_seq_len)`: tokenise and pad one batch;
- `forward(**inputs, hidden=False, scores=False) -> ModelOutput`.
"""

import dataclasses
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from distillery.errors import DistilleryError
from distillery.io import atomic_dir, read_json, write_json
from distillery.outputs import MAIN, ModelOutput
from distillery.registry import Registry

class Student(nn.Module):
    """The interface every family implements (see the module docstring)."""

    family = ""  # the name it is registered by (set by STUDENTS.register)
    card = ("", "", "", "")  # for its model card: what it is, the paper's authors and year, title, arXiv id
    library = "onnx"  # the model card's library_name: "transformers" where the export also holds transformers weights
    params_group = ""  # its defaults block in params.yaml: distill.<params_group>
    provides: frozenset[str] = frozenset()
    trained_by: frozenset[str] = frozenset()  # if set, every step needs a loss that reads one of these (parts it trains)
    export_format = "single"  # "single": one model.onnx; "exits": one graph per layer (FastBERT)
    regression = True  # learns a one-output regression (GLUE STS-B); if not, why (one line) in regression_refusal
    regression_refusal = ""
    export_head: str | None = None  # set by `for_export`: forward then returns that head's logits tensor

    @property
    def input_names(self) -> list[str]:
        """By default the tokenizer's inputs, as the family's config records them."""
        return list(self.config.input_names)

    def collate(self, tokenizer, texts_a: list[str], texts_b: list[str] | None, max_seq_len: int) -> dict:
        """By default the tokenizer's padded batch (pairs as [CLS] a [SEP] b [SEP]), the inputs the family reads."""
        enc = tokenizer(texts_a, texts_b, truncation=True, max_length=max_seq_len, padding=True, return_tensors="pt")
        return {n: enc[n] for n in self.input_names}

    def for_export(self, head: str = MAIN) -> "Student":
        """Make `forward` return the plain logits tensor of `head`: what ONNX export traces."""
        self.export_head = head
        return self

    def predictor(self):
        """batch -> main-head logits (numpy): how the model answers in evaluate and export checks
        (FastBERT: with early exits)."""
        def run(batch: dict):
            with torch.inference_mode():
                out = self(**batch)
            return (out if isinstance(out, torch.Tensor) else out.main).float().numpy()
        return run

    def answer(self, out: ModelOutput) -> ModelOutput | torch.Tensor:
        return out.logits[self.export_head] if self.export_head else out


class _Without(logging.Filter):
    """Drops the log records whose message contains `text`."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def dynamo_onnx(module: torch.nn.Module, inputs: dict, outputs: list[str], path: Path, opset: int,
                max_seq: int) -> None:
    """Export `module(**inputs)` through torch.export (dynamo), every input with a dynamic batch axis and
    (if it has one) sequence axis, weights inline. Opset 18 at least: the exporter's native one
    (down-converting breaks int8 quantisation)."""
    import onnx
    from torch.export import Dim

    batch, seq = Dim("batch"), Dim("seq", max=max_seq)
    shapes = {n: ({0: batch, 1: seq} if v.dim() >= 2 else {0: batch}) for n, v in inputs.items()}
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    quiet = _Without("torchvision is not installed")  # a line per torchvision op the exporter knows: not ours
    registry.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (), str(path), kwargs=inputs, input_names=list(inputs), output_names=outputs,
                              dynamic_shapes=shapes, opset_version=max(opset, 18), dynamo=True, verbose=False)
    finally:
        registry.removeFilter(quiet)
    proto = onnx.load(str(path))
    del proto.graph.value_info[:]  # stale intermediate shapes here make onnxruntime's quantiser fail
    onnx.save(proto, str(path))
    Path(f"{path}.data").unlink(missing_ok=True)  # the weights are inline now


STUDENTS: Registry[type[Student]] = Registry("student model", name_attr="family")
CHECKPOINT = "student.pt"
INFO = "student.json"


def save_student(model: torch.nn.Module, tokenizer, out_dir: str | Path, info: dict,
                 files: dict[str, str] | None = None) -> None:
    """Weights, tokenizer and `student.json` (and `files`: name -> text, e.g. a model card) written together."""
    with atomic_dir(out_dir, "distill") as tmp:
        for name, text in (files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        if hasattr(model, "save_weights"):  # transformers students: config.json + model.safetensors
            model.save_weights(tmp)
        else:
            torch.save(model.state_dict(), tmp / CHECKPOINT)
        tokenizer.save_pretrained(tmp)
        from distillery.teacher.models import DIGESTS, weight_digests

        write_json(tmp / INFO, {"family": model.family, "config": dataclasses.asdict(model.config), **info,
                                DIGESTS: weight_digests(tmp)})


def safe_torch_load(path: Path) -> dict:
    """A state dict saved by torch.save, read with weights_only (never running pickled code); a damaged or
    unsafe file is one line naming it."""
    if not path.is_file():
        raise DistilleryError(f"{path}: missing; re-run `distillery distill` for this student")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling, zip and EOF errors all mean a file we cannot use
        from distillery.teacher.models import first_line

        raise DistilleryError(f"{path}: cannot load ({first_line(e)}); re-run `distillery distill` for this "
                              "student") from None


def load_student(student_dir: str | Path):
    """(model in eval mode, tokenizer, info) from a folder written by `save_student`."""
    d = Path(student_dir)
    if not (d / INFO).is_file():
        raise DistilleryError(f"{d}: no student here ({INFO} missing); run `distillery distill` first")
    info = read_json(d / INFO)
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise DistilleryError(f"{d / INFO}: not a student description; re-run `distillery distill`")
    cls = STUDENTS.get(str(info.get("family")), param=f"{d / INFO}:family")
    try:
        config = cls.Config(**info["config"])
    except TypeError as e:
        raise DistilleryError(f"{d / INFO}: config does not fit {cls.family} ({e}); re-run `distillery distill`") from None
    from distillery.teacher.models import check_digests, load_tokenizer

    if hasattr(cls, "load_weights"):
        model = cls.load_weights(d, config)  # its weights' digests checked by teacher.models.load_weights
    else:
        check_digests(d, "student")
        model = cls(config)
        model.load_state_dict(safe_torch_load(d / CHECKPOINT))

    return model.eval(), load_tokenizer(d, None, f"student {d}"), info
