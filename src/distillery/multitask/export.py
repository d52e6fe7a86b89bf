"""One deployable artifact for a multi-task student: a single ONNX graph (the shared encoder runs once)
with an output `logits_<task>` per head, its tokenizer, and `tasks.json` (which output answers which
task, its labels and whether it reads a pair). Refused where onnxruntime's predictions agree with
PyTorch's on less than `min_agreement` of any task's dev set."""

from pathlib import Path

import numpy as np

from distillery.data.prepare import load_prepared
from distillery.errors import DistilleryError
from distillery.evaluate.predict import predict
from distillery.export.runtime import session
from distillery.io import atomic_dir, write_json
from distillery.students import load_student

ONNX = "model.onnx"
TASKS = "tasks.json"


def onnx_runner(sess, model, task: str):
    """batch -> `task`'s logits from the session (the graph answers every head; we read one)."""
    names = [i.name for i in sess.get_inputs()]
    out = f"logits_{task}"

    def run(batch: dict):
        return sess.run([out], {n: batch[n].numpy() for n in names})[0]
    return run


def export_multitask(student_dir: str | Path, prepared_root: str | Path, out_dir: str | Path, opset: int,
                     min_agreement: float) -> dict:
    model, tokenizer, info = load_student(student_dir)
    if model.family != "mtdnn":
        raise DistilleryError(f"{Path(student_dir) / 'student.json'}: a {model.family} student, not a multi-task one; "
                              "use `distillery export`")
    max_len = int(info["max_seq_len"])
    preps = {t: load_prepared(Path(prepared_root) / t) for t in model.tasks}
    with atomic_dir(out_dir, "export") as tmp:
        pair_task = next((t for t in model.tasks if preps[t].task.is_pair), model.tasks[0])
        ex = preps[pair_task].dev.iloc[:2]
        example = model.collate(tokenizer, ex["text_a"].tolist(),
                                ex["text_b"].tolist() if preps[pair_task].task.is_pair else None, max_len)
        model.export_onnx(tmp / ONNX, example, opset)
        sess = session(tmp / ONNX)
        report = {}
        for t, prep in preps.items():
            collate = (lambda a, b: model.collate(tokenizer, a, b, max_len))
            ref = predict(collate, model.predictor(t), prep.dev, prep.num_labels, prep.task.is_pair)
            got = predict(collate, onnx_runner(sess, model, t), prep.dev, prep.num_labels, prep.task.is_pair)
            agree = float((ref.argmax(-1) == got.argmax(-1)).mean())
            report[t] = {"agreement": agree, "max_abs_diff": float(np.abs(ref - got).max())}
            if agree < min_agreement:
                raise DistilleryError(f"ONNX export of {info['name']}: task {t} agrees with PyTorch on {agree:.4f} of "
                                      f"dev, below export.min_agreement {min_agreement}; nothing written")
        tokenizer.save_pretrained(tmp)
        write_json(tmp / TASKS, {"student": info["name"], "max_seq_len": max_len, "inputs": model.input_names,
                                 "tasks": {t: {"output": f"logits_{t}", **info["tasks"][t]} for t in model.tasks}})
        write_json(tmp / "export.json", {"opset": max(opset, 18), "tasks": report,
                                         "onnx_mb": round((tmp / ONNX).stat().st_size / 2**20, 2)})
    return report
