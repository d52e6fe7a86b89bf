"""The `evaluate` stage: the teacher and every student, in every runtime each ships in (PyTorch, ONNX
Runtime fp32, ONNX Runtime int8), on the set it is given -- metric, agreement, size, CPU latency,
retention and speed-up against the teacher.

Every figure is measured here, on the prepared set named by `--prepared` (its `dev.tsv`): nothing is
copied from export time. The teacher is exported to ONNX (and int8) the way the students are, in a
scratch folder, so that each runtime has its own yardstick.
"""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from distillery.config import EvaluateConfig
from distillery.data.prepare import load_prepared
from distillery.evaluate.budget import RUNTIME_LABELS, Budget, describe_pick, pick
from distillery.evaluate.latency import Runner, latencies_ms
from distillery.evaluate.predict import predict
from distillery.evaluate.tables import md, pyplot, save_figure, write_tables
from distillery.io import scratch_dir
from distillery.students import load_student
from distillery.teacher.train import load_teacher

def _mb(*paths: Path) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 2**20


def _weights_mb(folder: Path) -> float:
    return _mb(*(p for p in folder.iterdir() if p.suffix in (".safetensors", ".pt", ".bin")))


def student_runners(name: str, family: str, model, tokenizer, max_len: int, folder: Path, onnx_dir: Path | None,
             cfg: EvaluateConfig) -> list[Runner]:
    """The PyTorch runner, then one per ONNX file of `onnx_dir` that `cfg.runtimes` asks for."""
    from distillery.export.onnx import onnx_predictors
    from distillery.export.runtime import onnx_mb

    def collate(a, b):
        return model.collate(tokenizer, a, b, max_len)

    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    out = [Runner(name, family, "pytorch", collate, model.predictor(), params_m, _weights_mb(folder))]
    if onnx_dir is not None:
        for runtime, run in onnx_predictors(model, onnx_dir, cfg.runtimes, cfg.threads).items():
            out.append(Runner(name, family, runtime, collate, run, params_m, onnx_mb(onnx_dir, runtime)))
    return out


def _teacher_onnx(model, tokenizer, example_texts: tuple[list[str], list[str] | None], max_len: int, folder: Path,
                  cfg: EvaluateConfig) -> Path:
    """Export the teacher as the students are exported (dynamo ONNX, dynamic int8) into `folder`."""
    from distillery.export.onnx import to_onnx
    from distillery.export.runtime import ONNX_FILES, quantize_int8

    twin = copy.deepcopy(model).for_export()  # eager attention for the export only; the PyTorch timing keeps SDPA
    example = twin.collate(tokenizer, *example_texts, max_len)
    to_onnx(twin, example, twin.input_names, folder / ONNX_FILES["onnx"], cfg.opset)
    if "int8" in cfg.runtimes:
        quantize_int8(folder / ONNX_FILES["onnx"], folder / ONNX_FILES["int8"])
    return folder


def teacher_runners(teacher_dir: str | Path, dev: pd.DataFrame, pair: bool, n_labels: int, scratch: Path,
                    cfg: EvaluateConfig) -> list[Runner]:
    """The teacher in every runtime of `cfg.runtimes`: PyTorch, and its ONNX / int8 export written into
    `scratch` the way the students are exported (the yardstick of each runtime)."""
    from distillery.students.transformer import TransformerConfig, TransformerStudent

    hf_teacher, tok, tinfo = load_teacher(teacher_dir, n_labels=n_labels)
    teacher = TransformerStudent(TransformerConfig(num_labels=n_labels, input_names=list(tok.model_input_names)),
                                 hf_teacher).eval()
    seq = int(tinfo.get("max_seq_len", 128))
    onnx_dir = None
    if {"onnx", "int8"} & set(cfg.runtimes):
        print("exporting the teacher to ONNX (and int8) as the students are, to time it in each runtime")
        onnx_dir = _teacher_onnx(teacher, tok, (dev["text_a"].tolist()[:2], dev["text_b"].tolist()[:2] if pair
                                                else None), seq, scratch, cfg)
    return student_runners("teacher", "teacher", teacher, tok, seq, Path(teacher_dir), onnx_dir, cfg)


