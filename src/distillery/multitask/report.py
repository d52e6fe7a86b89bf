"""The MT-DNN KD study's table: a row per model, a column per task in that task's metric (accuracy;
F1 for MRPC; Matthews correlation for CoLA), their average, the models and parameters it takes to
answer every task, and batch-1 latency (PyTorch, and ONNX Runtime for exports), mean per dev text.

Rows: a single teacher (each task's first member), the member mean, the ensemble (all members,
probabilities averaged), the single-task students (one per task), each multi-task student and its
ONNX export. A second table says, per task, how much of the ensemble's gain over a single teacher
the multi-task student's distillation gain recovers.
"""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from distillery.config import MtEvaluateConfig
from distillery.data.prepare import load_prepared
from distillery.errors import DistilleryError
from distillery.io import atomic_file, read_json, write_json
from distillery.multitask.export import ONNX, onnx_runner
from distillery.students import load_student
from distillery.teacher.train import load_teacher

METRIC_NAME = {"accuracy": "acc", "f1": "F1", "mcc": "MCC"}


def _time(run, batches: list[dict], warmup: int) -> float:
    """Mean ms per call over `batches` (one text each), after `warmup` calls."""
    for b in batches[:warmup]:
        run(b)
    t0 = time.perf_counter()
    for b in batches:
        run(b)
    return (time.perf_counter() - t0) / len(batches) * 1000


def _texts(prep, n: int) -> list[tuple[str, str | None]]:
    dev = prep.dev.iloc[:n]
    return [(a, b if prep.task.is_pair else None) for a, b in zip(dev["text_a"], dev["text_b"])]


def teacher_latency(teacher_dirs: list[Path], prep, n: int, warmup: int) -> float:
    """ms per text to run all of `teacher_dirs` on one text (one member, or an ensemble)."""
    total = 0.0
    for d in teacher_dirs:
        model, tok, info = load_teacher(d, n_labels=prep.num_labels)
        max_len = int(info.get("max_seq_len", 128))
        batches = [dict(tok([a], [b] if b is not None else None, truncation=True, max_length=max_len,
                            return_tensors="pt")) for a, b in _texts(prep, n)]
        with torch.inference_mode():
            total += _time(lambda b: model(**b).logits, batches, warmup)
    return total


def student_latency(model, tok, task: str, prep, max_len: int, n: int, warmup: int, run=None) -> float:
    batches = [model.collate(tok, [a], [b] if b is not None else None, max_len) for a, b in _texts(prep, n)]
    run = run or model.predictor(task)
    return _time(run, batches, warmup)


class _Table:
    """The rows of the study's table, one per model: a score per task, models, parameters, ms per text."""

    def __init__(self, tasks: list[str]) -> None:
        self.tasks, self.rows = tasks, []

    def add(self, name: str, scores: dict, models: int, params: int | None, ms: float | None,
            runtime: str = "pytorch") -> None:
        self.rows.append({"model": name, "runtime": runtime, **{t: scores.get(t) for t in self.tasks},
                          "models": models, "params_m": None if params is None else round(params / 1e6, 1),
                          "ms_bs1": ms})

    def frame(self) -> pd.DataFrame:
        table = pd.DataFrame(self.rows)
        table["average"] = table[self.tasks].mean(axis=1, skipna=False)
        return table


def _ensemble_metrics(tasks: list[str], ensemble_metrics: str | Path) -> dict[str, dict]:
    ens = {}
    for t in tasks:
        p = Path(ensemble_metrics) / f"{t}.json"
        if not p.is_file():
            raise DistilleryError(f"{p}: missing; run the ensemble stage of task {t} (dvc repro) first")
        ens[t] = read_json(p)
    return ens


