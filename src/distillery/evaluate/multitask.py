"""The MT-DNN KD study's table: a row per model, a column per task in that task's metric (accuracy;
F1 for MRPC; Matthews correlation for CoLA), their average, the models and parameters it takes to
answer every task, and batch-1 latency (PyTorch, and ONNX Runtime for exports): per task the median ms per dev
text, every model taking turns on each text (the one statistic of every table, `evaluate/latency.py`), then
the mean over tasks.

Rows: a single teacher (each task's first member), the member mean, the ensemble (all members,
probabilities averaged), the single-task students (one per task), each multi-task student and its
ONNX export. A second table says, per task, how much of the ensemble's gain over a single teacher
the multi-task student's distillation gain recovers.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from distillery.config import MtEvaluateConfig
from distillery.data.prepare import load_prepared
from distillery.errors import DistilleryError
from distillery.evaluate.latency import interleaved_median_ms
from distillery.evaluate.tables import md, pyplot, save_figure, write_tables
from distillery.io import read_json
from distillery.multitask.export import ONNX, onnx_runner
from distillery.students import load_student
from distillery.teacher.train import load_teacher

METRIC_NAME = {"accuracy": "acc", "f1": "F1", "mcc": "MCC"}


def _texts(prep, n: int) -> list[tuple[str, str | None]]:
    dev = prep.dev.iloc[:n]
    return [(a, b if prep.task.is_pair else None) for a, b in zip(dev["text_a"], dev["text_b"])]


class _Timer:
    """Batch-1 latency of every model of the table, per task, by the one statistic (`evaluate/latency.py`):
    the models of a task take turns on each of its first `n` dev texts, and each gets the median ms."""

    def __init__(self, preps: dict, n: int, warmup: int) -> None:
        self.preps, self.n, self.warmup = preps, n, warmup
        self.calls: dict[str, list] = {t: [] for t in preps}  # task -> [(key, call, inputs)]
        self.ms: dict[tuple[str, str], float] = {}  # (key, task) -> median ms

    def add(self, key: str, task: str, call, collate) -> None:
        """`collate(text_a, text_b) -> input` is run untimed; `call(input)` is timed."""
        self.calls[task].append((key, call, [collate(a, b) for a, b in _texts(self.preps[task], self.n)]))

    def run(self) -> None:
        for t, entries in self.calls.items():
            if not entries:
                continue
            with torch.inference_mode():
                ms = interleaved_median_ms([c for _, c, _ in entries], lambda r, k: entries[k][2][r % len(entries[k][2])],
                                           self.n, self.warmup, desc=f"timing {t} at batch 1")
            self.ms |= {(key, t): v for (key, _, _), v in zip(entries, ms)}

    def per_text(self, keys: list[str]) -> float | None:
        """ms per text to run all of `keys` (an ensemble's members), averaged over the tasks that have them."""
        per_task = [sum(self.ms[(k, t)] for k in keys if (k, t) in self.ms) for t in self.preps
                    if any((k, t) in self.ms for k in keys)]
        return float(np.mean(per_task)) if per_task else None


def _teacher_call(teacher_dir: Path, prep, timer: _Timer, key: str, task: str) -> int:
    """Times one teacher of `task`; returns its parameter count."""
    model, tok, info = load_teacher(teacher_dir, n_labels=prep.num_labels)
    max_len = int(info.get("max_seq_len", 128))
    timer.add(key, task, lambda b: model(**b).logits,
              lambda a, b: dict(tok([a], [b] if b is not None else None, truncation=True, max_length=max_len,
                                    return_tensors="pt")))
    return sum(p.numel() for p in model.parameters())


def _student_call(model, tok, task: str, max_len: int, timer: _Timer, key: str, run=None) -> None:
    timer.add(key, task, run or model.predictor(task), lambda a, b: model.collate(tok, [a], [b] if b is not None
                                                                                  else None, max_len))


class _Table:
    """The rows of the study's table, one per model: a score per task, models, parameters, ms per text."""

    def __init__(self, tasks: list[str]) -> None:
        self.tasks, self.rows = tasks, []

    def add(self, name: str, scores: dict, models: int, params: int | None, timing: list[str],
            runtime: str = "pytorch") -> None:
        self.rows.append({"model": name, "runtime": runtime, **{t: scores.get(t) for t in self.tasks},
                          "models": models, "params_m": None if params is None else round(params / 1e6, 1),
                          "timing": timing})

    def frame(self, timer: _Timer) -> pd.DataFrame:
        for row in self.rows:
            row["ms_bs1"] = timer.per_text(row.pop("timing"))
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


def _teacher_rows(table: _Table, preps: dict, ens: dict, metric: dict, teachers_dir: str | Path,
                  timer: _Timer) -> None:
    """Each task's first member, the member mean and the ensemble (tasks without a teacher left out)."""
    with_teacher = [t for t in preps if ens[t]["members"]]
    if not with_teacher:
        return
    member_dirs = {t: [Path(teachers_dir) / m["member"] for m in ens[t]["members"]] for t in with_teacher}
    t_params = {}
    for t in with_teacher:
        for i, d in enumerate(member_dirs[t]):
            t_params[t] = _teacher_call(d, preps[t], timer, f"member{i}", t)
    k = max(len(ens[t]["members"]) for t in with_teacher)
    one_params = sum(t_params.values())
    table.add("teacher (first member)", {t: ens[t]["members"][0][f"dev_{metric[t]}"] for t in with_teacher},
              len(with_teacher), one_params, ["member0"])
    table.add("teacher (mean of members)", {t: ens[t][f"mean_member_dev_{metric[t]}"] for t in with_teacher},
              len(with_teacher), one_params, ["member0"])
    table.add(f"ensemble (K={k})", {t: ens[t][f"ensemble_dev_{metric[t]}"] for t in with_teacher},
              sum(len(v) for v in member_dirs.values()), sum(t_params[t] * len(member_dirs[t]) for t in with_teacher),
              [f"member{i}" for i in range(k)])


def _score(model, tok, prep, metric: str, task: str, max_len: int, run=None) -> float:
    from distillery.evaluate.predict import predict
    from distillery.metrics import task_metric

    logits = predict(lambda a, b: model.collate(tok, a, b, max_len), run or model.predictor(task), prep.dev,
                     prep.num_labels, prep.task.is_pair)
    return task_metric(metric, prep.dev["label"].to_numpy(), logits.argmax(-1))


def _single_rows(table: _Table, preps: dict, metric: dict, single_dir: str | Path, timer: _Timer) -> None:
    """One row for the single-task students together (one per task, each through its own head)."""
    scores, params = {}, 0
    for t, prep in preps.items():
        d = Path(single_dir) / t
        if not (d / "student.json").is_file():
            continue
        model, tok, info = load_student(d)
        scores[t] = _score(model, tok, prep, metric[t], t, info["max_seq_len"])
        _student_call(model, tok, t, info["max_seq_len"], timer, "single")
        params += sum(p.numel() for p in model.parameters())
    if scores:
        table.add("single-task students (KD)", scores, len(scores), params, ["single"])


def _multitask_rows(table: _Table, name: str, preps: dict, metric: dict, students_dir: str | Path,
                    exports_dir: str | Path, timer: _Timer, threads: int) -> None:
    """A multi-task student in PyTorch, and its ONNX export when there is one."""
    from distillery.export.runtime import session

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
        for t in preps:
            _student_call(model, tok, t, max_len, timer, f"{name}/{runtime}", runner(t))
        table.add(name, scores, 1, params, [f"{name}/{runtime}"], runtime=runtime)


def mt_evaluate(cfg: MtEvaluateConfig, tasks: list[str], mt_students: list[str], prepared_root: str | Path,
                ensemble_metrics: str | Path, teachers_dir: str | Path, students_dir: str | Path,
                single_dir: str | Path, exports_dir: str | Path, out: str | Path) -> dict:
    torch.set_num_threads(cfg.threads)
    preps = {t: load_prepared(Path(prepared_root) / t) for t in tasks}
    ens = _ensemble_metrics(tasks, ensemble_metrics)
    metric = {t: preps[t].task.metric for t in tasks}
    timer = _Timer(preps, cfg.latency_texts, cfg.warmup)
    table = _Table(tasks)
    _teacher_rows(table, preps, ens, metric, teachers_dir, timer)
    _single_rows(table, preps, metric, single_dir, timer)
    for name in tqdm(mt_students, desc="multi-task students", unit="model"):
        _multitask_rows(table, name, preps, metric, students_dir, exports_dir, timer, cfg.threads)
    timer.run()
    return write_report(table.frame(timer), tasks, metric, ens, out)


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
    lines = md(head, [[r["model"], r["runtime"], *(_fmt(r[t]) for t in tasks), _fmt(r["average"]), int(r["models"]),
                       "–" if pd.isna(r["params_m"]) else f"{r['params_m']:.1f}",
                       "–" if pd.isna(r["ms_bs1"]) else f"{r['ms_bs1']:.2f}"] for _, r in table.iterrows()])
    if g is not None:
        def kept(v):
            return "– (no ensemble gain)" if v is None or pd.isna(v) else f"all ({v * 100:.0f}%)" if v >= 1 else f"{v * 100:.0f}%"

        def signed(v):
            return "–" if pd.isna(v) else f"{v * 100:+.2f}"

        lines += [""] + md(["task", "ensemble gain over a single teacher (member mean)", "mtdnn_kd gain over mtdnn_gold",
                            "share kept"], [[r["task"], signed(r["ensemble_gain"]), signed(r["kd_gain"]), kept(r["kept"])]
                                            for _, r in g.iterrows()])
    return "\n".join(lines) + "\n"


def write_report(table: pd.DataFrame, tasks: list[str], metric: dict, ens: dict, out: str | Path) -> dict:
    g = gains(table, tasks)
    text = render(table, tasks, metric, g)
    summary = {"rows": table.where(table.notna(), None).to_dict(orient="records"),
               "gains": None if g is None else g.where(g.notna(), None).to_dict(orient="records")}
    write_tables(Path(out), text, table, summary)
    plot(table, tasks, Path(out) / "tasks.png")
    print(text)
    return summary


def plot(table: pd.DataFrame, tasks: list[str], path: Path) -> None:
    """Grouped bars: each model's score per task and on average (PyTorch rows)."""
    pt = table[table["runtime"] == "pytorch"]
    cols = tasks + ["average"]
    fig, ax = pyplot().subplots(figsize=(9, 4))
    width = 0.8 / max(len(pt), 1)
    for i, (_, r) in enumerate(pt.iterrows()):
        ax.bar(np.arange(len(cols)) + i * width, [100 * (r[c] if pd.notna(r[c]) else 0) for c in cols], width,
               label=r["model"])
    ax.set_xticks(np.arange(len(cols)) + 0.4 - width / 2, cols)
    ax.set_ylabel("dev score (acc / F1 / MCC) x 100")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
