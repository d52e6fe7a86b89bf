"""The generation study's table: per student BLEU on the test set (beam search in PyTorch; greedy through its
ONNX export), parameters, latency per sentence at batch 1 and 32 (every student and runtime taking turns on each
batch, as in every table); the teacher's masked-token accuracy and the tokenizer's BLEU ceiling beside them;
the KD students' gain over the likelihood-only student.

What C-MLM's claim rests on, measured on the dev set (`val`): at every target position (each target token and
the final [SEP]) the teacher predicts the token with it masked and the rest of the target and the source in
view (the soft labels' strided copies), and each student predicts it left to right, teacher-forced. Both are
scored on the same positions: top-1 accuracy and the recall of the top k (k = the soft labels' k)."""

from pathlib import Path

import numpy as np
import torch

from distillery.errors import DistilleryError
from distillery.evaluate.latency import interleaved_median_ms
from distillery.generation.config import GenEvaluateConfig
from distillery.generation.data import (
    Encoded,
    check_fits,
    decoder_io,
    encode,
    encoder_inputs,
    load_split,
    load_tokenizer,
    max_new_tokens,
)
from distillery.data.batching import length_batches
from distillery.generation.decode import bleu, ceiling_bleu, detokenize, translate
from distillery.generation.export import OnnxTranslator
from distillery.generation.soft_labels import topk_batch
from distillery.students import load_student
from distillery.evaluate.tables import md, pyplot, save_figure, write_tables
from distillery.io import read_json
from distillery.teacher.mlm import load_mlm, mlm_head

GAP_K = 8  # the top-k recall of the gap measure (the soft labels' k in the paper)


def hits(top: np.ndarray, gold: np.ndarray) -> tuple[int, int, int]:
    """(top-1 hits, top-k hits, positions) of `top` (n, k) token ids against `gold` (n,)."""
    return int((top[:, 0] == gold).sum()), int((top == gold[:, None]).any(1).sum()), len(gold)


def rates(counts, prefix: str) -> dict:
    counts = [int(c) for c in counts]
    return {f"{prefix}_top1": round(counts[0] / counts[2], 4), f"{prefix}_top{GAP_K}": round(counts[1] / counts[2], 4),
            "positions": counts[2]}


def teacher_gap(teacher_dir: Path, dev: Encoded, max_copies: int, bf16: bool) -> dict:
    """The teacher at every dev target position, masked (strided copies): top-1 accuracy and top-k recall."""
    model, _ = load_mlm(str(teacher_dir))
    model.eval()
    head, total = mlm_head(model), np.zeros(3, dtype=np.int64)
    lengths = np.array([len(s) + len(t) + 3 for s, t in zip(dev.src, dev.tgt)])
    for b in length_batches(lengths, batch_tokens=4096):
        owner, position, _, top = topk_batch(model, head, dev, b, max_copies, GAP_K, bf16)
        gold = np.array([(dev.tgt[b[o]] + [dev.sep])[p] for o, p in zip(owner, position)])
        total += hits(top, gold)
    return rates(tuple(total), "teacher_masked")


@torch.inference_mode()
def student_gap(model, dev: Encoded) -> dict:
    """A student at every dev target position, left to right and teacher-forced: top-1 accuracy, top-k recall."""
    total = np.zeros(3, dtype=np.int64)
    for s in range(0, len(dev.src), 64):
        rows = np.arange(s, min(s + 64, len(dev.src)))
        dec_in, labels = decoder_io(dev, rows)
        logits = model(**encoder_inputs(dev, rows), decoder_input_ids=dec_in).logits  # (bs, T, V)
        keep = labels != -100
        total += hits(logits[keep].topk(GAP_K, dim=-1).indices.numpy(), labels[keep].numpy())
    return rates(tuple(total), "student_forced")


def time_runners(runners: dict, n: int, rows: np.ndarray) -> dict:
    """ms per sentence of each runner (`rows -> output`) at batch 1 (the first `len(rows)` sentences) and at batch
    32 (at least 64 sentences), by the one statistic of every table (`evaluate/latency.py`): the runners take
    turns on each batch, one untimed warm-up round, the median over batches."""
    out: dict = {key: {} for key in runners}
    for bs, pool in ((1, rows), (32, np.arange(min(n, max(64, len(rows)))))):
        batches = [pool[s:s + bs] for s in range(0, len(pool) - min(bs, len(pool)) + 1, min(bs, len(pool)))]
        ms = interleaved_median_ms(list(runners.values()), lambda r, k: batches[r % len(batches)], len(batches), 1,
                                   desc=f"timing at batch {bs}")
        for key, v in zip(runners, ms):
            out[key][bs] = round(v / len(batches[0]), 2)
    return out


