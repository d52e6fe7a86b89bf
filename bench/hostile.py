"""Hostile input and faults, as a careless user meets them: runs each case through the `distillery`
command in a scratch folder and prints one table row per case (command, exit code, first line of
stderr, files left behind). Not a test (tests/test_faults.py asserts the same cases); a report.

    python bench/hostile.py            # about 2 minutes on 2 cores; prints a markdown table
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "data" / "glue" / "SST-2"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=cwd, capture_output=True, text=True, env=env)


def listing(root: Path, skip: set[str]) -> str:
    """Files under root that were not there before (scratch, half-written outputs)."""
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and str(p.relative_to(root)) not in skip)
    return ", ".join(found[:4]) + (f" (+{len(found) - 4})" if len(found) > 4 else "") if found else "none"


def write_params(root: Path) -> None:
    """The repository's params.yaml, cut down to the tiny teacher and 300 sentences, with the students the
    cases name (each stage reads its section; `--set` changes one value per case)."""
    import yaml

    doc = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    doc["prepare"].update(data_dir=str(SST2), max_train=300, max_dev=100)
    doc["teacher"].update(base_model="base", epochs=0, bf16=False)
    doc["soft_labels"].update(threads=1, features=[])
    bilstm = {"model": "bilstm", "losses": {"mse_logits": 1}, "epochs": 1, "transfer_set": "train"}
    doc["students"] = {"s": bilstm, "s1": {**bilstm, "max_seq_len": 16}, "s2": {**bilstm, "transfer_set": "augmented"},
                       "z": {**bilstm, "losses": {"mse_logits": 0}}}
    (root / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def setup(root: Path) -> dict:
    """A tiny teacher (hidden 32, the real tokenizer) fine-tuned on 300 SST-2 sentences, and a filled store."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from distillery.teacher.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=2)
    BertForSequenceClassification(cfg).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    write_params(root)
    for args in (["prepare", "--out", "prep", "--metrics", "m/prepare.json"],
                 ["teacher", "--prepared", "prep", "--out", "teacher", "--metrics", "m/teacher.json", "--live-dir", "m/live"],
                 ["soft-labels", "--teacher", "teacher", "--prepared", "prep", "--augmented", "", "--out", "logits",
                  "--store", "store", "--metrics", "m/sl.json", "--set", "checkpoint_every=100"]):
        r = run(args, root)
        assert r.returncode == 0, r.stderr
    return {"parts": sorted((root / "store").rglob("part-*.npz"))}