def evaluate(cfg: EvaluateConfig, prepared_dir: str | Path, teacher_dir: str | Path, students_dir: str | Path,
             out_dir: str | Path, exports_dir: str | Path | None = None, names: list[str] | None = None) -> dict:
    """The teacher and the students `names` (folders under `students_dir`; None: every student folder
    there) on `prepared_dir`'s dev.tsv, in each runtime of `cfg.runtimes` that they are exported to."""
    torch.set_num_threads(cfg.threads)
    prep = load_prepared(prepared_dir)
    task, dev = prep.task, prep.dev
    labels, pair, n_labels = dev["label"].to_numpy(), task.is_pair, prep.num_labels
    if names is None:
        names = sorted(p.name for p in Path(students_dir).glob("*")
                       if not p.name.startswith(".") and (p / "student.json").is_file())
    with scratch_dir(out_dir, "teacher-onnx") as scratch:
        runners = teacher_runners(teacher_dir, dev, pair, n_labels, scratch, cfg)
    with_exits = []
    for name in names:
        model, stok, sinfo = load_student(Path(students_dir) / name)
        exported = Path(exports_dir, name) if exports_dir and Path(exports_dir, name).is_dir() else None
        runners += student_runners(name, sinfo["family"], model, stok, int(sinfo["max_seq_len"]), Path(students_dir) / name,
                            exported, cfg)
        if model.export_format == "exits":
            with_exits.append((name, model, stok, int(sinfo["max_seq_len"])))
    rows = _score(runners, dev, labels, task, n_labels, pair)
    if prep.test is not None:  # reported beside dev; nothing was stopped or chosen on it
        for row, test_row in zip(rows, _score(runners, prep.test, prep.test["label"].to_numpy(), task, n_labels, pair,
                                              "test")):
            row["test_score"] = test_row["score"]
    for bs in cfg.batch_sizes:
        print(f"timing {len(runners)} model/runtime pairs at batch {bs}, interleaved ({cfg.repeats} repeats)")
        for row, ms in zip(rows, latencies_ms(runners, dev, bs, cfg, pair)):
            row[f"latency_bs{bs}_ms"] = ms
    table = _compare(pd.DataFrame(rows), task.metric, cfg)
    where = {"set": f"{Path(prepared_dir) / 'dev.tsv'}", "task": task.name, "rows": len(dev),
             "source": prep.split_file("dev")}
    if prep.test is not None:
        where |= {"test": prep.split_file("test"), "test_rows": len(prep.test)}
    where["regression"] = task.regression
    report = write_report(table, task.metric, cfg, where, Path(out_dir), others=list(task.metrics[1:]))
    from distillery.evaluate.exits import exit_curves

    curves = exit_curves(with_exits, dev, task.metric, pair, cfg, Path(out_dir))
    if curves is not None:
        report["markdown"] += "\n" + (Path(out_dir) / "exits.md").read_text(encoding="utf-8")
    return report


def _score(runners: list[Runner], dev: pd.DataFrame, labels: np.ndarray, task, n_labels: int,
           pair: bool, split: str = "dev") -> list[dict]:
    """Each runner's metrics on the set (`score`: the main one; a column for each other), and how closely it
    agrees with the same model in PyTorch (`TaskSpec.agreement`)."""
    rows, reference = [], {}
    for runner in tqdm(runners, desc=f"scoring ({split})", unit="model", mininterval=2):
        logits = predict(runner.collate, runner.run, dev, n_labels, pair)
        reference.setdefault(runner.model, logits)  # the PyTorch runner comes first
        scores = task.score(labels, logits)
        rows.append({"model": runner.model, "family": runner.family, "runtime": runner.runtime,
                     "score": scores[task.metric], **{m: v for m, v in scores.items() if m != task.metric},
                     "agreement": task.agreement(reference[runner.model], logits),
                     "params_m": runner.params_m, "disk_mb": runner.disk_mb})
        tqdm.write(f"evaluated {runner.model} ({RUNTIME_LABELS[runner.runtime]}) on {split}: "
                   + ", ".join(f"{m} {v:.4f}" for m, v in scores.items()))
    return rows


def _compare(table: pd.DataFrame, metric: str, cfg: EvaluateConfig) -> pd.DataFrame:
    """Retention against the PyTorch teacher; speed-ups against the teacher in the same runtime and in PyTorch."""
    teacher = table[table.model == "teacher"].set_index("runtime")
    base = teacher.loc["pytorch", "score"]
    table["retention"] = table["score"] / base if base else float("nan")
    if "test_score" in table:
        test_base = teacher.loc["pytorch", "test_score"]
        table["test_retention"] = table["test_score"] / test_base if test_base else float("nan")
    for bs in cfg.batch_sizes:
        col = f"latency_bs{bs}_ms"
        same = table["runtime"].map(teacher[col])
        table[f"speedup_bs{bs}"] = same / table[col]
        table[f"speedup_vs_pytorch_teacher_bs{bs}"] = teacher.loc["pytorch", col] / table[col]
    return table


