"""FastBERT's speed-accuracy curve: for each `speed` (the exit threshold on normalised entropy), the
metric, mean exit layer, histogram of exit layers, FLOPs against the full backbone, and latency at each
batch size timed with the same interleaved harness as the main table, against the full backbone (the
plain forward of the same fine-tuned model) in the same run. Each branch's metric alone comes too.

The metric, exits and FLOPs of every speed come from one pass that reads every exit (the exit a text
takes is the first whose uncertainty is below `speed`, so one pass decides them all); the latency
columns run the batched adaptive inference itself.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from distillery.config import EvaluateConfig
from distillery.data.batching import length_batches, text_lengths
from distillery.evaluate.tables import md, pyplot, save_figure, write_tables
from distillery.metrics import task_metric
from distillery.students.exits import first_exit, uncertainty


def layer_flops(n: np.ndarray, d: int, inter: int) -> np.ndarray:
    """Multiply-adds x 2 of one encoder layer on sequences of n tokens: the projections (4 d^2), the
    feed-forward (2 d inter) per token, and the attention products (2 n d) per token."""
    return 2 * n * (4 * d * d + 2 * d * inter) + 4 * n * n * d


def branch_flops(n: np.ndarray, d: int, w: int, c: int) -> np.ndarray:
    """The same for one FastBERT branch: input map (d w) and keys, values (2 w^2) per token, the [CLS]
    query, attention output, dense (3 w^2), its attention products (2 n w) and the classifier (w c)."""
    return 2 * (n * (d * w + 2 * w * w) + 3 * w * w + 2 * n * w + w * c)


@torch.inference_mode()
def all_exits(model, tokenizer, frame: pd.DataFrame, max_len: int, pair: bool) -> tuple[np.ndarray, np.ndarray]:
    """(logits (n, L, C) of every exit, token counts (n,)) on every row of `frame`."""
    model.eval()
    heads = model.exit_names()
    out, lengths = None, np.zeros(len(frame), dtype=np.int64)
    for idx in length_batches(text_lengths(frame), batch_size=256):
        sub = frame.iloc[idx]
        batch = model.collate(tokenizer, sub["text_a"].tolist(), sub["text_b"].tolist() if pair else None, max_len)
        res = model(**batch)
        z = torch.stack([res.logits[h] for h in heads], 1).float().numpy()  # (bs, L, C)
        if out is None:
            out = np.zeros((len(frame), *z.shape[1:]), dtype=np.float32)
        out[idx] = z
        lengths[idx] = batch["attention_mask"].sum(1).numpy()
    return out, lengths


def curve(model, logits: np.ndarray, lengths: np.ndarray, labels: np.ndarray, metric: str,
          speeds: list[float]) -> tuple[pd.DataFrame, list[float]]:
    """(one row per speed: metric, mean exit, exit histogram, FLOPs ratio; each exit's metric alone)."""
    hc, c = model.hf.config, model.config
    n_layers = logits.shape[1]
    u = np.stack([uncertainty(logits[:, i]) for i in range(n_layers)], 1)  # (n, L)
    per_layer = layer_flops(lengths, hc.hidden_size, hc.intermediate_size)
    per_branch = branch_flops(lengths, hc.hidden_size, c.branch_width, c.num_labels)
    full = (n_layers * per_layer).sum()
    rows = []
    for speed in speeds:
        ex = first_exit(u, speed)
        pred = logits[np.arange(len(ex)), ex - 1].argmax(-1)
        branches_run = np.minimum(ex, n_layers - 1)  # every branch up to the exit (the top has none)
        flops = (ex * per_layer + branches_run * per_branch).sum()
        hist = np.bincount(ex, minlength=n_layers + 1)[1:]
        rows.append({"speed": speed, "score": task_metric(metric, labels, pred), "mean_exit": float(ex.mean()),
                     "flops_ratio": float(flops / full), "flops_speedup": float(full / flops),
                     **{f"exit{i}_share": float(hist[i - 1] / len(ex)) for i in range(1, n_layers + 1)}})
    alone = [task_metric(metric, labels, logits[:, i].argmax(-1)) for i in range(n_layers)]
    return pd.DataFrame(rows), alone


def exit_curves(models: list[tuple[str, object, object, int]], dev: pd.DataFrame, metric: str, pair: bool,
                cfg: EvaluateConfig, out: Path) -> pd.DataFrame | None:
    """The curve of each (name, model, tokenizer, max_len) with exits; writes exits.csv, exits.md and
    exits.png into `out` (nothing when no model has exits)."""
    from distillery.evaluate.latency import Runner, latencies_ms

    if not models:  # the declared outputs still exist, and say so
        write_tables(out, "No student with early exits was evaluated.\n",
                     pd.DataFrame(columns=["model", "speed", "score", "speedup_bs1"]), None, csv="exits.csv",
                     table="exits.md")
        plot(pd.DataFrame(), metric, cfg, out / "exits.png")
        return None
    labels = dev["label"].to_numpy()
    tables, alone_rows = [], []
    timing = dataclasses.replace(cfg, repeats=cfg.exit_repeats)
    for name, model, tok, max_len in models:
        logits, lengths = all_exits(model, tok, dev, max_len, pair)
        table, alone = curve(model, logits, lengths, labels, metric, list(cfg.exit_speeds))
        table.insert(0, "model", name)
        alone_rows.append({"model": name, **{f"exit{i + 1}": v for i, v in enumerate(alone)}})

        def collate(a, b, model=model, tok=tok, max_len=max_len):
            return model.collate(tok, a, b, max_len)

        def backbone(batch, model=model):
            return model.hf(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask",
                                                                          "token_type_ids")}).logits.numpy()

        runners = [Runner(f"{name} backbone", "fastbert", "pytorch", collate, backbone, 0, 0)]
        runners += [Runner(f"{name} speed {s}", "fastbert", "pytorch", collate, model.predictor(s), 0, 0)
                    for s in cfg.exit_speeds]
        for bs in cfg.batch_sizes:
            print(f"timing {name}'s early exits at {len(cfg.exit_speeds)} speeds and its full backbone at batch {bs}, "
                  f"interleaved ({cfg.exit_repeats} repeats)")
            ms = latencies_ms(runners, dev, bs, timing, pair)
            table[f"backbone_bs{bs}_ms"] = ms[0]
            table[f"latency_bs{bs}_ms"] = ms[1:]
            table[f"speedup_bs{bs}"] = ms[0] / np.array(ms[1:])
        full = task_metric(metric, labels, logits[:, -1].argmax(-1))
        table["backbone_score"] = full
        table["score_drop_points"] = (full - table["score"]) * 100
        tables.append(table)
    result = pd.concat(tables, ignore_index=True)
    write_tables(out, render(result, pd.DataFrame(alone_rows), metric, cfg), result, None, csv="exits.csv",
                 table="exits.md", float_format="%.4f")
    plot(result, metric, cfg, out / "exits.png")
    return result


