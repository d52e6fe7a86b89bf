"""The generation study's table: per student BLEU on the test set (beam search in PyTorch; greedy through its
ONNX export), parameters, latency per sentence at batch 1 and 32 (every student and runtime taking turns on each
batch, as in every table); the teacher's masked-token accuracy and the tokenizer's BLEU ceiling beside them;
the KD students' gain over the likelihood-only student."""

from pathlib import Path

import numpy as np
import torch

from distillery.errors import DistilleryError
from distillery.evaluate.latency import interleaved_median_ms
from distillery.generation.config import GenEvaluateConfig
from distillery.generation.data import (
    Encoded,
    encode,
    encoder_inputs,
    load_split,
    load_tokenizer,
    max_new_tokens,
)
from distillery.generation.decode import bleu, ceiling_bleu, detokenize, translate
from distillery.generation.export import OnnxTranslator
from distillery.students import load_student
from distillery.evaluate.tables import md, pyplot, save_figure, write_tables
from distillery.io import read_json


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
                     cfg: GenEvaluateConfig, max_new: int) -> dict:
    student, tok, trained = load_student(student_dir)
    model = student.hf
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
        "temperature": trained["temperature"] if trained["alpha"] > 0 else None, "steps": trained["steps"],
        "bleu": bleu(hyps, refs), "bleu_lowercase": bleu(hyps, refs, lowercase=True),
        "onnx_greedy_bleu": bleu(greedy, refs), "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "examples": [{"source": None, "reference": r, "output": h} for r, h in list(zip(refs, hyps))[:3]],
    }
    return row, {"torch": run_torch, "onnx": run_onnx}


def report(rows: list[dict], teacher: dict, ceiling: float, cfg: GenEvaluateConfig, out_dir: Path) -> dict:
    """Write table.md, table.csv, summary.json and bleu.png to `out_dir`; return the summary."""
    import pandas as pd

    base = next((r for r in rows if r["alpha"] == 0), None)
    for r in rows:
        r["bleu_gain_over_likelihood"] = round(r["bleu"] - base["bleu"], 2) if base else None
    head = (f"Test set: {teacher['test_sentences']} sentences. Teacher (C-MLM, {teacher['base_model']}): masked-token "
            f"accuracy on dev {teacher['masked_token_accuracy']:.4f}. BLEU: sacreBLEU, cased, detokenised; beam "
            f"{cfg.beam} in PyTorch; the vocabulary's ceiling (references round-tripped through the "
            f"tokenizer) is {ceiling:.2f}. Latency: ms per sentence, {cfg.threads} threads.\n\n")
    gain = {r["name"]: "" if r["alpha"] == 0 or r["bleu_gain_over_likelihood"] is None
            else f"{r['bleu_gain_over_likelihood']:+.2f}" for r in rows}
    lines = md(["student", "alpha", "k", "T", "steps", "BLEU", "BLEU (lowercase)", "gain vs likelihood", "ONNX greedy BLEU",
                "params (M)", "PyTorch beam ms @bs1", "@bs32", "ONNX greedy ms @bs1", "@bs32"],
               [[r["name"], r["alpha"], r["top_k"] or "", r["temperature"] or "", r["steps"], f"{r['bleu']:.2f}",
                 f"{r['bleu_lowercase']:.2f}", gain[r["name"]], f"{r['onnx_greedy_bleu']:.2f}", r["params_m"],
                 r["torch_ms_bs1"], r["torch_ms_bs32"], r["onnx_ms_bs1"], r["onnx_ms_bs32"]] for r in rows])
    summary = {"teacher": teacher, "bleu_ceiling": ceiling, "students": rows}
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


def evaluate_all(students: list[str], models_dir: Path, exports_dir: Path, test_frame, test: Encoded,
                 tokenizer, teacher_metrics: Path, cfg: GenEvaluateConfig, max_new: int, out_dir: Path) -> dict:
    torch.set_num_threads(cfg.threads)
    refs = list(test_frame["tgt"])
    rows, runners = [], {}
    for n in students:
        row, run = evaluate_student(n, models_dir / n, exports_dir / n, test, refs, cfg, max_new)
        rows.append(row)
        runners |= {(n, runtime): fn for runtime, fn in run.items()}
    ms = time_runners(runners, len(test.src), np.arange(min(cfg.latency_sentences, len(test.src))))
    for row in rows:
        for runtime in ("torch", "onnx"):
            row |= {f"{runtime}_ms_bs{bs}": v for bs, v in ms[(row["name"], runtime)].items()}
    for r in rows:
        for ex, src in zip(r["examples"], test_frame["src"]):
            ex["source"] = src
    teacher = {**read_json(teacher_metrics), "test_sentences": len(refs)}
    return report(rows, teacher, ceiling_bleu(tokenizer, refs), cfg, out_dir)


def evaluate_stage(cfg: GenEvaluateConfig, students: list[str], models_dir: Path, exports_dir: Path, prepared: Path,
                   teacher_metrics: Path, out_dir: Path) -> dict:

    if not students:
        raise DistilleryError("param students: no students to evaluate; add one to the study's params.yaml")
    tok = load_tokenizer(read_json(Path(prepared) / "limits.json")["tokenizer"])
    frame = load_split(prepared, "test")
    torch.manual_seed(0)
    np.random.seed(0)
    return evaluate_all(students, models_dir, exports_dir, frame, encode(tok, frame), tok, teacher_metrics, cfg,
                        max_new_tokens(prepared), out_dir)

