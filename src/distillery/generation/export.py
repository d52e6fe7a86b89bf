"""A deployable student: two ONNX graphs (encoder; decoder step without a cache, which returns the next-token
logits of the last position) and the numpy greedy loop that drives them, shipped with the tokenizer.

`OnnxTranslator.greedy` is the same loop as `greedy_torch`; the export is refused when their outputs differ on
more than `1 - min_agreement` of the dev sentences. Both project only the last position onto the vocabulary
(`next_token_logits`): projecting every position of the prefix at every step cost about 4x the export's time.
"""

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distillery.errors import DistilleryError
from distillery.generation.config import GenExportConfig
from distillery.generation.data import Encoded, encode, load_split, max_new_tokens
from distillery.generation.student import encoder_inputs
from distillery.io import atomic_dir, write_json

ENCODER, DECODER = "encoder.onnx", "decoder.onnx"


def session(path: str | Path, threads: int = 0):
    """A quiet onnxruntime CPU session; `threads` > 0 fixes its intra-op threads (for timing), no spinning."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class _Encoder(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.encoder = model.get_encoder()

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (bs, S, d)


def next_token_logits(model, decoder_input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
                      attention_mask: torch.Tensor) -> torch.Tensor:
    """(bs, V) logits of the token after `decoder_input_ids` (no cache): the decoder over the whole prefix, the
    vocabulary projection (and BART's final_logits_bias) at its last position only."""
    hidden = model.get_decoder()(input_ids=decoder_input_ids, encoder_hidden_states=encoder_hidden_states,
                                 encoder_attention_mask=attention_mask, use_cache=False).last_hidden_state
    return model.lm_head(hidden[:, -1]) + model.final_logits_bias[0]


class _DecoderStep(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, decoder_input_ids, encoder_hidden_states, attention_mask):
        return next_token_logits(self.model, decoder_input_ids, encoder_hidden_states, attention_mask)


@torch.inference_mode()
def greedy_torch(model, batch: dict[str, torch.Tensor], max_new: int) -> np.ndarray:
    """Greedy tokens (bs, <= max_new) with the loop the ONNX export runs: no cache, argmax per step, a sentence
    finished at [SEP] pads with [PAD]."""
    model.eval()
    c = model.config
    enc_out = model.get_encoder()(**batch).last_hidden_state
    out = torch.full((len(enc_out), 1), c.decoder_start_token_id, dtype=torch.long)
    done = torch.zeros(len(enc_out), dtype=torch.bool)
    for _ in range(max_new):
        nxt = next_token_logits(model, out, enc_out, batch["attention_mask"]).argmax(-1)
        nxt = nxt.masked_fill(done, c.pad_token_id)
        out = torch.cat([out, nxt[:, None]], dim=1)
        done |= nxt == c.eos_token_id
        if done.all():
            break
    return out[:, 1:].numpy()


def export_onnx(model, folder: Path, opset: int) -> None:
    model.eval()
    ex = {"input_ids": torch.tensor([[1000, 1001, 1002, model.config.eos_token_id]] * 2),
          "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    hidden = _Encoder(model)(**ex)
    dec = torch.tensor([[model.config.decoder_start_token_id, 1000, 1001]] * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Encoder(model), (ex["input_ids"], ex["attention_mask"]), str(folder / ENCODER),
                          input_names=["input_ids", "attention_mask"], output_names=["encoder_hidden_states"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "src"}, "attention_mask": {0: "batch", 1: "src"},
                                        "encoder_hidden_states": {0: "batch", 1: "src"}},
                          opset_version=opset, dynamo=False)
        torch.onnx.export(_DecoderStep(model), (dec, hidden, ex["attention_mask"]), str(folder / DECODER),
                          input_names=["decoder_input_ids", "encoder_hidden_states", "attention_mask"],
                          output_names=["logits"],
                          dynamic_axes={"decoder_input_ids": {0: "batch", 1: "tgt"},
                                        "encoder_hidden_states": {0: "batch", 1: "src"},
                                        "attention_mask": {0: "batch", 1: "src"}, "logits": {0: "batch"}},
                          opset_version=opset, dynamo=False)


class OnnxTranslator:
    """Greedy decoding with the two exported graphs (what a user deploys; needs only onnxruntime + numpy)."""

    def __init__(self, folder: str | Path, threads: int = 0) -> None:
        folder = Path(folder)
        for name in (ENCODER, DECODER, "generation.json"):
            if not (folder / name).is_file():
                raise DistilleryError(f"{folder / name}: missing; run `distillery gen-export` first")
        import json

        self.meta = json.loads((folder / "generation.json").read_text())
        self.encoder, self.decoder = session(folder / ENCODER, threads), session(folder / DECODER, threads)

    def greedy(self, input_ids: np.ndarray, attention_mask: np.ndarray, max_new: int) -> np.ndarray:
        m = self.meta
        hidden = self.encoder.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
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


def _trim(seq: np.ndarray, eos: int) -> tuple[int, ...]:
    seq = [int(x) for x in seq]
    return tuple(seq[:seq.index(eos) + 1] if eos in seq else seq)


def greedy_agreement(model, translator: OnnxTranslator, enc: Encoded, max_new: int, batch_size: int = 32) -> float:
    """Share of sentences whose greedy output (up to [SEP]) is the same from PyTorch and from ONNX Runtime."""
    same = 0
    eos = model.config.eos_token_id
    for s in range(0, len(enc.src), batch_size):
        batch = encoder_inputs(enc, range(s, min(s + batch_size, len(enc.src))))
        a = greedy_torch(model, batch, max_new)
        b = translator.greedy(batch["input_ids"].numpy(), batch["attention_mask"].numpy(), max_new)
        same += sum(_trim(x, eos) == _trim(y, eos) for x, y in zip(a, b))
    return same / len(enc.src)


def export_seq2seq(cfg: GenExportConfig, model, tokenizer, dev: Encoded, max_new: int, out_dir: Path) -> dict:
    """Write encoder.onnx, decoder.onnx, generation.json and the tokenizer to `out_dir`; check agreement."""
    t0 = time.perf_counter()
    with atomic_dir(out_dir, "gen-export") as tmp:
        export_onnx(model, tmp, cfg.opset)
        c = model.config
        write_json(tmp / "generation.json", {
            "decoder_start_token_id": c.decoder_start_token_id, "eos_token_id": c.eos_token_id,
            "pad_token_id": c.pad_token_id, "max_new_tokens": max_new,
            "how": "encoder.onnx(input_ids, attention_mask) on `source [SEP]`; then decoder.onnx(decoder_input_ids, "
                   "encoder_hidden_states, attention_mask) -> next-token logits, greedy until [SEP]"})
        tokenizer.save_pretrained(tmp)
        agreement = greedy_agreement(model, OnnxTranslator(tmp), dev, max_new)
        if agreement < cfg.min_agreement:
            raise DistilleryError(f"ONNX greedy output equals PyTorch's on {agreement:.2%} of dev, under "
                                  f"gen_export.min_agreement {cfg.min_agreement:.2%}; nothing was written")
        mb = sum(p.stat().st_size for p in tmp.glob("*.onnx")) / 2**20
    return {"greedy_agreement_dev": round(agreement, 4), "onnx_mb": round(mb, 1),
            "export_seconds": round(time.perf_counter() - t0, 1)}


def export_stage(cfg: GenExportConfig, student_dir: Path, prepared: Path, out_dir: Path, metrics: Path) -> dict:
    from distillery.generation.export import export_seq2seq
    from distillery.generation.student import load_seq2seq

    model, tok = load_seq2seq(student_dir)
    dev = encode(tok, load_split(prepared, "dev"))
    result = export_seq2seq(cfg, model, tok, dev, max_new_tokens(prepared), out_dir)
    write_json(metrics, result)
    return result

