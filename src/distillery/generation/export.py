"""A deployable student: two ONNX graphs and the numpy greedy loop that drives them, shipped with the tokenizer.

- `encoder.onnx`: `src [SEP]` -> the encoder's states, and every decoder layer's cross-attention keys and
  values (computed once per sentence, not once per step);
- `decoder.onnx`: one decoding step with a key-value cache: the last token, its position, the cross keys and
  values and the self-attention keys and values of the tokens before it -> the next token's logits and the
  cache grown by one position. Each step costs one position's work, where a decoder without a cache re-reads
  the whole prefix (`bench/cmlm_decoder.py` exports such a decoder and measures both).

`OnnxTranslator.greedy` decodes as `greedy_torch` does (transformers' own decoder, no cache); the export is
refused when their outputs differ on more than `1 - min_agreement` of the dev sentences. Both project only the
last position onto the vocabulary (`next_token_logits`).
"""

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distillery.errors import DistilleryError
from distillery.export.runtime import session
from distillery.generation.data import Encoded, check_fits, encode, encoder_inputs, load_split, max_new_tokens
from distillery.io import atomic_dir, write_json

ENCODER, DECODER = "encoder.onnx", "decoder.onnx"
MASKED = torch.finfo(torch.float32).min  # additive attention bias of padded source positions


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    bs, t, d = x.shape
    return x.view(bs, t, heads, d // heads).transpose(1, 2)  # (bs, H, t, d/H)


def _attend(attn, q_in: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None):
    """BART's attention (`attn`'s projections) of one query position over keys/values (bs, H, t, d/H)."""
    q = _split_heads(attn.q_proj(q_in), attn.num_heads)  # (bs, H, 1, d/H)
    scores = q @ k.transpose(-1, -2) * attn.scaling  # (bs, H, 1, t)
    if bias is not None:
        scores = scores + bias
    out = scores.softmax(-1) @ v  # (bs, H, 1, d/H)
    return attn.out_proj(out.transpose(1, 2).reshape(q_in.shape))


class EncoderWithCrossKV(nn.Module):
    """`src [SEP]` -> encoder states and each decoder layer's cross-attention keys and values."""

    def __init__(self, model) -> None:
        super().__init__()
        self.encoder, self.layers = model.get_encoder(), model.get_decoder().layers

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (bs, S, d)
        kv = []
        for layer in self.layers:
            a = layer.encoder_attn
            kv += [_split_heads(a.k_proj(hidden), a.num_heads), _split_heads(a.v_proj(hidden), a.num_heads)]
        return (hidden, *kv)


class CachedStep(nn.Module):
    """One decoding step of BART's decoder (post-layer-norm blocks) with a key-value cache, written out from the
    model's own modules so that the cache is plain tensors in and out of the graph."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.decoder = model.get_decoder()

    def forward(self, token, position, attention_mask, *kv):
        """token (bs, 1), position (1,), attention_mask (bs, S), then per layer self K, V (bs, H, t, d/H) and
        cross K, V (bs, H, S, d/H) -> logits (bs, V) and per layer self K, V (bs, H, t + 1, d/H)."""
        dec = self.decoder
        x = dec.embed_tokens(token) + dec.embed_positions.weight[position + dec.embed_positions.offset]  # (bs, 1, d)
        x = dec.layernorm_embedding(x)
        bias = ((1 - attention_mask[:, None, None, :].to(x.dtype)) * MASKED)  # (bs, 1, 1, S)
        present = []
        n = len(dec.layers)
        for i, layer in enumerate(dec.layers):
            sa = layer.self_attn
            k = torch.cat([kv[2 * i], _split_heads(sa.k_proj(x), sa.num_heads)], dim=2)
            v = torch.cat([kv[2 * i + 1], _split_heads(sa.v_proj(x), sa.num_heads)], dim=2)
            present += [k, v]
            x = layer.self_attn_layer_norm(x + _attend(sa, x, k, v))
            ck, cv = kv[2 * n + 2 * i], kv[2 * n + 2 * i + 1]
            x = layer.encoder_attn_layer_norm(x + _attend(layer.encoder_attn, x, ck, cv, bias))
            x = layer.final_layer_norm(x + layer.fc2(layer.activation_fn(layer.fc1(x))))
        logits = self.model.lm_head(x[:, 0]) + self.model.final_logits_bias[0]  # (bs, V)
        return (logits, *present)


def next_token_logits(model, decoder_input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
                      attention_mask: torch.Tensor) -> torch.Tensor:
    """(bs, V) logits of the token after `decoder_input_ids` (no cache): the decoder over the whole prefix, the
    vocabulary projection (and BART's final_logits_bias) at its last position only."""
    hidden = model.get_decoder()(input_ids=decoder_input_ids, encoder_hidden_states=encoder_hidden_states,
                                 encoder_attention_mask=attention_mask, use_cache=False).last_hidden_state
    return model.lm_head(hidden[:, -1]) + model.final_logits_bias[0]


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


def kv_names(n_layers: int, kind: str, suffix: str = "") -> list[str]:
    return [f"{kind}_{kv}_{i}{suffix}" for i in range(n_layers) for kv in ("key", "value")]


def export_onnx(model, folder: Path, opset: int) -> None:
    """encoder.onnx and decoder.onnx (with a key-value cache) into `folder`."""
    model.eval()
    n = model.config.decoder_layers
    ex = {"input_ids": torch.tensor([[1000, 1001, 1002, model.config.eos_token_id]] * 2),
          "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    enc = EncoderWithCrossKV(model)(**ex)
    cross = kv_names(n, "cross")
    past = [torch.zeros(2, model.config.decoder_attention_heads, 3, model.config.d_model //
                        model.config.decoder_attention_heads) for _ in range(2 * n)]
    step = (torch.tensor([[1000]] * 2), torch.tensor([3]), ex["attention_mask"], *past, *enc[1:])
    src = {0: "batch", 2: "src"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(EncoderWithCrossKV(model), (ex["input_ids"], ex["attention_mask"]), str(folder / ENCODER),
                          input_names=["input_ids", "attention_mask"], output_names=["encoder_hidden_states", *cross],
                          dynamic_axes={"input_ids": {0: "batch", 1: "src"}, "attention_mask": {0: "batch", 1: "src"},
                                        "encoder_hidden_states": {0: "batch", 1: "src"}, **{c: src for c in cross}},
                          opset_version=opset, dynamo=False)
        names = ["token", "position", "attention_mask", *kv_names(n, "past"), *cross]
        torch.onnx.export(CachedStep(model), step, str(folder / DECODER), input_names=names,
                          output_names=["logits", *kv_names(n, "present")],
                          dynamic_axes={"token": {0: "batch"}, "attention_mask": {0: "batch", 1: "src"},
                                        **{c: src for c in cross}, "logits": {0: "batch"},
                                        **{p: {0: "batch", 2: "past"} for p in kv_names(n, "past")},
                                        **{p: {0: "batch", 2: "past1"} for p in kv_names(n, "present")}},
                          opset_version=opset, dynamo=False)


class OnnxTranslator:
    """Greedy decoding with the two exported graphs (what a user deploys; needs only onnxruntime + numpy)."""

    def __init__(self, folder: str | Path, threads: int = 0) -> None:
        folder = Path(folder)
        for name in (ENCODER, DECODER, "generation.json"):
            if not (folder / name).is_file():
                raise DistilleryError(f"{folder / name}: missing; run `distillery export` first")
        import json

        self.meta = json.loads((folder / "generation.json").read_text())
        self.encoder, self.decoder = session(folder / ENCODER, threads), session(folder / DECODER, threads)

    def greedy(self, input_ids: np.ndarray, attention_mask: np.ndarray, max_new: int) -> np.ndarray:
        """Greedy tokens (bs, <= max_new); a sentence finished at [SEP] pads with [PAD]."""
        m = self.meta
        enc = self.encoder.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
        n = (len(enc) - 1) // 2
        feed = {"attention_mask": attention_mask, **dict(zip(kv_names(n, "cross"), enc[1:]))}
        heads, dh = enc[1].shape[1], enc[1].shape[3]
        past = [np.zeros((len(input_ids), heads, 0, dh), dtype=np.float32) for _ in range(2 * n)]
        token = np.full((len(input_ids), 1), m["decoder_start_token_id"], dtype=np.int64)
        out, done = [], np.zeros(len(input_ids), dtype=bool)
        for t in range(max_new):
            logits, *past = self.decoder.run(None, {"token": token, "position": np.array([t], dtype=np.int64), **feed,
                                                    **dict(zip(kv_names(n, "past"), past))})
            nxt = np.where(done, m["pad_token_id"], logits.argmax(-1))
            out.append(nxt)
            token = nxt[:, None]
            done |= nxt == m["eos_token_id"]
            if done.all():
                break
        return np.stack(out, axis=1) if out else np.zeros((len(input_ids), 0), dtype=np.int64)


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


def export_seq2seq(cfg, model, tokenizer, dev: Encoded, max_new: int, out_dir: Path) -> dict:
    """Write encoder.onnx, decoder.onnx, generation.json, export.json and the tokenizer to `out_dir`; check
    agreement (`cfg`: the export section, its opset and min_agreement)."""
    t0 = time.perf_counter()
    with atomic_dir(out_dir, "export") as tmp:
        export_onnx(model, tmp, cfg.opset)
        c = model.config
        write_json(tmp / "generation.json", {
            "decoder_start_token_id": c.decoder_start_token_id, "eos_token_id": c.eos_token_id,
            "pad_token_id": c.pad_token_id, "max_new_tokens": max_new,
            "how": "encoder.onnx(input_ids, attention_mask) on `source [SEP]` -> encoder_hidden_states, cross_key_i, "
                   "cross_value_i; then per step decoder.onnx(token, position, attention_mask, past_key_i, "
                   "past_value_i, cross_key_i, cross_value_i) -> logits, present_key_i, present_value_i (the cache "
                   "starts empty: past length 0), greedy until [SEP]"})
        tokenizer.save_pretrained(tmp)
        agreement = greedy_agreement(model, OnnxTranslator(tmp), dev, max_new)
        if agreement < cfg.min_agreement:
            raise DistilleryError(f"ONNX greedy output equals PyTorch's on {agreement:.2%} of dev, under "
                                  f"export.min_agreement {cfg.min_agreement:.2%}; nothing was written")
        mb = sum(p.stat().st_size for p in tmp.glob("*.onnx")) / 2**20
        result = {"greedy_agreement_dev": round(agreement, 4), "onnx_mb": round(mb, 1),
                  "export_seconds": round(time.perf_counter() - t0, 1)}
        write_json(tmp / "export.json", {"opset": cfg.opset, **result})
    return result


def export_stage(cfg, student_dir: Path, prepared: Path, out_dir: Path, teacher: Path | None = None,
                 augmented: Path | None = None) -> dict:
    """`distillery export` of a seq2seq student: its dev set checks the export (no teacher or transfer set)."""
    from distillery.students import load_student

    student, tok, info = load_student(student_dir)
    check_fits(int(info["config"]["max_positions"]), f"student {info.get('name', student_dir)}", prepared, tok, ("dev",))
    return export_seq2seq(cfg, student.hf, tok, encode(tok, load_split(prepared, "dev")), max_new_tokens(prepared), out_dir)
