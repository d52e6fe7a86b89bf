"""The ONNX decoder's key-value cache against transformers' decoder, step by step."""

import tempfile
from pathlib import Path

import numpy as np
import torch

from distillery.generation.data import encode
from tests.generation.helpers import (
    make_tok,
    multi30k_pairs,
    needs_data,
    tiny_translator,
)


@needs_data
def test_cached_decoder_step_gives_the_uncached_logits_at_every_step():
    """decoder.onnx's step (key-value cache, written out from BART's modules) equals transformers' decoder over
    the whole prefix, step by step, on padded real sources; and so does its ONNX graph."""
    from distillery.generation.export import (
        CachedStep,
        EncoderWithCrossKV,
        kv_names,
        export_onnx,
        next_token_logits,
    )
    from distillery.export.runtime import session
    from distillery.generation.data import encoder_inputs

    tok = make_tok()
    enc = encode(tok, multi30k_pairs(6))
    model = tiny_translator(tok).hf.eval()
    batch = encoder_inputs(enc, range(6))
    assert (batch["attention_mask"] == 0).any()  # sources of different lengths: padding is masked
    n, bs = model.config.decoder_layers, 6
    with torch.inference_mode():
        hidden, *cross = EncoderWithCrossKV(model)(**batch)
        heads, dh = cross[0].shape[1], cross[0].shape[3]
        past = [torch.zeros(bs, heads, 0, dh) for _ in range(2 * n)]
        prefix = torch.full((bs, 1), tok.cls_token_id)
        for t in range(5):
            logits, *past = CachedStep(model)(prefix[:, -1:], torch.tensor([t]), batch["attention_mask"], *past, *cross)
            ref = next_token_logits(model, prefix, hidden, batch["attention_mask"])
            assert torch.allclose(logits, ref, atol=1e-4), (t, (logits - ref).abs().max())
            assert past[0].shape == (bs, heads, t + 1, dh)  # (bs, H, t + 1, d/H): the cache grows by one
            prefix = torch.cat([prefix, ref.argmax(-1)[:, None]], dim=1)
    folder = Path(tempfile.mkdtemp())
    export_onnx(model, folder, 17)
    e, d = session(folder / "encoder.onnx"), session(folder / "decoder.onnx")
    outs = e.run(None, {k: v.numpy() for k, v in batch.items()})
    feed = {"attention_mask": batch["attention_mask"].numpy(), **dict(zip(kv_names(n, "cross"), outs[1:]))}
    past = [np.zeros((bs, heads, 0, dh), dtype=np.float32) for _ in range(2 * n)]
    for t in range(3):
        logits, *past = d.run(None, {"token": prefix[:, t:t + 1].numpy(), "position": np.array([t]), **feed,
                                     **dict(zip(kv_names(n, "past"), past))})
        with torch.inference_mode():
            ref = next_token_logits(model, prefix[:, :t + 1], hidden, batch["attention_mask"]).numpy()
        assert np.abs(logits - ref).max() < 1e-4
