"""`distillery predict` against a `transformers` text-classification pipeline, as users label a file.

    python bench/predict.py [--rows 100000] [--big-rows 1000000] [--threads 2]
                            [--student exports/bilstm_kd] [--runtime int8] [--teacher models/teacher]
                            [--teacher-rows N] [--pipeline-rows N]

Needs the pipeline's outputs (`dvc repro`, or `dvc repro export@bilstm_kd` for these two models). The texts are
SST-2's training sentences in file order, repeated from the start to make `--rows` (67,349 distinct). Prints:

1. rows/s of `distillery predict` (in this process, `--threads` threads) with the int8 BiLSTM export and with the
   teacher in PyTorch, and of a `transformers` pipeline over the teacher (same threads, batch size 64, the same
   texts, texts cut to the teacher's max_seq_len), with how often the pipeline's labels equal predict's;
   `--teacher-rows` / `--pipeline-rows` time the two slow ones on the first N texts only (rows/s is a rate; the
   printout says how many were labelled). The pipeline is called on slices of 2,048 texts;
2. the peak resident memory (RSS, from the kernel's rusage) of `distillery predict` labelling a
   `--big-rows`-row CSV in a child process, with its rows/s.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "data" / "glue" / "SST-2" / "train.tsv"


def sentences(n: int) -> list[str]:
    with open(SST2, encoding="utf-8") as fh:
        base = [line.rstrip("\n").split("\t")[0] for line in fh][1:]
    return [base[i % len(base)] for i in range(n)]


def write_csv(path: Path, texts) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["id", "text"])
        w.writerows((i, t) for i, t in enumerate(texts))


def labels_of(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [row["prediction"] for row in csv.DictReader(fh)]


def run_predict(model: Path, runtime: str, src: Path, out: Path, threads: int) -> dict:
    from distillery.inference.run import predict_file

    return predict_file(model, runtime, src, out, threads=threads)


def run_pipeline(teacher: Path, texts: list[str], threads: int) -> tuple[float, list[str]]:
    import torch
    from transformers import pipeline

    torch.set_num_threads(threads)
    seq = json.loads((teacher / "distillery.json").read_text()).get("max_seq_len", 128)
    pipe = pipeline("text-classification", model=str(teacher), device=-1)
    t0 = time.perf_counter()
    out = []
    for i in range(0, len(texts), 2048):  # in slices: the results of a slice at a time, not of 100,000 at once
        out += [r["label"] for r in pipe(texts[i:i + 2048], batch_size=64, truncation=True, max_length=seq)]
    return time.perf_counter() - t0, out


def big_run(model: Path, runtime: str, rows: int, threads: int, tmp: Path) -> tuple[float, float]:
    """(peak RSS in GiB, rows/s) of `distillery predict` on a `rows`-row CSV, in a child process."""
    src = tmp / "big.csv"
    base = sentences(67_349)
    write_csv(src, (base[i % len(base)] for i in range(rows)))
    cmd = [sys.executable, "-m", "stages.cli", "predict", str(src), "--model", str(model), "--runtime", runtime,
           "--threads", str(threads), "--out", str(tmp / "big.out.csv")]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"the {rows}-row run failed (status {status})")
    return usage.ru_maxrss / 2**20, rows / seconds  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--big-rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--student", type=Path, default=REPO / "exports" / "bilstm_kd")
    ap.add_argument("--runtime", default="int8")
    ap.add_argument("--teacher", type=Path, default=REPO / "models" / "teacher")
    ap.add_argument("--teacher-rows", type=int, default=0, help="0: --rows")
    ap.add_argument("--pipeline-rows", type=int, default=0, help="0: --rows")
    args = ap.parse_args()
    texts = sentences(args.rows)
    n_teacher, n_pipe = args.teacher_rows or args.rows, args.pipeline_rows or args.rows
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_csv(tmp / "in.csv", texts)
        write_csv(tmp / "teacher_in.csv", texts[:n_teacher])
        s = run_predict(args.student, args.runtime, tmp / "in.csv", tmp / "student.csv", args.threads)
        results.append((f"predict, {args.student.name} ({args.runtime})", s["rows"], s["rows"] / s["seconds"]))
        t = run_predict(args.teacher, "pytorch", tmp / "teacher_in.csv", tmp / "teacher.csv", args.threads)
        results.append(("predict, teacher (pytorch)", t["rows"], t["rows"] / t["seconds"]))
        seconds, piped = run_pipeline(args.teacher, texts[:n_pipe], args.threads)
        results.append(("transformers pipeline, teacher", n_pipe, n_pipe / seconds))
        same = sum(a == b for a, b in zip(piped, labels_of(tmp / "teacher.csv")))
        rss, big_rate = big_run(args.student, args.runtime, args.big_rows, args.threads, tmp) if args.big_rows else (0, 0)
    pipe_rate = results[2][2]
    print(f"\nSST-2 training sentences, {args.threads} threads, {os.cpu_count()} CPUs\n")
    print("| labeller | rows | rows/s | x the pipeline |\n|---|---|---|---|")
    for name, n, rate in results:
        print(f"| {name} | {n:,} | {rate:,.0f} | {rate / pipe_rate:.1f}x |")
    overlap = min(n_teacher, n_pipe)
    print(f"\nThe pipeline's labels equal predict's teacher labels on {same:,} of the {overlap:,} texts both labelled "
          f"({same / overlap:.2%}).")
    if args.big_rows:
        print(f"{args.big_rows:,}-row CSV, {args.student.name} ({args.runtime}) in a child process: peak RSS "
              f"{rss:.2f} GiB, {big_rate:,.0f} rows/s (target: under 2 GiB)")
    print(f"BiLSTM / pipeline: {results[0][2] / pipe_rate:.1f}x (target: >= 10x)")


if __name__ == "__main__":
    main()
