"""The C-MLM study's student recipe: width and initialisation at (about) equal training time.

    python bench/cmlm_student.py [--runs 128:scaled:600 128:bart:600 256:scaled:280] [--dev 300] [--lr 0.001]

Needs the study's prepared data (`dvc repro studies/cmlm/dvc.yaml`, or its `prepare` stage). Each run
`WIDTH:INIT:STEPS` trains a likelihood-only student (alpha 0; the study's other settings: 3 + 3 layers,
4 heads, FFN 4 x width, batch 64, label smoothing 0.1, warm-up 5%) for STEPS steps on the same batches,
then decodes the first `--dev` sentences of val greedily. INIT `scaled` is the study's initialisation
(weights N(0, 1/width)); `bart` is BART's default (N(0, 0.02^2)). Prints, per run: seconds, final smoothed
loss, greedy BLEU, and how many distinct outputs there are (a student that ignores the source writes the
same caption for every sentence). About 20 minutes with the default runs on 2 cores.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

from distillery.config import merge_student
from distillery.distill.recipe import Paths, distill
from distillery.generation.data import encode, load_split, load_tokenizer
from distillery.generation.decode import bleu, translate
from distillery.students import load_student

STUDY = Path(__file__).resolve().parents[1] / "studies" / "cmlm"


def run(spec: str, params: dict, prepared: Path, dev, dev_refs, tok, lr: float, limits: dict, work: Path) -> dict:
    width, init, steps = spec.split(":")
    if init not in ("scaled", "bart"):
        raise SystemExit(f"--runs {spec}: INIT must be scaled or bart")
    width, steps = int(width), int(steps)
    d = params["distill"]
    common = {**d["common"], "lr": lr, "epochs": 1, "max_examples": steps * d["common"]["batch_size"]}
    args = {**d["seq2seq"]["model_args"], "d_model": width, "ffn_dim": 4 * width, "init_std": 0.02 if init == "bart" else 0.0}
    cfg = merge_student("bench", {"model": "seq2seq", "losses": {"token_nll": 1.0}, "model_args": args},
                        {**d, "common": common}, "seq2seq")
    out = work / spec.replace(":", "-")
    t0 = time.perf_counter()
    result = distill(cfg, Paths(prepared, None, work / "none", None, out, out.with_suffix(".json"), work / "live"))
    seconds = time.perf_counter() - t0
    model = load_student(out)[0].hf
    hyps = translate(model, tok, dev, 1, 64, limits["max_tgt_len"] + 1)  # as the seq2seq task scores dev
    return {"run": spec, "train_s": round(seconds), "steps": result["steps"], "final_loss": result["final_loss"],
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
    dev = load_split(prepared, "dev").iloc[:args.dev]
    dev_enc = encode(tok, dev)
    work = Path(tempfile.mkdtemp(prefix="cmlm-student-"))
    rows = [run(spec, params, prepared, dev_enc, list(dev["tgt"]), tok, args.lr, limits, work) for spec in args.runs]
    print("\n| run (width:init:steps) | train s | final loss | greedy BLEU | distinct outputs | first output |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['train_s']} | {r['final_loss']} | {r['dev_bleu_greedy']} | {r['distinct_outputs']} "
              f"| {r['example']} |")


if __name__ == "__main__":
    main()