def write_report(table: pd.DataFrame, metric: str, cfg: EvaluateConfig, where: dict, out: Path,
                 others: list[str] | None = None) -> dict:
    """summary.json (the few figures `dvc exp show` compares), tradeoff.csv (every figure, one row per
    model and runtime), table.md and tradeoff.png. `metric` is the main metric (column `score`), `others`
    the task's further metrics (a column each)."""
    first = f"latency_bs{cfg.batch_sizes[0]}_ms"
    others = others or []
    summary = {"task": where["task"], "metric": metric, "rows": where["rows"]}
    for r in table[table.runtime == "pytorch"].to_dict("records"):
        summary[r["model"]] = {metric: round(r["score"], 4), **{m: round(r[m], 4) for m in others},
                               "retention": round(r["retention"], 4), first: round(r[first], 3),
                               **({f"test_{metric}": round(r["test_score"], 4),
                                   "test_retention": round(r["test_retention"], 4)} if "test_score" in r else {})}
    chosen = pick(table, Budget(**cfg.budget), metric) if cfg.budget else None
    if chosen is not None:
        summary["pick"] = chosen
    md = render_table(table, metric, cfg, where, others, chosen)
    write_tables(out, md, table, summary, csv="tradeoff.csv", float_format="%.4f")
    plot_tradeoff(table, metric, first, out / "tradeoff.png", chosen)
    return {"summary": summary, "markdown": md, "table": table, "pick": chosen}


def render_table(table: pd.DataFrame, metric: str, cfg: EvaluateConfig, where: dict,
                 others: list[str] | None = None, chosen: dict | None = None) -> str:
    """Two markdown tables: what each model keeps (per runtime) with its latency at the first batch size in its
    fastest runtime, and how fast it is (per runtime); the pick under the budget (`chosen`) marked in both, and
    said in a line after them."""
    mark = {chosen["student"]: f" (pick: {RUNTIME_LABELS[chosen['runtime']]})"} if chosen and chosen["student"] else {}
    wide = table.pivot(index="model", columns="runtime")
    order = list(dict.fromkeys(table["model"]))
    runtimes = [r for r in RUNTIME_LABELS if r in set(table["runtime"])]

    def cell(model, col, runtime, fmt):
        v = wide.loc[model, (col, runtime)] if (col, runtime) in wide.columns else float("nan")
        return "-" if pd.isna(v) else format(v, fmt)

    title = [f"Evaluated on `{where['set']}`: {where['task']}, {where['rows']} rows"
             + (f" (from `{where['source']}`)" if where.get("source") else "")
             + ". Every column is measured on this set"
             + (f", but the test columns: `{where['test']}`, {where['test_rows']} rows, scored beside it and never "
                "used to stop training or to choose." if where.get("test") else "."), ""]
    lines = title + _keeps(table, metric, cfg, where, others or [], runtimes, cell, mark)
    head = ["model"] + [f"{RUNTIME_LABELS[r]} @bs{bs}" for bs in cfg.batch_sizes for r in runtimes]
    lines += ["", f"Latency in ms: median of {cfg.repeats} calls on real texts, every model and runtime taking turns "
              f"on each batch, {cfg.threads} threads. In brackets: the speed-up against the teacher in the same "
              "runtime (`tradeoff.csv` also has it against the teacher in PyTorch).", ""]

    def speed(m, bs, r):
        ms, x = cell(m, f"latency_bs{bs}_ms", r, ".2f"), cell(m, f"speedup_bs{bs}", r, ".1f")
        return "-" if ms == "-" else (ms if m == "teacher" else f"{ms} ({x}x)")

    lines += md(head, [[m + mark.get(m, ""), *(speed(m, bs, r) for bs in cfg.batch_sizes for r in runtimes)]
                       for m in order])
    if chosen is not None:
        lines += ["", describe_pick(chosen, metric)]
    return "\n".join(lines) + "\n"


def fastest(table: pd.DataFrame, col: str) -> pd.DataFrame:
    """Per model, its fastest runtime by `col` (a latency) and the speed-up against the teacher's fastest."""
    best = table.loc[table.groupby("model", sort=False)[col].idxmin()].set_index("model")
    return best.assign(speedup=best.loc["teacher", col] / best[col])[["runtime", col, "speedup"]]