def evaluate_student(name: str, student_dir: Path, export_dir: Path, test: Encoded, refs: list[str],
                     cfg: GenEvaluateConfig, max_new: int, dev: Encoded) -> dict:
    student, tok, trained = load_student(student_dir)
    model = student.hf.eval()
    hyps = translate(model, tok, test, cfg.beam, cfg.batch_size, max_new)
    onnx = OnnxTranslator(export_dir, threads=cfg.threads)

    def run_onnx(rows):
        b = encoder_inputs(test, rows)
        return onnx.greedy(b["input_ids"].numpy(), b["attention_mask"].numpy(), max_new)

    greedy = []
    for s in range(0, len(test.src), 64):
        greedy.extend(detokenize(tok, seq) for seq in run_onnx(np.arange(s, min(s + 64, len(test.src)))))

    def run_torch(rows):
        with torch.inference_mode():
            return model.generate(**encoder_inputs(test, rows), num_beams=cfg.beam, max_new_tokens=max_new,
                                  max_length=None, early_stopping=cfg.beam > 1)

    row = {
        "name": name, "alpha": trained["alpha"], "top_k": trained["top_k"] if trained["alpha"] > 0 else None,
        "val_bleu_greedy": (trained.get("history") or [{}])[-1].get("dev_bleu_greedy"),  # the sweep's criterion
        "temperature": trained["temperature"] if trained["alpha"] > 0 else None, "steps": trained["steps"],
        "bleu": bleu(hyps, refs), "bleu_lowercase": bleu(hyps, refs, lowercase=True),
        "onnx_greedy_bleu": bleu(greedy, refs), "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        **{k: v for k, v in student_gap(model, dev).items() if k != "positions"},
        "examples": [{"source": None, "reference": r, "output": h} for r, h in list(zip(refs, hyps))[:3]],
    }
    return row, {"torch": run_torch, "onnx": run_onnx}


def report(rows: list[dict], teacher: dict, ceiling: float, cfg: GenEvaluateConfig, out_dir: Path) -> dict:
    """Write table.md, table.csv, summary.json and bleu.png to `out_dir`; return the summary."""
    import pandas as pd

    base = next((r for r in rows if r["alpha"] == 0), None)
    for r in rows:
        r["bleu_gain_over_likelihood"] = round(r["bleu"] - base["bleu"], 2) if base else None
    gap = teacher["dev_gap"]
    head = (f"Test set: {teacher['test_sentences']} sentences. Teacher (C-MLM, {teacher['base_model']}): masked-token "
            f"accuracy on dev {teacher['masked_token_accuracy']:.4f} (its training's masks"
            + (", by epoch: " + ", ".join(f"{c['masked_token_accuracy']:.4f}" for c in teacher["curve"])
               if teacher.get("curve") else "") + f"); at every one of the "
            f"{gap['positions']} dev target positions, masked one at a time: top-1 {gap['teacher_masked_top1']:.4f}, "
            f"top-{GAP_K} recall {gap[f'teacher_masked_top{GAP_K}']:.4f} (the students' dev columns: the same "
            f"positions, left to right, teacher-forced). BLEU: sacreBLEU, cased, detokenised; beam "
            f"{cfg.beam} in PyTorch; the vocabulary's ceiling (references round-tripped through the "
            f"tokenizer) is {ceiling:.2f}. Latency: ms per sentence, {cfg.threads} threads.\n\n")
    gain = {r["name"]: "" if r["alpha"] == 0 or r["bleu_gain_over_likelihood"] is None
            else f"{r['bleu_gain_over_likelihood']:+.2f}" for r in rows}
    kd = [r for r in rows if r["alpha"] > 0 and r["val_bleu_greedy"] is not None]
    chosen = max(kd, key=lambda r: r["val_bleu_greedy"])["name"] if kd else None
    lines = md(["student", "alpha", "k", "T", "steps", "val greedy BLEU", "BLEU", "BLEU (lowercase)", "gain vs likelihood",
                "ONNX greedy BLEU",
                "dev next-token top-1", f"top-{GAP_K}", "params (M)", "PyTorch beam ms @bs1", "@bs32", "ONNX greedy ms @bs1", "@bs32"],
               [[r["name"] + (" (best KD on val)" if r["name"] == chosen and len(kd) > 1 else ""), r["alpha"],
                 r["top_k"] or "", r["temperature"] or "", r["steps"],
                 "" if r["val_bleu_greedy"] is None else f"{r['val_bleu_greedy']:.2f}", f"{r['bleu']:.2f}",
                 f"{r['bleu_lowercase']:.2f}", gain[r["name"]], f"{r['onnx_greedy_bleu']:.2f}",
                 f"{r['student_forced_top1']:.4f}", f"{r[f'student_forced_top{GAP_K}']:.4f}", r["params_m"],
                 r["torch_ms_bs1"], r["torch_ms_bs32"], r["onnx_ms_bs1"], r["onnx_ms_bs32"]] for r in rows])
    summary = {"teacher": teacher, "bleu_ceiling": ceiling, "best_kd_on_val": chosen, "students": rows}
    write_tables(out_dir, head + "\n".join(lines) + "\n",
                 pd.DataFrame([{k: v for k, v in r.items() if k != "examples"} for r in rows]), summary)
    fig, ax = pyplot().subplots(figsize=(6, 3))
    ax.barh([r["name"] for r in rows], [r["bleu"] for r in rows], color="tab:blue")
    ax.set_xlabel("BLEU (test)")
    ax.set_title("C-MLM distillation, German -> English")
    fig.tight_layout()
    save_figure(fig, out_dir / "bleu.png", dpi=100)
    print(head + "\n".join(lines))
    return summary


