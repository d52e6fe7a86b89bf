"""The `export` stage: one student -> ONNX (dynamic batch and sequence axes), int8 ONNX, tokenizer, card.

The stage fails if onnxruntime's predictions agree with PyTorch's on less than `min_agreement`
of the dev set.
"""

import warnings
from pathlib import Path

import numpy as np
import torch

from distillery.config import ExportConfig
from distillery.data.prepare import load_prepared
from distillery.errors import DistilleryError
from distillery.evaluate.predict import predict_logits
from distillery.export.card import model_card
from distillery.export.runtime import ONNX_FILES, onnx_mb, quantize_int8, session
from distillery.io import atomic_dir, read_json, write_json
from distillery.students import load_student
from distillery.teacher.models import DIGESTS, weight_digests
from distillery.teacher.train import TEACHER_INFO


def _dynamic_axes(names: list[str]) -> dict:
    """Batch axis everywhere; each token input gets its own sequence axis (a pair's sides differ)."""
    return {n: ({0: "batch", 1: "seq" + n.removeprefix("input_ids")} if n.startswith("input_ids") else {0: "batch"})
            for n in names} | {"logits": {0: "batch"}}


def to_onnx(model, example: dict, names: list[str], path: Path, opset: int, dynamic_axes: dict | None = None) -> None:
    """torch.onnx.export (TorchScript exporter) with dynamic batch and sequence axes, or the
    family's own `export_onnx` where it has one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(model, "export_onnx"):
            model.export_onnx(path, example, opset)
        else:
            torch.onnx.export(model, (), str(path), kwargs={n: example[n] for n in names}, input_names=names,
                              output_names=["logits"], dynamic_axes=dynamic_axes or _dynamic_axes(names),
                              opset_version=opset, dynamo=False)


def onnx_predictors(model, folder: Path, runtimes, threads: int = 0) -> dict:
    """runtime -> (batch -> logits) for each of `runtimes` ("onnx", "int8") exported in `folder`."""
    out = {}
    for runtime in runtimes:
        if runtime not in ONNX_FILES:
            continue
        if model.export_format == "exits":
            from distillery.export.exits import onnx_predictor

            if (Path(folder) / ("embeddings" + (".int8.onnx" if runtime == "int8" else ".onnx"))).is_file():
                out[runtime] = onnx_predictor(folder, model.config.speed, int8=runtime == "int8", threads=threads)
        elif (Path(folder) / ONNX_FILES[runtime]).is_file():
            sess = session(Path(folder) / ONNX_FILES[runtime], threads)
            out[runtime] = (lambda s: lambda batch: s.run(["logits"], {k: np.asarray(v) for k, v in batch.items()})[0])(sess)
    return out


def _export_graphs(model, example: dict, names: list[str], folder: Path, cfg: ExportConfig) -> dict:
    """Write the ONNX file(s) (and int8 twins with `cfg.quantize`) into `folder`; runtime -> predictor."""
    if model.export_format == "exits":
        from distillery.export.exits import export_exits

        export_exits(model, example, folder, cfg.opset, cfg.quantize)
    else:
        twin = model.for_export() if hasattr(model, "for_export") else model
        to_onnx(twin, example, names, folder / ONNX_FILES["onnx"], cfg.opset)
        if cfg.quantize:
            quantize_int8(folder / ONNX_FILES["onnx"], folder / ONNX_FILES["int8"])
    return onnx_predictors(model, folder, ["onnx", "int8"] if cfg.quantize else ["onnx"])


def _rows(table: Path) -> int:
    """Data rows of a table written by `write_table` (one header line, one line a row)."""
    with open(table, "rb") as fh:
        return max(sum(1 for _ in fh) - 1, 0)


def export_student(cfg: ExportConfig, student_dir: str | Path, prepared_dir: str | Path, out_dir: str | Path,
                   teacher_dir: str | Path | None = None, augmented_dir: str | Path | None = None) -> dict:
    """ONNX + int8 ONNX + tokenizer + model card for one student. `teacher_dir` names the teacher's base
    checkpoint in the card, `augmented_dir` the augmented transfer set's size (both optional)."""
    prep = load_prepared(prepared_dir)
    task, dev = prep.task, prep.dev
    model, tokenizer, sinfo = load_student(student_dir)
    transfer_rows = {"train": len(prep.train)}
    if augmented_dir and Path(augmented_dir, "augmented.tsv").is_file():
        transfer_rows["augmented"] = _rows(Path(augmented_dir, "augmented.tsv"))
    max_len = int(sinfo["max_seq_len"])
    names = model.input_names
    example = model.collate(tokenizer, dev["text_a"].tolist()[:2], dev["text_b"].tolist()[:2] if task.is_pair else None, max_len)
    labels = dev["label"].to_numpy()
    tinfo = read_json(Path(teacher_dir, TEACHER_INFO)) if teacher_dir and Path(teacher_dir, TEACHER_INFO).is_file() else {}
    with atomic_dir(out_dir, "export") as tmp:
        if hasattr(model, "save_weights"):  # transformers students: the folder also loads with from_pretrained
            model.save_weights(tmp)
        torch_logits = predict_logits(model, tokenizer, dev, max_len)
        runtimes = _export_graphs(model, example, names, tmp, cfg)
        onnx_out = predict_logits(model, tokenizer, dev, max_len, run=runtimes["onnx"])
        agreement = task.agreement(torch_logits, onnx_out)  # same class; regression: Pearson r of the scores
        result = {
            "student": sinfo["name"],
            "onnx_agreement": agreement,
            "onnx_max_abs_diff": float(np.abs(torch_logits - onnx_out).max()),
            **{f"dev_{m}": v for m, v in task.score(labels, torch_logits).items()},
            **{f"onnx_dev_{m}": v for m, v in task.score(labels, onnx_out).items()},
        }
        if agreement < cfg.min_agreement:
            what = "correlate at r =" if task.regression else "agree on"
            raise DistilleryError(
                f"export {sinfo['name']}: ONNX and PyTorch {what} {agreement:.4%} of dev, below "
                f"param export.min_agreement={cfg.min_agreement}; the export is not faithful (nothing written)"
            )
        if "int8" in runtimes:
            q_out = predict_logits(model, tokenizer, dev, max_len, run=runtimes["int8"])
            result["int8_agreement"] = task.agreement(torch_logits, q_out)
            result |= {f"int8_dev_{m}": v for m, v in task.score(labels, q_out).items()}
            result["int8_mb"] = onnx_mb(tmp, "int8")
        result["onnx_mb"] = onnx_mb(tmp, "onnx")
        result["params"] = sum(p.numel() for p in model.parameters())
        result["n_dev"] = len(dev)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "student.json", {**sinfo, DIGESTS: weight_digests(tmp)})  # the weights saved here, if any
        write_json(tmp / "export.json", result)
        result["inputs"] = names
        (tmp / "README.md").write_text(model_card(sinfo, prep, result, tinfo, cfg.license, transfer_rows), encoding="utf-8")
    return result