def _keeps(table, metric, cfg, where, others, runtimes, cell, mark) -> list[str]:
    """The first table: metric, retention, each runtime's metric and agreement, latency in the fastest runtime, size."""
    col = f"latency_bs{cfg.batch_sizes[0]}_ms"
    quick = fastest(table, col)
    test = "test_score" in table
    head = ["model", "family", "params (M)", f"{metric}", "retention", *others]
    head += [f"test {metric}", "test retention"] if test else []
    agree = "Pearson r with PyTorch" if where.get("regression") else "agreement"
    head += [f"{RUNTIME_LABELS[r]} {metric} ({agree})" for r in runtimes if r != "pytorch"]
    head += [f"ms @bs{cfg.batch_sizes[0]}, fastest runtime", "speed-up"]
    head += ["disk MB (" + " / ".join(RUNTIME_LABELS[r] for r in runtimes) + ")"]
    rows = []
    for m in dict.fromkeys(table["model"]):
        cells = [m + mark.get(m, ""), table.loc[table.model == m, "family"].iloc[0], cell(m, "params_m", "pytorch", ".2f"),
                 cell(m, "score", "pytorch", ".4f"), cell(m, "retention", "pytorch", ".1%"),
                 *(cell(m, o, "pytorch", ".4f") for o in others)]
        if test:
            cells += [cell(m, "test_score", "pytorch", ".4f"), cell(m, "test_retention", "pytorch", ".1%")]
        for r in runtimes[1:]:
            s, a = cell(m, "score", r, ".4f"), cell(m, "agreement", r, ".4f" if where.get("regression") else ".2%")
            cells.append("-" if s == "-" else f"{s} ({a})")
        q = quick.loc[m]
        cells += [f"{q[col]:.2f} ({RUNTIME_LABELS[q['runtime']]})", f"{q['speedup']:.1f}x"]
        rows.append([*cells, " / ".join(cell(m, "disk_mb", r, ".1f") for r in runtimes)])
    return md(head, rows)


def pareto(table: pd.DataFrame, x: str, y: str = "score") -> pd.DataFrame:
    """The points no other point beats on both axes (faster and at least as good), fastest first."""
    front, best = [], -np.inf
    for i, r in table.sort_values([x, y], ascending=[True, False]).iterrows():
        if r[y] > best:
            front.append(i)
            best = r[y]
    return table.loc[front]


def plot_tradeoff(table: pd.DataFrame, metric: str, x: str, path: Path, chosen: dict | None = None) -> None:
    """Metric against latency (log axis, plain tick labels) for every model and runtime: one colour
    per family, one marker per runtime, the Pareto frontier as a dashed step line; the pick under the budget
    ringed, and the budget a dotted line where it is at the plotted batch size."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plt = pyplot()
    families = list(dict.fromkeys(table["family"]))
    colour = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    marker = {"pytorch": "o", "onnx": "s", "int8": "^"}
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    front = pareto(table, x)
    xs, ys = [*front[x], table[x].max() * 1.2], [*front["score"], front["score"].iloc[-1]]  # flat to the right edge
    ax.step(xs, ys, where="post", color="0.5", linestyle="--", linewidth=1, zorder=1)
    for r in table.itertuples(index=False):
        ax.scatter(getattr(r, x), r.score, color=colour[r.family], marker=marker.get(r.runtime, "o"), s=55,
                   edgecolors="black", linewidths=0.5, zorder=2)
    for r in table[table.runtime == "pytorch"].itertuples(index=False):
        ax.annotate(r.model, (getattr(r, x), r.score), textcoords="offset points", xytext=(5, 4), fontsize=8)
    _mark_pick(ax, table, x, chosen)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"latency at batch {x.removeprefix('latency_bs').removesuffix('_ms')} (ms, log scale)")
    ax.set_ylabel(metric)
    ax.grid(True, which="major", alpha=0.3)
    handles = [Line2D([], [], color=colour[f], marker="o", linestyle="", label=f) for f in families]
    handles += [Line2D([], [], color="0.3", marker=marker[r], linestyle="", label=RUNTIME_LABELS[r])
                for r in RUNTIME_LABELS if r in set(table["runtime"])]
    handles.append(Line2D([], [], color="0.5", linestyle="--", label="Pareto frontier"))
    if chosen and x == f"latency_bs{chosen['budget']['batch_size']}_ms":
        handles.append(Line2D([], [], color="0.4", linestyle=":", label=f"budget: {chosen['budget']['max_ms_per_text']:g} "
                              "ms per text"))
    ax.legend(handles=handles, fontsize=8, loc="lower right", ncol=2)
    ax.set_title(f"{metric} against latency: every model in every runtime it ships in")
    fig.tight_layout()
    save_figure(fig, path)


def _mark_pick(ax, table: pd.DataFrame, x: str, chosen: dict | None) -> None:
    if not chosen:
        return
    bs = chosen["budget"]["batch_size"]
    if x == f"latency_bs{bs}_ms":
        ax.axvline(chosen["budget"]["max_ms_per_text"] * bs, color="0.4", linestyle=":", linewidth=1, zorder=1,
                   label="budget")
    if chosen["student"] is None:
        return
    r = table[(table.model == chosen["student"]) & (table.runtime == chosen["runtime"])].iloc[0]
    ax.scatter(r[x], r["score"], s=260, facecolors="none", edgecolors="crimson", linewidths=1.6, zorder=3)
    ax.annotate(f"pick: {r['model']} ({RUNTIME_LABELS[r['runtime']]})", (r[x], r["score"]), color="crimson",
                textcoords="offset points", xytext=(8, -14), fontsize=8, fontweight="bold")
