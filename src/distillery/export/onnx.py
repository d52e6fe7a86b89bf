"""The `export` stage: one student -> ONNX (dynamic batch and sequence axes), int8 ONNX, tokenizer, card.

The stage fails if onnxruntime's predictions agree with PyTorch's on less than `min_agreement`
of the dev set.
"""

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from distillery.config import ExportConfig
from distillery.data.prepare import load_prepared
from distillery.errors import DistilleryError
from distillery.evaluate.predict import predict_logits
from distillery.io import atomic_dir, write_json
from distillery.metrics import task_metric
from distillery.students import load_student


def _dynamic_axes(names: list[str]) -> dict:
    """Batch axis everywhere; each token input gets its own sequence axis (a pair's sides differ)."""
    return {n: ({0: "batch", 1: "seq" + n.removeprefix("input_ids")} if n.startswith("input_ids") else {0: "batch"})
            for n in names} | {"logits": {0: "batch"}}


def onnx_logits(session, model, tokenizer, frame: pd.DataFrame, max_seq_len: int) -> np.ndarray:
    return predict_logits(model, tokenizer, frame, max_seq_len,
                          run=lambda batch: session.run(["logits"], {k: v.numpy() for k, v in batch.items()})[0])


def export_student(cfg: ExportConfig, student_dir: str | Path, prepared_dir: str | Path, out_dir: str | Path) -> dict:
    import onnxruntime as ort

    task, info, _, dev = load_prepared(prepared_dir)
    model, tokenizer, sinfo = load_student(student_dir)
    if hasattr(model, "for_export"):
        model = model.for_export()
    max_len = int(sinfo["max_seq_len"])
    names = model.input_names
    example = model.collate(tokenizer, dev["text_a"].tolist()[:2], dev["text_b"].tolist()[:2] if info["pair"] else None, max_len)
    labels = dev["label"].to_numpy()
    with atomic_dir(out_dir) as tmp:
        onnx_path = tmp / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if hasattr(model, "export_onnx"):
                model.export_onnx(onnx_path, example, cfg.opset)
            else:
                torch.onnx.export(model, (), str(onnx_path), kwargs={n: example[n] for n in names}, input_names=names,
                                  output_names=["logits"], dynamic_axes=_dynamic_axes(names),
                                  opset_version=cfg.opset, dynamo=False)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        torch_logits = predict_logits(model, tokenizer, dev, max_len)
        onnx_out = onnx_logits(sess, model, tokenizer, dev, max_len)
        agreement = float((torch_logits.argmax(-1) == onnx_out.argmax(-1)).mean())
        result = {
            "student": sinfo["name"],
            "onnx_agreement": agreement,
            "onnx_max_abs_diff": float(np.abs(torch_logits - onnx_out).max()),
            f"onnx_dev_{task.metric}": task_metric(task.metric, labels, onnx_out.argmax(-1)),
        }
        if agreement < cfg.min_agreement:
            raise DistilleryError(
                f"export {sinfo['name']}: ONNX and PyTorch agree on {agreement:.4%} of dev, below "
                f"param export.min_agreement={cfg.min_agreement}; the export is not faithful (nothing written)"
            )
        if cfg.quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            q_path = tmp / "model.int8.onnx"
            root = logging.getLogger()
            level, root.level = root.level, logging.ERROR  # quantize_dynamic's advice to pre-process is noise here
            try:
                quantize_dynamic(str(onnx_path), str(q_path), weight_type=QuantType.QInt8)
            finally:
                root.setLevel(level)
            q_sess = ort.InferenceSession(str(q_path), opts, providers=["CPUExecutionProvider"])
            q_out = onnx_logits(q_sess, model, tokenizer, dev, max_len)
            result["int8_agreement"] = float((torch_logits.argmax(-1) == q_out.argmax(-1)).mean())
            result[f"int8_dev_{task.metric}"] = task_metric(task.metric, labels, q_out.argmax(-1))
            result["int8_mb"] = q_path.stat().st_size / 2**20
        result["onnx_mb"] = onnx_path.stat().st_size / 2**20
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "student.json", sinfo)
        write_json(tmp / "export.json", result)
        result["inputs"] = names
        (tmp / "README.md").write_text(model_card(sinfo, info, result), encoding="utf-8")
    return result


def model_card(sinfo: dict, info: dict, export: dict) -> str:
    metric = info["metric"]
    tr = sinfo.get("training", {})
    lines = [
        f"# {sinfo['name']}: a distilled {sinfo['family']} student for {info['task']}",
        "",
        f"Made by distillery from a fine-tuned teacher (fingerprint `{sinfo.get('teacher_fingerprint')}`).",
        "",
        "## How it was trained",
        "",
        f"- family `{sinfo['family']}`, config: `{json.dumps(sinfo['config'])}`",
        f"- losses (weights): `{json.dumps(tr.get('losses', {}))}`, temperature {tr.get('temperature')}",
        f"- transfer set: `{tr.get('transfer_set')}`, {tr.get('epochs')} epochs, batch {tr.get('batch_size')}, lr {tr.get('lr')}",
        "",
        "## Results on dev",
        "",
        f"| | {metric} |",
        "|---|---|",
        f"| PyTorch | {sinfo['history'][-1][f'dev_{metric}']:.4f} |",
        f"| ONNX | {export[f'onnx_dev_{metric}']:.4f} (agreement with PyTorch {export['onnx_agreement']:.2%}) |",
    ]
    if f"int8_dev_{metric}" in export:
        lines.append(f"| ONNX int8 | {export[f'int8_dev_{metric}']:.4f} (agreement {export['int8_agreement']:.2%}) |")
    teacher_metric = sinfo.get("teacher_dev_metric")
    if teacher_metric:
        kept = sinfo["history"][-1][f"dev_{metric}"] / teacher_metric
        lines += ["", f"Teacher dev {metric}: {teacher_metric:.4f}; this student keeps {kept:.1%} of it."]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import numpy as np, onnxruntime as ort",
        "from transformers import AutoTokenizer",
        "tok = AutoTokenizer.from_pretrained('.')",
        *(_use_lengths() if "lengths" in export["inputs"] else _use_hf(export["inputs"])),
        "```",
        "",
        f"Inputs: {', '.join('`' + n + '`' for n in export['inputs'])} (int64)"
        + ("; token ids without special tokens, padded with the pad id, and each row's length"
           if "lengths" in export["inputs"] else ", as the tokenizer returns them")
        + ". Output: `logits`, one row per input.",
        f"Labels: {', '.join(info['label_names'])}.",
        "",
    ]
    return "\n".join(lines)


def _use_lengths() -> list[str]:
    return [
        "ids = tok('a gorgeous , witty film', add_special_tokens=False)['input_ids']",
        "sess = ort.InferenceSession('model.onnx')",
        "feeds = {'input_ids': np.array([ids], dtype=np.int64), 'lengths': np.array([len(ids)], dtype=np.int64)}",
        "logits = sess.run(['logits'], feeds)[0]",
    ]


def _use_hf(names: list[str]) -> list[str]:
    return [
        "enc = tok(['a gorgeous , witty film'], return_tensors='np')",
        "sess = ort.InferenceSession('model.onnx')",
        f"logits = sess.run(['logits'], {{k: enc[k].astype(np.int64) for k in {names!r}}})[0]",
        "# or, in PyTorch: AutoModelForSequenceClassification.from_pretrained(<the student folder>)",
    ]
