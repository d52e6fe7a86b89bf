"""The `evaluate` stage: the teacher and every student on dev -- metric, size, CPU latency, retention."""

import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from distillery.config import EvaluateConfig
from distillery.data.prepare import load_prepared
from distillery.evaluate.predict import predict_logits
from distillery.io import atomic_file, read_json, write_json
from distillery.metrics import task_metric
from distillery.students import load_student
from distillery.teacher.train import load_teacher


class TeacherAdapter(torch.nn.Module):
    """Gives a transformers classifier the student interface (collate + forward -> logits)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model, self.config = model, model.config

    def collate(self, tokenizer, texts_a, texts_b, max_seq_len):
        return dict(tokenizer(texts_a, texts_b, truncation=True, max_length=max_seq_len, padding=True,
                              return_tensors="pt"))

    def forward(self, **batch):
        return self.model(**batch).logits


@torch.inference_mode()
def latencies_ms(models: list, dev: pd.DataFrame, batch_size: int, cfg: EvaluateConfig, pair: bool) -> list[float]:
    """Median wall time (ms) of one forward pass for each (model, tokenizer, max_seq_len), over `repeats`
    batches of real dev texts after `warmup`. The models take turns on each batch (interleaved), so a
    burst of load on the machine slows them all alike instead of one model's whole measurement."""
    rng = np.random.default_rng(0)
    times: list[list[float]] = [[] for _ in models]
    for model, _, _ in models:
        model.eval()
    for r in range(cfg.warmup + cfg.repeats):
        idx = rng.choice(len(dev), size=min(batch_size, len(dev)), replace=False)
        sub = dev.iloc[idx]
        for k, (model, tokenizer, max_seq_len) in enumerate(models):
            batch = model.collate(tokenizer, sub["text_a"].tolist(), sub["text_b"].tolist() if pair else None,
                                  max_seq_len)
            t0 = time.perf_counter()
            model(**batch)
            if r >= cfg.warmup:
                times[k].append((time.perf_counter() - t0) * 1000)
    return [statistics.median(t) for t in times]


def _disk_mb(folder: Path) -> float:
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".pt", ".bin")]
    return sum(p.stat().st_size for p in weights) / 2**20


def evaluate(cfg: EvaluateConfig, prepared_dir: str | Path, teacher_dir: str | Path, students_dir: str | Path,
             out_dir: str | Path, exports_dir: str | Path | None = None, names: list[str] | None = None) -> dict:
    """The teacher and the students `names` (folders under `students_dir`; None: every student folder there)."""
    torch.set_num_threads(cfg.threads)
    task, info, _, dev = load_prepared(prepared_dir)
    labels = dev["label"].to_numpy()
    teacher, tok, tinfo = load_teacher(teacher_dir, n_labels=len(info["label_names"]))
    seq = int(tinfo.get("max_seq_len", 128))
    entries = [("teacher", TeacherAdapter(teacher), tok, seq, Path(teacher_dir))]
    if names is None:
        names = sorted(p.name for p in Path(students_dir).glob("*")
                       if not p.name.startswith(".") and (p / "student.json").is_file())
    for name in names:
        d = Path(students_dir) / name
        model, stok, sinfo = load_student(d)
        entries.append((d.name, model, stok, int(sinfo["max_seq_len"]), d))
    rows = []
    for name, model, tk, max_len, folder in entries:
        logits = predict_logits(model, tk, dev, max_len)
        row = {
            "model": name,
            task.metric: task_metric(task.metric, labels, logits.argmax(-1)),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "disk_mb": _disk_mb(folder),
        }
        exported = Path(exports_dir, name, "export.json") if exports_dir else None
        if exported is not None and exported.is_file():
            e = read_json(exported)
            row["onnx_agreement"] = e["onnx_agreement"]
            row[f"int8_{task.metric}"] = e.get(f"int8_dev_{task.metric}", float("nan"))
        rows.append(row)
        print(f"evaluated {name}: {task.metric} {row[task.metric]:.4f}")
    for bs in cfg.batch_sizes:
        print(f"timing {len(entries)} models at batch {bs}, interleaved ({cfg.repeats} repeats)")
        for row, ms in zip(rows, latencies_ms([(m, tk, ml) for _, m, tk, ml, _ in entries], dev, bs, cfg, info["pair"])):
            row[f"latency_bs{bs}_ms"] = ms
    t = rows[0]
    for row in rows:
        row["retention"] = row[task.metric] / t[task.metric] if t[task.metric] else float("nan")
        for bs in cfg.batch_sizes:
            row[f"speedup_bs{bs}"] = t[f"latency_bs{bs}_ms"] / row[f"latency_bs{bs}_ms"]
    table = pd.DataFrame(rows)
    table["dev_metric"] = table[task.metric]  # a task-independent column for `dvc plots`
    out = Path(out_dir)
    summary = {
        "task": task.name,
        "metric": task.metric,
        "threads": cfg.threads,
        **{r["model"]: {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()
                         if k != "model" and not (isinstance(v, float) and np.isnan(v))}
           for r in rows},
    }
    write_json(out / "summary.json", summary)
    with atomic_file(out / "tradeoff.csv") as fh:
        table.to_csv(fh, index=False, float_format="%.4f")
    md = render_table(table, task.metric, cfg)
    with atomic_file(out / "table.md") as fh:
        fh.write(md)
    _plot(table, task.metric, out / "tradeoff.png")
    return {"summary": summary, "markdown": md}


def render_table(table: pd.DataFrame, metric: str, cfg: EvaluateConfig) -> str:
    cols = ["model", metric, "retention", "params_m", "disk_mb"]
    for bs in cfg.batch_sizes:
        cols += [f"latency_bs{bs}_ms", f"speedup_bs{bs}"]
    head = ["model", f"dev {metric}", "retention", "params (M)", "disk (MB)"]
    for bs in cfg.batch_sizes:
        head += [f"ms @bs{bs}", f"speed-up @bs{bs}"]
    has_onnx = "onnx_agreement" in table.columns
    if has_onnx:
        head += ["ONNX agreement", f"int8 ONNX {metric}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [r["model"], f"{r[metric]:.4f}", f"{r['retention']:.1%}", f"{r['params_m']:.2f}", f"{r['disk_mb']:.1f}"]
        for bs in cfg.batch_sizes:
            cells += [f"{r[f'latency_bs{bs}_ms']:.2f}", f"{r[f'speedup_bs{bs}']:.1f}x"]
        if has_onnx:
            ok = pd.notna(r["onnx_agreement"])
            cells += [f"{r['onnx_agreement']:.2%}" if ok else "-", f"{r[f'int8_{metric}']:.4f}" if ok else "-"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + f"\n\nCPU latency: median of {cfg.repeats} forward passes on dev texts (models take turns on each batch), {cfg.threads} threads.\n"


def _plot(table: pd.DataFrame, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    col = [c for c in table.columns if c.startswith("latency")][0]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(table[col], table[metric])
    for r in table.itertuples(index=False):
        ax.annotate(r.model, (getattr(r, col), getattr(r, metric)), textcoords="offset points", xytext=(4, 4))
    ax.set_xscale("log")
    ax.set_xlabel(f"{col.replace('_', ' ')} (log)")
    ax.set_ylabel(f"dev {metric}")
    ax.set_title("What each student keeps, and how fast it is")
    fig.tight_layout()
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
