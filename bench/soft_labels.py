"""Teacher labelling throughput: the logit store (cold, warm) vs a transformers pipeline.

    python bench/soft_labels.py --texts 4000 [--teacher models/teacher | --base all-MiniLM-L6-v2] [--threads 2]

Runs on a fresh clone: without a fine-tuned teacher (models/teacher, after `dvc repro teacher`) it times
the base checkpoint with an untrained two-label head, which costs the same per text (labelling speed
does not depend on the head's weights). Its first line says which teacher it timed.

Labels N SST-2 training sentences with the teacher three ways in one run: (1) the store, cold
(length-bucketed, padding-free batches, inference_mode, bf16 where the CPU supports it); (2)
`pipeline("text-classification")` at batch 32; (3) the store again, warm (must run no teacher
forward pass). Prints texts/s for each, achieved GFLOP/s next to fp32 and bf16 matmul peaks
measured in the same run, bf16-vs-fp32 agreement on dev, and on its last line
`speedup_vs_pipeline=<x>`.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distillery.config import PrepareConfig
from distillery.data.prepare import load_prepared, prepare
import distillery.logits.label as store_mod
from distillery.hardware import bf16_supported
from distillery.logits.fingerprint import teacher_fingerprint
from distillery.logits.label import label_texts, run_teacher
from distillery.logits.store import LogitStore

REPO = Path(__file__).resolve().parents[1]


def conf(cls, **overrides):
    """A stage config as its command builds it: its section of the repository's params.yaml, then overrides."""
    import yaml

    from distillery.config import from_section

    section = {"PrepareConfig": "prepare", "AugmentConfig": "augment"}[cls.__name__]
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text(encoding="utf-8"))
    return from_section(cls, section, {**params[section], **overrides})


