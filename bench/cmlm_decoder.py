"""The C-MLM student's ONNX decoder with and without a key-value cache, in one run (issue 32).

    python bench/cmlm_decoder.py [--steps 600] [--sentences 256] [--repeats 5] [--threads 2]

Trains a student of the study's size (3 + 3 layers, width 128, the study's `distill` settings, likelihood
only) through the one recipe for about `--steps` batches of 64 (whole epochs of the study's 10,000 Multi30k pairs), exports it (encoder.onnx + decoder.onnx with the cache, as
`distillery export` ships it) and, beside it, the decoder without a cache that the export shipped before (every step
re-reads the whole prefix). Then greedy-decodes the first `--sentences` sentences of test_2016_flickr with
both at batch 1 and 32, the two taking turns on each batch (`evaluate/latency.py`, the one statistic), and
prints ms per sentence, the speed-up, and how many outputs are the same. About 10 minutes on 2 cores.
"""

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

from distillery.config import merge_student
from distillery.distill.recipe import Paths, distill
from distillery.evaluate.latency import interleaved_median_ms
from distillery.export.runtime import session
from distillery.config import ExportConfig
from distillery.generation.config import GenPrepareConfig
from distillery.generation.data import encode, load_split, load_tokenizer, prepare_pairs
from distillery.generation.export import OnnxTranslator, export_seq2seq, next_token_logits
from distillery.generation.data import encoder_inputs
from distillery.students import load_student


class UncachedStep(torch.nn.Module):
    """The decoder without a cache (the whole prefix at every step): what decoder.onnx was before it had one."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, decoder_input_ids, encoder_hidden_states, attention_mask):
        return next_token_logits(self.model, decoder_input_ids, encoder_hidden_states, attention_mask)


def export_uncached_decoder(model, path: Path, opset: int) -> None:
    """The decoder step without a cache (decoder_input_ids, encoder_hidden_states, attention_mask -> logits):
    what decoder.onnx was before it had one."""
    model.eval()
    ex = {"input_ids": torch.tensor([[1000, 1001, 1002, model.config.eos_token_id]] * 2),
          "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    hidden = model.get_encoder()(**ex).last_hidden_state
    dec = torch.tensor([[model.config.decoder_start_token_id, 1000, 1001]] * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(UncachedStep(model), (dec, hidden, ex["attention_mask"]), str(path),
                          input_names=["decoder_input_ids", "encoder_hidden_states", "attention_mask"],
                          output_names=["logits"],
                          dynamic_axes={"decoder_input_ids": {0: "batch", 1: "tgt"},
                                        "encoder_hidden_states": {0: "batch", 1: "src"},
                                        "attention_mask": {0: "batch", 1: "src"}, "logits": {0: "batch"}},
                          opset_version=opset, dynamo=False)


REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "studies" / "cmlm"


class Uncached:
    """Greedy decoding as the export did before the cache: the decoder over the whole prefix at every step."""

    def __init__(self, cached: OnnxTranslator, decoder: Path, threads: int) -> None:
        self.encoder, self.meta = cached.encoder, cached.meta
        self.decoder = session(decoder, threads)

    def greedy(self, input_ids: np.ndarray, attention_mask: np.ndarray, max_new: int) -> np.ndarray:
        m = self.meta
        hidden = self.encoder.run(["encoder_hidden_states"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]
        out = np.full((len(input_ids), 1), m["decoder_start_token_id"], dtype=np.int64)
        done = np.zeros(len(input_ids), dtype=bool)
        for _ in range(max_new):
            logits = self.decoder.run(None, {"decoder_input_ids": out, "encoder_hidden_states": hidden,
                                             "attention_mask": attention_mask})[0]
            nxt = np.where(done, m["pad_token_id"], logits.argmax(-1))
            out = np.concatenate([out, nxt[:, None]], axis=1)
            done |= nxt == m["eos_token_id"]
            if done.all():
                break
        return out[:, 1:]


def trim(seq, eos: int) -> tuple[int, ...]:
    seq = [int(x) for x in seq]
    return tuple(seq[:seq.index(eos) + 1] if eos in seq else seq)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--sentences", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5, help="timed passes over the sentences (after one warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = yaml.safe_load((STUDY / "params.yaml").read_text())
    prep = {**params["prepare"], "data_dir": str((STUDY / params["prepare"]["data_dir"]).resolve()),
            "max_eval": args.sentences}
    work = Path(tempfile.mkdtemp(prefix="cmlm-decoder-"))
    tok = load_tokenizer(prep["tokenizer"])
    prepare_pairs(GenPrepareConfig(**prep), tok, work / "prepared")
    test = encode(tok, load_split(work / "prepared", "test"))
    distill_params = params["distill"]
    bs, n_train = distill_params["common"]["batch_size"], len(load_split(work / "prepared", "train"))
    epochs = max(1, round(args.steps * bs / n_train))  # whole epochs of the study's pairs, about --steps steps
    common = {**distill_params["common"], "epochs": epochs,
              "max_examples": min(args.steps * bs, n_train) if epochs == 1 else 0}
    cfg = merge_student("bench", {"model": "seq2seq", "losses": {"token_nll": 1.0}}, {**distill_params, "common": common},
                        "seq2seq")
    max_new = prep["max_tgt_len"] + 1
    t0 = time.perf_counter()
    m = distill(cfg, Paths(work / "prepared", None, work / "none", None, work / "student", work / "student.json",
                           work / "live"))
    print(f"trained {m['steps']} steps ({epochs} epochs) in {time.perf_counter() - t0:.0f} s; dev greedy BLEU "
          f"{m['dev_bleu_greedy']}")
    student, tok, _ = load_student(work / "student")
    model = student.hf
    export_seq2seq(ExportConfig(opset=17, min_agreement=0.99, quantize=False, license="apache-2.0"), model, tok, test, max_new, work / "export")
    export_uncached_decoder(model, work / "uncached.onnx", 17)
    cached = OnnxTranslator(work / "export", threads=args.threads)
    runners = {"without cache": Uncached(cached, work / "uncached.onnx", args.threads), "with cache": cached}
    n = len(test.src)
    eos = model.config.eos_token_id
    outs = {}
    for name, r in runners.items():
        outs[name] = []
        for s in range(0, n, 32):
            b = encoder_inputs(test, range(s, min(s + 32, n)))
            outs[name] += [trim(x, eos) for x in r.greedy(b["input_ids"].numpy(), b["attention_mask"].numpy(), max_new)]
    same = sum(a == b for a, b in zip(*outs.values())) / n
    lengths = [len(x) for x in outs["with cache"]]
    print(f"{n} test sentences; outputs {statistics.mean(lengths):.1f} tokens on average; "
          f"the same greedy output with and without the cache: {same:.2%}")
    print("| batch | without cache (ms/sentence) | with cache (ms/sentence) | speed-up |")
    print("|---|---|---|---|")
    for bs in (1, 32):
        batches = [encoder_inputs(test, range(s, s + bs)) for s in range(0, n - bs + 1, bs)]
        batches = [(b["input_ids"].numpy(), b["attention_mask"].numpy()) for b in batches]
        calls = [lambda b, r=r: r.greedy(b[0], b[1], max_new) for r in runners.values()]
        ms = interleaved_median_ms(calls, lambda i, k: batches[i % len(batches)], len(batches) * args.repeats,
                                   len(batches), desc=f"batch {bs}")
        per = [m / bs for m in ms]
        print(f"| {bs} | {per[0]:.2f} | {per[1]:.2f} | {per[0] / per[1]:.2f}x |")


if __name__ == "__main__":
    main()
