"""A tiny seq2seq student trained through the one recipe, saved, exported and decoded (greedy ONNX equals
PyTorch)."""

import json

import pytest
import torch

from distillery.errors import DistilleryError
from distillery.config import ExportConfig
from distillery.generation.data import encode
from tests.generation.helpers import make_tok, needs_data, prepared_pairs, student_cfg, train_translator


@needs_data
def test_tiny_student_learns_exports_and_onnx_greedy_matches(tmp_path, monkeypatch):
    from distillery.generation.export import OnnxTranslator, export_seq2seq, greedy_agreement, next_token_logits
    from distillery.generation.data import encoder_inputs
    from distillery.students import load_student
    from distillery.students.seq2seq import allowed_ids

    tok = make_tok()
    frame, enc = prepared_pairs(tmp_path, tok)
    short = train_translator(tmp_path, student_cfg(epochs=1), "short")
    m = train_translator(tmp_path, student_cfg(epochs=6, losses={"token_nll": 0.5, "topk_kd": 0.5}))
    assert m["final_loss"] < short["final_loss"] and m["alpha"] == 0.5 and m["top_k"] == 2
    history = json.loads((tmp_path / "student" / "student.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, 7)) and "dev_bleu_greedy" in history[-1]
    student, _, info = load_student(tmp_path / "student")
    vocab = sorted({i for t in enc.tgt for i in t} | {tok.sep_token_id})
    assert allowed_ids(student.hf).tolist() == vocab == info["config"]["vocab"]  # the output vocabulary is in the weights
    for weight in (student.hf.model.shared.weight, student.hf.model.decoder.layers[0].encoder_attn.q_proj.weight):
        assert abs(float(weight.detach().std()) - 32 ** -0.5) < 0.02  # N(0, 1/d_model), not BART's 0.02
    model = student.hf  # what export and evaluate run: transformers' own classes
    out = model.generate(input_ids=torch.tensor([[*enc.src[0], tok.sep_token_id]]), max_new_tokens=8)
    assert set(out[0, 1:].tolist()) <= set(vocab) | {tok.pad_token_id}
    batch = encoder_inputs(enc, range(4))
    dec = torch.tensor([[tok.cls_token_id, *enc.tgt[i][:3]] for i in range(4)])
    with torch.inference_mode():
        full = model(**batch, decoder_input_ids=dec).logits[:, -1]
        hidden = model.get_encoder()(**batch).last_hidden_state
        assert torch.allclose(next_token_logits(model, dec, hidden, batch["attention_mask"]), full, atol=1e-4)
        sub = student(**batch, decoder_input_ids=dec).main[:, -1]  # (bs, |vocab|): the training logits
        assert torch.allclose(sub, full[:, vocab], atol=1e-4)
    result = export_seq2seq(ExportConfig(opset=17, min_agreement=0.99, quantize=False, license="apache-2.0"), model, tok, enc, 12,
                            tmp_path / "exports" / "student")
    assert result["greedy_agreement_dev"] == 1.0
    assert greedy_agreement(model, OnnxTranslator(tmp_path / "exports" / "student"), enc, 12) == 1.0
    # `distillery export` takes a seq2seq student by its task (the study's export stage)
    import subprocess
    import sys

    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"export": {"opset": 17, "min_agreement": 0.99,
                                                                     "quantize": False, "license": "apache-2.0"}}))
    r = subprocess.run([sys.executable, "-m", "stages.cli", "export", "--name", "student", "--students", str(tmp_path),
                        "--prepared", str(tmp_path / "prepared"), "--out", str(tmp_path / "cli-export"),
                        "--metrics", str(tmp_path / "cli-export.json")], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and "greedy output equal to PyTorch on 100.00% of dev" in r.stdout, r.stderr[-2000:]
    assert {"encoder.onnx", "decoder.onnx", "export.json", "generation.json"} <= {p.name for p in (tmp_path / "cli-export").iterdir()}
    assert json.loads((tmp_path / "cli-export.json").read_text())["greedy_agreement_dev"] == 1.0
    # the study's table: BLEU in both runtimes and latency by the one statistic (interleaved medians)
    from distillery.generation.config import GenEvaluateConfig
    from distillery.evaluate.seq2seq import evaluate_all

    from distillery.evaluate.seq2seq import teacher_gap

    teacher = {"base_model": "tiny", "masked_token_accuracy": 0.1,
               "dev_gap": teacher_gap(tmp_path / "teacher", encode(tok, frame.iloc[:6]), 7, bf16=False)}
    summary = evaluate_all(["student"], tmp_path, tmp_path / "exports", frame.iloc[:8], encode(tok, frame.iloc[:8]),
                           encode(tok, frame.iloc[:6]), tok, teacher, GenEvaluateConfig(beam=2, batch_size=8,
                                                                                      latency_sentences=4, threads=1),
                           12, tmp_path / "eval")
    row = summary["students"][0]
    assert row["alpha"] == 0.5 and row["top_k"] == 2 and all(row[f"{r}_ms_bs{b}"] > 0 for r in ("torch", "onnx")
                                                             for b in (1, 32))
    assert 0 <= row["student_forced_top1"] <= row["student_forced_top8"] <= 1
    table = (tmp_path / "eval" / "table.md").read_text()
    assert "| student | alpha | k | T |" in table and "dev next-token top-1 | top-8 |" in table
    assert f"at every one of the {teacher['dev_gap']['positions']} dev target positions" in table
    import distillery.generation.export as export_mod

    monkeypatch.setattr(export_mod, "greedy_agreement", lambda *a, **k: 0.5)
    with pytest.raises(DistilleryError, match="ONNX greedy output equals PyTorch's on 50.00% of dev, under "
                                              "export.min_agreement 99.00%; nothing was written"):
        export_seq2seq(ExportConfig(opset=17, min_agreement=0.99, quantize=False, license="apache-2.0"), model, tok, enc, 12, tmp_path / "refused")
    assert not (tmp_path / "refused").exists() and not list(tmp_path.glob(".refused*"))
