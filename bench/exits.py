"""FastBERT's batched early exits over a whole set: throughput with and without re-pooling.

    python bench/exits.py [--student models/students/fastbert] [--speed 0.5] [--batch-size 32] [--threads 2]

Needs a trained FastBERT student (`dvc repro distill@fastbert`). Runs SST-2 dev (872 sentences, in
length-sorted batches) through, in one run and taking turns (3 rounds, best of each):

1. the full backbone (the plain forward of the same fine-tuned model);
2. adaptive inference, each batch alone (a layer runs only on the rows still in play);
3. adaptive inference with re-pooling (the rows left over from several batches wait at their next
   layer until a full batch is there), in PyTorch and in ONNX Runtime (the export, if present).

Prints texts/s, the speed-up against the full backbone, mean rows per layer call, and checks that
every way gives the same predictions.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from distillery.data.batching import length_batches, text_lengths
from distillery.data.prepare import load_prepared
from distillery.students import load_student
from distillery.students.exits import OnnxRunner, adaptive_predict

REPO = Path(__file__).resolve().parents[1]


class Counting:
    """A runner wrapper that counts layer calls and the rows they carry."""

    def __init__(self, runner) -> None:
        self.runner, self.n_layers, self.calls, self.rows = runner, runner.n_layers, 0, 0

    def embed(self, inputs):
        return self.runner.embed(inputs)

    def layer(self, i, h, mask):
        self.calls += 1
        self.rows += len(mask)
        return self.runner.layer(i, h, mask)

    def take(self, h, mask, rows):
        return self.runner.take(h, mask, rows)

    def join(self, parts):
        return self.runner.join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", type=Path, default=REPO / "models/students/fastbert")
    ap.add_argument("--exports", type=Path, default=REPO / "exports")
    ap.add_argument("--prepared", type=Path, default=REPO / "data/prepared")
    ap.add_argument("--speed", type=float, default=None, help="default: the student's own")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from distillery.students.fastbert import TorchRunner

    model, tok, info = load_student(args.student)
    speed = model.config.speed if args.speed is None else args.speed
    dev = load_prepared(args.prepared).dev
    batches = []
    for idx in length_batches(text_lengths(dev), batch_size=args.batch_size):
        sub = dev.iloc[idx]
        batches.append((idx, model.collate(tok, sub["text_a"].tolist(), None, int(info["max_seq_len"]))))
    n = len(dev)

    def backbone():
        out = np.zeros((n, model.config.num_labels), dtype=np.float32)
        with torch.inference_mode():
            for idx, b in batches:
                out[idx] = model.hf(**b).logits.numpy()
        return out, None

    def adaptive(runner_factory, pool):
        def run():
            runner = Counting(runner_factory())
            with torch.inference_mode():
                logits, exits = adaptive_predict(runner, batches, n, speed, pool=pool)
            return logits, (exits, runner.rows / max(runner.calls, 1))
        return run

    ways = {"full backbone (PyTorch)": backbone,
            "early exits, each batch alone (PyTorch)": adaptive(lambda: TorchRunner(model), False),
            "early exits, re-pooled (PyTorch)": adaptive(lambda: TorchRunner(model), True)}
    export = args.exports / args.student.name
    if (export / "embeddings.onnx").is_file():
        ort_runner = OnnxRunner(export, threads=args.threads)
        ways["early exits, each batch alone (ONNX Runtime)"] = adaptive(lambda: ort_runner, False)
        ways["early exits, re-pooled (ONNX Runtime)"] = adaptive(lambda: ort_runner, True)
    best = {k: float("inf") for k in ways}
    results = {}
    for _ in range(3):
        for name, fn in ways.items():
            t0 = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    base = best["full backbone (PyTorch)"]
    ref = results["early exits, each batch alone (PyTorch)"][0].argmax(-1)
    print(f"{args.student.name}: speed {speed}, SST-2 dev ({n} sentences), batches of {args.batch_size}, "
          f"{args.threads} threads, best of 3")
    print(f"{'way':48s} {'texts/s':>8s} {'speed-up':>9s} {'rows/layer call':>16s} {'same predictions':>17s}")
    for name in ways:
        logits, extra = results[name]
        rows = f"{extra[1]:.1f}" if extra else f"{args.batch_size}"
        same = "-" if extra is None else f"{(logits.argmax(-1) == ref).mean():.2%}"
        print(f"{name:48s} {n / best[name]:8.1f} {base / best[name]:8.2f}x {rows:>16s} {same:>17s}")
    exits = results["early exits, each batch alone (PyTorch)"][1][0]
    print(f"mean exit layer {exits.mean():.2f} of {model.n_layers}")


if __name__ == "__main__":
    main()