def cases(root: Path, ctx: dict):
    sl = ["soft-labels", "--teacher", "teacher", "--prepared", "prep", "--augmented", "", "--out", "logits2",
          "--store", "store", "--metrics", "m/sl2.json", "--set", "checkpoint_every=100"]
    inputs = ["--prepared", "prep", "--teacher", "teacher", "--logits", "logits", "--augmented", "prep"]

    def damage(how):
        def go():
            p = ctx["parts"][1]
            if how == "negated":
                with np.load(p) as z:
                    arrays = {k: z[k] for k in z.files}
                arrays["logits"] = -arrays["logits"]
                with open(p, "wb") as fh:
                    np.savez(fh, **arrays)
            else:
                p.write_bytes({"zero-byte": b"", "truncated": p.read_bytes()[:100], "garbage": b"\x00junk" * 40}[how])
        return go

    def tsv(name, data: bytes):
        def go():
            d = root / name
            d.mkdir(exist_ok=True)
            (d / "train.tsv").write_bytes(data)
            (d / "dev.tsv").write_bytes(b"sentence\tlabel\nfine\t1\n")
        return go

    def stale():
        (root / "models" / "students").mkdir(parents=True, exist_ok=True)
        d = root / "models" / "students" / ".s1.999999.kill.tmp"  # a killed writer's half-written student
        d.mkdir()
        (d / "student.pt").write_bytes(b"0" * 1000)

    def prep(folder):
        return ["prepare", "--set", f"data_dir={folder}", "--out", f"prep_{folder}", "--metrics", f"m/p_{folder}.json"]

    yield "1 name `.`", None, ["distill", "--name", ".", *inputs]
    yield "1 name ''", None, ["distill", "--name", "", *inputs]
    yield "1 name `../../../escaped`", None, ["distill", "--name", "../../../escaped", *inputs]
    yield "2 store part rewritten with negated logits", damage("negated"), sl
    yield "3 zero-byte store part", damage("zero-byte"), sl
    yield "3 truncated store part", damage("truncated"), sl
    yield "3 garbage store part", damage("garbage"), sl
    yield "4 CR inside a sentence, then teacher", tsv("cr", b"sentence\tlabel\ngood\rfilm\t1\nbad\t0\n"), prep("cr")
    yield "4 ... teacher on it", None, ["teacher", "--prepared", "prep_cr", "--out", "teacher_cr", "--metrics", "m/t_cr.json",
                                         "--live-dir", "m/lcr"]
    yield "5 all loss weights 0", None, ["distill", "--name", "z", *inputs]
    yield "invalid UTF-8 in a TSV", tsv("utf", b"sentence\tlabel\ngood\xff film\t1\n"), prep("utf")
    yield "CR-only line endings", tsv("mac", b"sentence\tlabel\rgood film\t1\rbad\t0\r"), prep("mac")
    yield "conflicting duplicate labels", tsv("dup", b"sentence\tlabel\nfine\t1\nfine\t0\nfine\t1\nbad\t0\n"), prep("dup")
    yield "teacher max_seq_len above the model's positions", None, \
        ["teacher", "--set", "max_seq_len=1024", "--prepared", "prep", "--out", "t2"]
    yield "student max_seq_len 0", None, ["distill", "--name", "s", *inputs, "--set", "max_seq_len=0"]
    yield "fractional epochs", None, ["distill", "--name", "s", "--set", "epochs=1.5"]
    yield "negative seed", None, ["distill", "--name", "s", "--set", "seed=-1"]
    yield "a setting that does not exist", None, ["distill", "--name", "s", "--set", "epoch=3"]
    yield "a student params.yaml does not name", None, ["distill", "--name", "nobody"]
    yield "negative weight decay", None, ["teacher", "--set", "weight_decay=-0.1"]
    yield "logging_steps 0", None, ["teacher", "--set", "logging_steps=0"]
    yield "evaluate batch size 0", None, ["evaluate", "--set", "batch_sizes=[0]"]
    yield "evaluate warmup -3", None, ["evaluate", "--set", "warmup=-3"]
    yield "soft-labels threads -1", None, ["soft-labels", "--set", "threads=-1"]
    yield "--set without a value", None, ["soft-labels", "--set", "threads"]
    yield "leftover of a killed distill, then a new run", stale, ["distill", "--name", "s1", *inputs,
                                                                  "--out", "models/students/s1",
                                                                  "--metrics", "m/s1.json", "--live-dir", "m/live_s1"]
    yield "evaluate with a hidden leftover folder", lambda: (root / "models/students/.b1.old").mkdir(), \
        ["evaluate", "--student", "s1", "--prepared", "prep", "--teacher", "teacher", "--set", "repeats=1",
         "--set", "warmup=0", "--out", "m/eval"]
    yield "augmented transfer set missing", None, ["distill", "--name", "s2", *inputs, "--live-dir", "m/live_s2",
                                                    "--metrics", "m/s2.json"]
    yield "bf16 store reused by an fp32 run", None, [*sl, "--set", "bf16=false"]


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ctx = setup(root)
        print("| case | command | exit | first line of stderr | files left (new) |\n|---|---|---|---|---|")
        for case, before, args in cases(root, ctx):
            if before is not None:
                before()
            existing = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
            r = run(args, root)
            lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("[") and "%|" not in ln]
            first = lines[0] if lines else "(none)"
            cmd = "distillery " + " ".join(a if a else "''" for a in args[:4]) + (" ..." if len(args) > 4 else "")
            esc = lambda t: t.replace("|", "\\|").replace(str(root) + "/", "")
            print(f"| {case} | `{esc(cmd)}` | {r.returncode} | {esc(first)[:160]} | {esc(listing(root, existing))} |")
            shutil.rmtree(root / "logits2", ignore_errors=True)


if __name__ == "__main__":
    main()