def evaluate_all(students: list[str], models_dir: Path, exports_dir: Path, test_frame, test: Encoded, dev: Encoded,
                 tokenizer, teacher: dict, cfg: GenEvaluateConfig, max_new: int, out_dir: Path) -> dict:
    torch.set_num_threads(cfg.threads)
    refs = list(test_frame["tgt"])
    rows, runners = [], {}
    for n in students:
        row, run = evaluate_student(n, models_dir / n, exports_dir / n, test, refs, cfg, max_new, dev)
        rows.append(row)
        runners |= {(n, runtime): fn for runtime, fn in run.items()}
    ms = time_runners(runners, len(test.src), np.arange(min(cfg.latency_sentences, len(test.src))))
    for row in rows:
        for runtime in ("torch", "onnx"):
            row |= {f"{runtime}_ms_bs{bs}": v for bs, v in ms[(row["name"], runtime)].items()}
    for r in rows:
        for ex, src in zip(r["examples"], test_frame["src"]):
            ex["source"] = src
    teacher = {**teacher, "test_sentences": len(refs)}
    return report(rows, teacher, ceiling_bleu(tokenizer, refs), cfg, out_dir)


def evaluate_stage(cfg: GenEvaluateConfig, students: list[str], models_dir: Path, exports_dir: Path, prepared: Path,
                   teacher_dir: Path, teacher_metrics: Path, max_copies: int, out_dir: Path) -> dict:
    """The table of every student; the teacher's side of the dev gap measured here, in fp32, on the masks of the
    soft labels (`max_copies`: `soft_labels.max_copies`)."""
    if not students:
        raise DistilleryError("param students: no students to evaluate; add one to the study's params.yaml")
    tok = load_tokenizer(read_json(Path(prepared) / "limits.json")["tokenizer"])
    for n in students:  # every student fits the prepared text, before any is scored
        info = read_json(Path(models_dir) / n / "student.json")
        check_fits(int(info["config"]["max_positions"]), f"student {n}", prepared, tok)
    frame = load_split(prepared, "test")
    dev = encode(tok, load_split(prepared, "dev"))
    torch.manual_seed(0)
    np.random.seed(0)
    teacher = {**read_json(teacher_metrics), "dev_gap": teacher_gap(teacher_dir, dev, max_copies, bf16=False)}
    return evaluate_all(students, models_dir, exports_dir, frame, encode(tok, frame), dev, tok, teacher, cfg,
                        max_new_tokens(prepared), out_dir)