def render(table: pd.DataFrame, alone: pd.DataFrame, metric: str, cfg: EvaluateConfig) -> str:
    layers = sorted(int(c.removeprefix("exit").removesuffix("_share")) for c in table.columns if c.endswith("_share"))
    head = ["model", "speed", metric, "drop (pt)", "mean exit", "FLOPs", *[f"x bs{b}" for b in cfg.batch_sizes],
            *[f"ms bs{b}" for b in cfg.batch_sizes], "exits at layer " + " / ".join(map(str, layers))]
    lines = [f"Early exits: {metric} against speed (exit when normalised entropy < speed). Drop: points below the "
             "full backbone; FLOPs: share of the full backbone's; x: measured speed-up against the full backbone "
             f"(PyTorch, median of {cfg.exit_repeats} interleaved calls); exits: share of texts leaving at each layer.",
             ""]
    rows = []
    for r in table.itertuples(index=False):
        d = r._asdict()
        rows.append([r.model, f"{r.speed:g}", f"{r.score:.4f}", f"{r.score_drop_points:+.2f}".replace("+-", "-"),
                 f"{r.mean_exit:.2f}", f"{r.flops_ratio:.1%}", *[f"{d[f'speedup_bs{b}']:.2f}" for b in cfg.batch_sizes],
                 *[f"{d[f'latency_bs{b}_ms']:.2f}" for b in cfg.batch_sizes],
                     " / ".join(f"{d[f'exit{i}_share']:.0%}" for i in layers)])
    cols = [c for c in alone.columns if c != "model"]
    lines += md(head, rows) + ["", f"Each exit alone ({metric} of its own predictions on every text):", ""]
    lines += md(["model", *cols], [[r[0], *(f"{v:.4f}" for v in r[1:])] for r in alone.itertuples(index=False)])
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, metric: str, cfg: EvaluateConfig, path: Path) -> None:
    """Metric against measured speed-up (one panel per batch size), one line per model with exits."""
    fig, axes = pyplot().subplots(1, len(cfg.batch_sizes), figsize=(5.5 * len(cfg.batch_sizes), 4.5), squeeze=False)
    for ax, bs in zip(axes[0], cfg.batch_sizes if len(table) else []):
        for name, t in table.groupby("model", sort=False):
            ax.plot(t[f"speedup_bs{bs}"], t["score"], marker="o", label=name)
            for r in t.itertuples(index=False):
                ax.annotate(f"{r.speed:g}", (getattr(r, f"speedup_bs{bs}"), r.score), textcoords="offset points",
                            xytext=(3, 3), fontsize=7)
        ax.axhline(table["backbone_score"].iloc[0], color="0.5", linestyle="--", linewidth=1, label="full backbone")
        ax.set_xlabel(f"speed-up against the full backbone at batch {bs} (measured)")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Early exits: accuracy against measured speed-up (labels: speed)")
    fig.tight_layout()
    save_figure(fig, path)