def _teacher_rows(table: _Table, preps: dict, ens: dict, metric: dict, teachers_dir: str | Path, n: int,
                  w: int) -> None:
    """Each task's first member, the member mean and the ensemble (tasks without a teacher left out)."""
    with_teacher = [t for t in preps if ens[t]["members"]]
    if not with_teacher:
        return
    member_dirs = {t: [Path(teachers_dir) / m["member"] for m in ens[t]["members"]] for t in with_teacher}
    t_params = {}
    for t in with_teacher:
        model, _, _ = load_teacher(member_dirs[t][0], n_labels=preps[t].num_labels)
        t_params[t] = sum(p.numel() for p in model.parameters())
    bar = tqdm(with_teacher, desc="timing teachers", unit="task")
    one_ms = {t: teacher_latency(member_dirs[t][:1], preps[t], n, w) for t in bar}
    all_ms = {t: one_ms[t] + teacher_latency(member_dirs[t][1:], preps[t], n, w) for t in with_teacher}
    k = max(len(ens[t]["members"]) for t in with_teacher)
    one_params = sum(t_params.values())
    table.add("teacher (first member)", {t: ens[t]["members"][0][f"dev_{metric[t]}"] for t in with_teacher},
              len(with_teacher), one_params, float(np.mean(list(one_ms.values()))))
    table.add("teacher (mean of members)", {t: ens[t][f"mean_member_dev_{metric[t]}"] for t in with_teacher},
              len(with_teacher), one_params, float(np.mean(list(one_ms.values()))))
    table.add(f"ensemble (K={k})", {t: ens[t][f"ensemble_dev_{metric[t]}"] for t in with_teacher},
              sum(len(v) for v in member_dirs.values()), sum(t_params[t] * len(member_dirs[t]) for t in with_teacher),
              float(np.mean(list(all_ms.values()))))


def _score(model, tok, prep, metric: str, task: str, max_len: int, run=None) -> float:
    from distillery.evaluate.predict import predict
    from distillery.metrics import task_metric

    logits = predict(lambda a, b: model.collate(tok, a, b, max_len), run or model.predictor(task), prep.dev,
                     prep.num_labels, prep.task.is_pair)
    return task_metric(metric, prep.dev["label"].to_numpy(), logits.argmax(-1))


def _single_rows(table: _Table, preps: dict, metric: dict, single_dir: str | Path, n: int, w: int) -> None:
    """One row for the single-task students together (one per task, each through its own head)."""
    scores, ms, params = {}, [], 0
    for t, prep in preps.items():
        d = Path(single_dir) / t
        if not (d / "student.json").is_file():
            continue
        model, tok, info = load_student(d)
        scores[t] = _score(model, tok, prep, metric[t], t, info["max_seq_len"])
        ms.append(student_latency(model, tok, t, prep, info["max_seq_len"], n, w))
        params += sum(p.numel() for p in model.parameters())
    if scores:
        table.add("single-task students (KD)", scores, len(scores), params, float(np.mean(ms)))


def _multitask_rows(table: _Table, name: str, preps: dict, metric: dict, students_dir: str | Path,
                    exports_dir: str | Path, n: int, w: int, threads: int) -> None:
    """A multi-task student in PyTorch, and its ONNX export when there is one."""
    from distillery.export.onnx import session

    model, tok, info = load_student(Path(students_dir) / name)
    missing = [t for t in preps if t not in model.tasks]
    if missing:
        raise DistilleryError(f"{Path(students_dir) / name}: student {name} has no head for task {missing[0]}; "
                              "re-run it with every task of the study")
    max_len = info["max_seq_len"]
    params = sum(p.numel() for p in model.parameters())
    runners = {"pytorch": lambda t: None}
    onnx = Path(exports_dir) / name / ONNX
    if onnx.is_file():
        sess = session(onnx, threads=threads)
        runners["onnx"] = lambda t: onnx_runner(sess, model, t)
    for runtime, runner in runners.items():
        scores = {t: _score(model, tok, p, metric[t], t, max_len, runner(t)) for t, p in preps.items()}
        ms = [student_latency(model, tok, t, p, max_len, n, w, runner(t)) for t, p in preps.items()]
        table.add(name, scores, 1, params, float(np.mean(ms)), runtime=runtime)


def mt_evaluate(cfg: MtEvaluateConfig, tasks: list[str], mt_students: list[str], prepared_root: str | Path,
                ensemble_metrics: str | Path, teachers_dir: str | Path, students_dir: str | Path,
                single_dir: str | Path, exports_dir: str | Path, out: str | Path) -> dict:
    torch.set_num_threads(cfg.threads)
    preps = {t: load_prepared(Path(prepared_root) / t) for t in tasks}
    ens = _ensemble_metrics(tasks, ensemble_metrics)
    metric = {t: preps[t].task.metric for t in tasks}
    n, w = cfg.latency_texts, cfg.warmup
    table = _Table(tasks)
    _teacher_rows(table, preps, ens, metric, teachers_dir, n, w)
    _single_rows(table, preps, metric, single_dir, n, w)
    for name in tqdm(mt_students, desc="multi-task students", unit="model"):
        _multitask_rows(table, name, preps, metric, students_dir, exports_dir, n, w, cfg.threads)
    return write_report(table.frame(), tasks, metric, ens, out)


