"""The C-MLM study's student recipe: width and initialisation at (about) equal training time.

    python bench/cmlm_student.py [--runs 128:scaled:600 128:bart:600 256:scaled:280] [--dev 300] [--lr 0.001]

Needs the study's prepared data (`dvc repro studies/cmlm/dvc.yaml`, or its `prepare` stage). Each run
`WIDTH:INIT:STEPS` trains a likelihood-only student (alpha 0; the study's other settings: 3 + 3 layers,
4 heads, FFN 4 x width, batch 64, label smoothing 0.1, warm-up 5%) for STEPS steps on the same batches,
then decodes the first `--dev` sentences of val greedily. INIT `scaled` is the study's initialisation
(weights N(0, 1/width)); `bart` is BART's default (N(0, 0.02^2)). Prints, per run: seconds, final smoothed
NLL, greedy BLEU, and how many distinct outputs there are (a student that ignores the source writes the
same caption for every sentence). About 20 minutes with the default runs on 2 cores.
"""

import argparse
import json
import time
from pathlib import Path

import yaml

from distillery.generation import student as student_mod
from distillery.generation.config import seq2seq_config
from distillery.generation.data import encode, load_split, load_tokenizer
from distillery.generation.decode import bleu, translate
from distillery.generation.train import train_seq2seq

STUDY = Path(__file__).resolve().parents[1] / "studies" / "cmlm"


def run(spec: str, params: dict, enc, dev, dev_refs, tok, lr: float, limits: dict) -> dict:
    width, init, steps = spec.split(":")
    if init not in ("scaled", "bart"):
        raise SystemExit(f"--runs {spec}: INIT must be scaled or bart")
    width, steps = int(width), int(steps)
    settings = {**params["gen_distill"], "alpha": 0.0, "d_model": width, "ffn_dim": 4 * width, "lr": lr,
                "epochs": steps * params["gen_distill"]["batch_size"] / len(enc.src)}
    cfg = seq2seq_config("bench", {}, settings)
    vocab = student_mod.output_vocab(cfg, enc, len(tok))
    max_len = max(limits["max_src_len"], limits["max_tgt_len"]) + 1  # as gen-distill builds it
    model = student_mod.build_student(cfg, tok, max_len, vocab, init_std=0.02 if init == "bart" else None)
    t0 = time.perf_counter()
    result = train_seq2seq(model, cfg, enc, None)
    seconds = time.perf_counter() - t0
    hyps = translate(model, tok, dev, 1, 64, limits["max_tgt_len"] + 1)  # as gen-distill scores dev
    return {"run": spec, "train_s": round(seconds), "steps": result["steps"], "final_nll": result["final_nll"],
            "dev_bleu_greedy": bleu(hyps, dev_refs), "distinct_outputs": f"{len(set(hyps))}/{len(hyps)}",
            "example": hyps[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", default=["128:scaled:600", "128:bart:600", "256:scaled:280"])
    ap.add_argument("--dev", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.001)
    args = ap.parse_args()
    params = yaml.safe_load((STUDY / "params.yaml").read_text())
    prepared = STUDY / "data" / "prepared"
    if not (prepared / "limits.json").is_file():
        raise SystemExit(f"{prepared}: not prepared; run `dvc repro studies/cmlm/dvc.yaml` (or its prepare stage)")
    limits = json.loads((prepared / "limits.json").read_text())
    tok = load_tokenizer(limits["tokenizer"])
    train, dev = load_split(prepared, "train"), load_split(prepared, "dev").iloc[:args.dev]
    enc, dev_enc = encode(tok, train), encode(tok, dev)
    rows = [run(spec, params, enc, dev_enc, list(dev["tgt"]), tok, args.lr, limits) for spec in args.runs]
    print("\n| run (width:init:steps) | train s | final NLL | greedy BLEU | distinct outputs | first output |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['train_s']} | {r['final_nll']} | {r['dev_bleu_greedy']} | {r['distinct_outputs']} "
              f"| {r['example']} |")


if __name__ == "__main__":
    main()
