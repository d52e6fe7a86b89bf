"""A tiny seq2seq student trained, saved, exported and decoded (greedy ONNX equals PyTorch)."""


import pytest
import torch

from distillery.errors import DistilleryError
from distillery.generation.config import (
    GenExportConfig,
)
from distillery.generation.data import encode
from tests.generation.helpers import (
    make_tok,
    multi30k_pairs,
    needs_data,
    student_cfg,
)


@needs_data
def test_tiny_student_learns_exports_and_onnx_greedy_matches(tmp_path, monkeypatch):
    from distillery.generation.export import (
        OnnxTranslator,
        export_seq2seq,
        greedy_agreement,
    )
    from distillery.generation.student import (
        allowed_ids,
        build_student,
        load_seq2seq,
        output_vocab,
    )
    from distillery.generation.train import train_seq2seq

    tok = make_tok()
    frame = multi30k_pairs(16)
    enc = encode(tok, frame)
    cfg = student_cfg(alpha=0.0)
    vocab = output_vocab(cfg, enc, len(tok))
    assert tok.sep_token_id in vocab and len(vocab) < 300
    model = build_student(cfg, tok, 64, vocab)
    assert torch.equal(allowed_ids(model), torch.from_numpy(vocab))
    for weight in (model.model.shared.weight, model.model.decoder.layers[0].encoder_attn.q_proj.weight):
        assert abs(float(weight.detach().std()) - 32 ** -0.5) < 0.01  # N(0, 1/d_model), not BART's 0.02
    before = train_seq2seq(build_student(cfg, tok, 64, vocab), student_cfg(alpha=0.0, epochs=0.25), enc, None)
    after = train_seq2seq(model, cfg, enc, None)
    assert after["final_nll"] < before["final_nll"]
    model.save_pretrained(tmp_path / "student")
    tok.save_pretrained(tmp_path / "student")
    model, tok = load_seq2seq(tmp_path / "student")
    assert torch.equal(allowed_ids(model), torch.from_numpy(vocab))  # the output vocabulary is in the weights
    out = model.generate(input_ids=torch.tensor([[*enc.src[0], tok.sep_token_id]]), max_new_tokens=8)
    assert set(out[0, 1:].tolist()) <= set(vocab.tolist()) | {tok.pad_token_id}
    from distillery.generation.export import next_token_logits
    from distillery.generation.student import encoder_inputs

    batch = encoder_inputs(enc, range(4))
    dec = torch.tensor([[tok.cls_token_id, *enc.tgt[i][:3]] for i in range(4)])
    with torch.inference_mode():
        full = model(**batch, decoder_input_ids=dec).logits[:, -1]
        hidden = model.get_encoder()(**batch).last_hidden_state
        assert torch.allclose(next_token_logits(model, dec, hidden, batch["attention_mask"]), full, atol=1e-4)
    result = export_seq2seq(GenExportConfig(opset=17, min_agreement=0.99), model, tok, enc, 12, tmp_path / "export")
    assert result["greedy_agreement_dev"] == 1.0
    assert greedy_agreement(model, OnnxTranslator(tmp_path / "export"), enc, 12) == 1.0
    import distillery.generation.export as export_mod

    monkeypatch.setattr(export_mod, "greedy_agreement", lambda *a, **k: 0.5)
    with pytest.raises(DistilleryError, match="ONNX greedy output equals PyTorch's on 50.00% of dev, under "
                                              "gen_export.min_agreement 99.00%; nothing was written"):
        export_seq2seq(GenExportConfig(opset=17, min_agreement=0.99), model, tok, enc, 12, tmp_path / "refused")
    assert not (tmp_path / "refused").exists() and not list(tmp_path.glob(".refused*"))