def gains(table: pd.DataFrame, tasks: list[str]) -> pd.DataFrame | None:
    """Per task: the ensemble's gain over the member mean, the multi-task student's gain from distillation
    (mtdnn_kd over mtdnn_gold), and the share of the first that the second recovers."""
    pt = table[table["runtime"] == "pytorch"].set_index("model")
    ens = [m for m in pt.index if m.startswith("ensemble")]
    if not ens or "teacher (mean of members)" not in pt.index or not {"mtdnn_kd", "mtdnn_gold"} <= set(pt.index):
        return None
    rows = []
    for t in tasks + ["average"]:
        e = pt.loc[ens[0], t] - pt.loc["teacher (mean of members)", t]
        s = pt.loc["mtdnn_kd", t] - pt.loc["mtdnn_gold", t]
        rows.append({"task": t, "ensemble_gain": e, "kd_gain": s, "kept": s / e if e > 0 else None})
    return pd.DataFrame(rows)


def _fmt(v, scale=100.0, digits=2) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v * scale:.{digits}f}"


def render(table: pd.DataFrame, tasks: list[str], metric: dict, g: pd.DataFrame | None) -> str:
    head = ["model", "runtime"] + [f"{t} {METRIC_NAME[metric[t]]}" for t in tasks] + ["average", "models", "params (M)",
                                                                                       "bs1 ms/text"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [r["model"], r["runtime"]] + [_fmt(r[t]) for t in tasks] + [
            _fmt(r["average"]), str(int(r["models"])), "–" if pd.isna(r["params_m"]) else f"{r['params_m']:.1f}",
            "–" if pd.isna(r["ms_bs1"]) else f"{r['ms_bs1']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if g is not None:
        lines += ["", "| task | ensemble gain over a single teacher (member mean) | mtdnn_kd gain over mtdnn_gold | "
                  "share kept |", "|---|---|---|---|"]
        for _, r in g.iterrows():
            if r["kept"] is None or pd.isna(r["kept"]):
                kept = "– (no ensemble gain)"
            elif r["kept"] >= 1:
                kept = f"all ({r['kept'] * 100:.0f}%)"
            else:
                kept = f"{r['kept'] * 100:.0f}%"
            signed = lambda v: "–" if pd.isna(v) else f"{v * 100:+.2f}"  # noqa: E731
            lines.append(f"| {r['task']} | {signed(r['ensemble_gain'])} | {signed(r['kd_gain'])} | {kept} |")
    return "\n".join(lines) + "\n"


def write_report(table: pd.DataFrame, tasks: list[str], metric: dict, ens: dict, out: str | Path) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = gains(table, tasks)
    text = render(table, tasks, metric, g)
    with atomic_file(out / "table.md") as f:
        f.write(text)
    with atomic_file(out / "table.csv") as f:
        table.to_csv(f, index=False)
    plot(table, tasks, out / "tasks.png")
    summary = {"rows": table.where(table.notna(), None).to_dict(orient="records"),
               "gains": None if g is None else g.where(g.notna(), None).to_dict(orient="records")}
    write_json(out / "summary.json", summary)
    print(text)
    return summary


def plot(table: pd.DataFrame, tasks: list[str], path: Path) -> None:
    """Grouped bars: each model's score per task and on average (PyTorch rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pt = table[table["runtime"] == "pytorch"]
    cols = tasks + ["average"]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(len(pt), 1)
    for i, (_, r) in enumerate(pt.iterrows()):
        ax.bar(np.arange(len(cols)) + i * width, [100 * (r[c] if pd.notna(r[c]) else 0) for c in cols], width,
               label=r["model"])
    ax.set_xticks(np.arange(len(cols)) + 0.4 - width / 2, cols)
    ax.set_ylabel("dev score (acc / F1 / MCC) x 100")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