def matmul_peak(dtype: torch.dtype, n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def teacher_flops(model, n_tokens: np.ndarray) -> float:
    """Forward FLOPs: 2 x non-embedding weights per token + attention's 4 * L^2 * H per layer."""
    cfg = model.config
    emb = sum(p.numel() for p in model.get_input_embeddings().parameters())
    dense = sum(p.numel() for p in model.parameters()) - emb
    attn = 4 * cfg.hidden_size * cfg.num_hidden_layers * float((n_tokens.astype(np.float64) ** 2).sum())
    return 2 * dense * float(n_tokens.sum()) + attn


class CountCalls:
    def __init__(self, model) -> None:
        self.n = 0
        model.register_forward_hook(lambda *a: self._inc())

    def _inc(self) -> None:
        self.n += 1


def timed_teacher(args, scratch: Path):
    """(model, tokenizer, folder, description): the fine-tuned teacher if there is one, else the base
    checkpoint with an untrained two-label head (saved to `scratch`, so that it has a fingerprint)."""
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from distillery.teacher.models import resolve_model
    from distillery.teacher.train import load_teacher

    if Path(args.teacher, "config.json").is_file():
        model, tok, info = load_teacher(args.teacher)
        return model, tok, Path(args.teacher), f"{args.teacher} (fine-tuned from {info.get('base_model', '?')})"
    path = resolve_model(args.base)
    transformers.logging.set_verbosity_error()  # the report that the new head is untrained: known, and said below
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    tok = AutoTokenizer.from_pretrained(path)
    model.save_pretrained(scratch / "teacher")
    tok.save_pretrained(scratch / "teacher")
    n = sum(p.numel() for p in model.parameters()) / 1e6
    return model, tok, scratch / "teacher", (f"{args.base} with an untrained 2-label head ({n:.1f}M parameters; "
                                              f"no {args.teacher}: run `dvc repro teacher` to time the fine-tuned one)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=4000)
    ap.add_argument("--teacher", default=str(REPO / "models/teacher"),
                    help="a fine-tuned teacher folder; if it is missing, --base with an untrained head is timed")
    ap.add_argument("--base", default="all-MiniLM-L6-v2", help="base checkpoint timed when there is no --teacher")
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/glue/SST-2"))
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--bf16-check", type=int, default=100, help="dev texts for the bf16-vs-fp32 comparison")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import pipeline

    with tempfile.TemporaryDirectory() as tmp:
        model, tok, teacher_dir, which = timed_teacher(args, Path(tmp))
        print(f"teacher timed: {which}")
        prepare(conf(PrepareConfig, task="sst2", data_dir=args.data, max_train=args.texts, max_dev=args.bf16_check),
                Path(tmp) / "prep")
        prep = load_prepared(Path(tmp) / "prep")
        train, dev = prep.train, prep.dev
        ids, texts = train["id"].tolist(), train["text_a"].tolist()
        n_tokens = np.array([len(x) for x in tok(texts, truncation=True, max_length=64)["input_ids"]])
        flops = teacher_flops(model, n_tokens)
        fp = teacher_fingerprint(teacher_dir, 64)
        calls = CountCalls(model)

        store = LogitStore(Path(tmp) / "store", fp, model.config.num_labels)
        t0 = time.perf_counter()
        label_texts(model, tok, ids, texts, None, store, 64, args.batch_tokens, bf16=True)
        cold = time.perf_counter() - t0

        pipe = pipeline("text-classification", model=model, tokenizer=tok, device=-1, top_k=None,
                        function_to_apply="none", truncation=True, max_length=64)
        t0 = time.perf_counter()
        pipe_out = pipe(texts, batch_size=32)
        piped = time.perf_counter() - t0

        calls.n = 0
        store2 = LogitStore(Path(tmp) / "store", fp, model.config.num_labels)
        t0 = time.perf_counter()
        label_texts(model, tok, ids, texts, None, store2, 64, args.batch_tokens, bf16=True)
        warm = time.perf_counter() - t0
        warm_calls = calls.n

        keys = np.array([int(i, 16) for i in ids], dtype=np.uint64)
        ours = store2.get(keys).astype(np.float32)
        label_of = {n: i for i, n in model.config.id2label.items()}
        theirs = np.array([[d["score"] for d in sorted(o, key=lambda d: label_of[d["label"]])] for o in pipe_out])
        agree_pipe = float((ours.argmax(-1) == theirs.argmax(-1)).mean())

        dev_texts = dev["text_a"].tolist()
        fp32 = run_teacher(model, tok, dev_texts, None, 64, args.batch_tokens, bf16=False)
        store_mod.bf16_supported = lambda *a: True  # forced, to measure bf16 even where this CPU runs it slowly
        bf = run_teacher(model, tok, dev_texts, None, 64, args.batch_tokens, bf16=True)

    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    n = len(texts)
    print(f"texts: {n} SST-2 training sentences, {int(n_tokens.sum())} tokens, threads: {args.threads}, "
          f"bf16 used by the store: {bf16_supported()}")
    print(f"store (cold):        {n / cold:8.1f} texts/s  ({cold:.1f} s, {flops / cold / 1e9:.1f} GFLOP/s effective: full-forward FLOPs / time)")
    print(f"pipeline (batch 32): {n / piped:8.1f} texts/s  ({piped:.1f} s, {flops / piped / 1e9:.1f} GFLOP/s)")
    print(f"store (warm):        {n / warm:8.1f} texts/s  ({warm:.2f} s, teacher forward passes: {warm_calls})")
    print(f"matmul peak (1024^3): fp32 {peak32:.1f} GFLOP/s, bf16 {peak16:.1f} GFLOP/s")
    print(f"store vs pipeline argmax agreement: {agree_pipe:.4f} (fp16 storage)")
    print(f"bf16 vs fp32 on {len(dev_texts)} dev texts: argmax agreement {float((bf.argmax(-1) == fp32.argmax(-1)).mean()):.4f}, "
          f"max |logit diff| {float(np.abs(bf - fp32).max()):.4f}")
    print(f"speedup_vs_pipeline={piped / cold:.2f}")


if __name__ == "__main__":
    main()
