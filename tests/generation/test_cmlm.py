"""The C-MLM study's parts: KD loss golden values, strided masks, input validation, the top-k store and artifact,
a tiny student trained, exported and decoded. Tiny models (hidden 32) from configs; real Multi30k samples."""

import tempfile
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from distillery.errors import DistilleryError
from distillery.generation.config import (
    GenExportConfig,
    GenPrepareConfig,
    Seq2SeqConfig,
)
from distillery.generation.data import encode, read_parallel
from distillery.generation.losses import cmlm_loss, label_smoothed_nll, topk_kd
from distillery.generation.masks import strided_masks, training_mask

REPO = Path(__file__).resolve().parents[2]
MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
needs_data = pytest.mark.skipif(not MULTI30K.is_dir(), reason="needs ../shared/data/multi30k")


# --- the loss: hand-computed values --------------------------------------------------------------------------
# Two target positions and a padded third; vocabulary of 4; T = 2.
#   position 0: student logits [1, 2, 0, -1]; teacher top-2 logits [4, 2] at ids [1, 0]
#     p_T = softmax([4, 2] / 2) = [e^2, e^1] / (e^2 + e^1);  KD_0 = -(p_T,0 log p_S(1) + p_T,1 log p_S(0))
#   position 1: student logits [0.5, -0.5, 1.5, 0]; teacher [3, 1] at ids [2, -1] (-1: outside the student's
#     output vocabulary) -> renormalised over id 2 alone: KD_1 = -log p_S(2)
#   position 2: padding (label -100): its teacher values are garbage and must add nothing
# KD = (KD_0 + KD_1) / 2 = 0.6275688 (computed with the math module, outside torch).
# Likelihood with label smoothing 0.1, labels [1, 2]: per position 0.9 * -log p_S(y) + 0.1 * mean_v -log p_S(v);
# mean = 0.6243480. alpha 0.5: 0.5 * 0.6243480 + 0.5 * 0.6275688 = 0.6259584.

def _case():
    logits = torch.tensor([[[1.0, 2.0, 0.0, -1.0], [0.5, -0.5, 1.5, 0.0], [9.0, -9.0, 9.0, -9.0]]])  # (1, 3, 4)
    values = torch.tensor([[[4.0, 2.0], [3.0, 1.0], [100.0, -100.0]]])  # (1, 3, 2)
    ids = torch.tensor([[[1, 0], [2, -1], [3, 3]]])
    labels = torch.tensor([[1, 2, -100]])
    return logits, values, ids, labels


def test_topk_kd_against_hand_computed_value():
    logits, values, ids, labels = _case()
    assert float(topk_kd(logits, values, ids, labels, temperature=2.0)) == pytest.approx(0.6275688, abs=1e-6)


def test_topk_kd_temperature_and_padding():
    logits, values, ids, labels = _case()
    # T -> large: the teacher is uniform over its (kept) top-k
    uniform = -(torch.log_softmax(logits[0, 0], -1)[[1, 0]].mean() + torch.log_softmax(logits[0, 1], -1)[2]) / 2
    assert float(topk_kd(logits, values, ids, labels, temperature=1e6)) == pytest.approx(float(uniform), abs=1e-5)
    # the padded position changes nothing, whatever it holds
    values2 = values.clone()
    values2[0, 2] = torch.tensor([-5.0, 50.0])
    assert float(topk_kd(logits, values2, ids, labels, 2.0)) == float(topk_kd(logits, values, ids, labels, 2.0))


def test_label_smoothing_and_mixture_golden():
    logits, values, ids, labels = _case()
    assert float(label_smoothed_nll(logits, labels, 0.1)) == pytest.approx(0.6243480, abs=1e-6)
    loss, parts = cmlm_loss(logits, labels, values, ids, alpha=0.5, temperature=2.0, smoothing=0.1)
    assert float(loss) == pytest.approx(0.6259584, abs=1e-6)
    assert set(parts) == {"nll", "kd"}
    only, parts = cmlm_loss(logits, labels, None, None, alpha=0.0, temperature=2.0, smoothing=0.1)
    assert float(only) == pytest.approx(0.6243480, abs=1e-6) and set(parts) == {"nll"}


# --- masks ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 6, 7, 8, 15, 40])
def test_strided_masks_cover_each_position_exactly_once(n):
    m = strided_masks(n, max_copies=7)
    assert m.shape == (min(n, 7), n)
    assert (m.sum(axis=0) == 1).all()  # every position masked once
    assert (m.sum(axis=1) >= 1).all()  # no copy wasted


def test_training_mask_targets_only_and_never_empty():
    g = torch.Generator().manual_seed(0)
    target = torch.zeros(64, 10, dtype=torch.bool)
    target[:, 4:8] = True
    eos = torch.zeros(64, 10, dtype=torch.bool)
    eos[:, 8] = True
    m = training_mask(target, eos, mask_prob=0.15, eos_mask_prob=0.15, generator=g)
    assert not (m & ~(target | eos)).any()  # never the source, [CLS] or a separator other than the final one
    assert m.any(dim=1).all()
    assert 0 < int(m[:, 8].sum()) < 64  # the final [SEP] sometimes


# --- validation: one line naming file and line ----------------------------------------------------------------

def _tok():
    from distillery.generation.data import load_tokenizer

    return load_tokenizer("all-MiniLM-L6-v2")


def _write(folder: Path, src: list[str], tgt: list[str], stem: str = "train") -> None:
    (folder / f"{stem}.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    (folder / f"{stem}.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")


def test_empty_and_overlong_pairs_name_file_and_line(tmp_path):
    tok = _tok()
    _write(tmp_path, ["Ein Hund.", "", "Eine Katze."], ["A dog.", "Nothing.", "A cat."])
    with pytest.raises(DistilleryError, match=r"train\.de:2: empty sentence"):
        read_parallel(tmp_path / "train.de", tmp_path / "train.en", tok, 50, 50)
    _write(tmp_path, ["Ein Hund.", "Eine Katze."], ["A dog.", ""])
    with pytest.raises(DistilleryError, match=r"train\.en:2: empty sentence"):
        read_parallel(tmp_path / "train.de", tmp_path / "train.en", tok, 50, 50)
    _write(tmp_path, ["Ein Hund.", "Ein sehr langer Satz über einen Hund."], ["A dog.", "A dog."])
    with pytest.raises(DistilleryError, match=r"train\.de:2: \d+ tokens, more than gen_prepare\.max_src_len = 4"):
        read_parallel(tmp_path / "train.de", tmp_path / "train.en", tok, 4, 50)
    _write(tmp_path, ["Ein Hund.", "Eine Katze."], ["A dog."])
    with pytest.raises(DistilleryError, match=r"train\.en: 1 lines, but .*train\.de has 2"):
        read_parallel(tmp_path / "train.de", tmp_path / "train.en", tok, 50, 50)


def test_gen_prepare_cli_reports_one_line_and_writes_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for stem in ("train", "val", "test"):
        _write(data, ["Ein Hund läuft.", "Eine Katze schläft."], ["A dog runs.", "A cat sleeps."], stem)
    _write(data, ["Ein Hund läuft.", "Eine Katze schläft."], ["A dog runs.", ""], "val")
    (tmp_path / "params.yaml").write_text(
        "gen_prepare: {data_dir: data, src_lang: de, tgt_lang: en, splits: {train: train, dev: val, test: test},\n"
        "  tokenizer: all-MiniLM-L6-v2, max_src_len: 32, max_tgt_len: 32, max_train: 0, max_eval: 0, seed: 0}\n")
    r = subprocess.run([sys.executable, "-m", "stages.cli", "gen-prepare"], cwd=tmp_path, capture_output=True, text=True,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == ("error: data/val.en:2: empty sentence; remove the pair (the same line "
                                                  "of both files) or fill it in")
    assert not (tmp_path / "data" / "prepared").exists() and not (tmp_path / "data" / "prepared").exists()
    r = subprocess.run([sys.executable, "-m", "stages.cli", "gen-prepare", "--set", "max_src_len=0"], cwd=tmp_path,
                       capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                                            "HOME": str(tmp_path)})
    assert r.returncode == 2 and "param gen_prepare.max_src_len: must be in 1..1000, got 0" in r.stderr


@needs_data
def test_multi30k_sample_reads_and_fits_the_default_limits():
    import yaml

    params = yaml.safe_load((REPO / "studies" / "cmlm" / "params.yaml").read_text())["gen_prepare"]
    cfg = GenPrepareConfig(**{**params, "data_dir": str(MULTI30K)})
    frame = read_parallel(MULTI30K / "val.de", MULTI30K / "val.en", _tok(), cfg.max_src_len, cfg.max_tgt_len)
    assert len(frame) == 1014 and frame["id"].is_unique and (frame["line"] == np.arange(1, 1015)).all()


# --- the teacher's soft labels: store, artifact, resume ------------------------------------------------------

def _tiny_mlm(tok, folder: Path):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=256))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model


def _pairs(n: int) -> pd.DataFrame:
    from distillery.data.ids import text_id

    de = (MULTI30K / "train.de").read_text(encoding="utf-8").split("\n")[:n]
    en = (MULTI30K / "train.en").read_text(encoding="utf-8").split("\n")[:n]
    return pd.DataFrame({"id": [text_id(s, t) for s, t in zip(de, en)], "src": de, "tgt": en})


@needs_data
def test_topk_soft_labels_cover_every_position_resume_and_check_teacher(tmp_path):
    from distillery.generation.soft_labels import (
        TopK,
        TopKStore,
        label_pairs,
        position_keys,
        write_topk,
    )
    from distillery.generation.teacher import mlm_head
    from distillery.logits.fingerprint import ids_to_u64, teacher_fingerprint

    tok = _tok()
    model = _tiny_mlm(tok, tmp_path / "teacher")
    frame = _pairs(12)
    enc = encode(tok, frame)
    fp = teacher_fingerprint(tmp_path / "teacher", 7)
    store = TopKStore(tmp_path / "store", fp, 4, "fp32")
    first = label_pairs(model, enc, frame["id"].tolist(), store, 7, 4, 2048, False, 5)
    assert first["labelled_pairs"] == 12 and first["positions"] == sum(len(t) + 1 for t in enc.tgt)
    again = label_pairs(model, enc, frame["id"].tolist(), TopKStore(tmp_path / "store", fp, 4, "fp32"), 7, 4, 2048,
                        False, 5)
    assert again["labelled_pairs"] == 0 and again["reused_pairs"] == 12  # the store serves them
    write_topk(tmp_path / "art", frame["id"].tolist(), enc, store, {"fingerprint": fp, "copies": 7, "top_k": 4})
    art = TopK(tmp_path / "art")
    art.check_teacher(tmp_path / "teacher")
    n_pos = np.array([len(t) + 1 for t in enc.tgt])
    first_row = art.offsets(frame["id"].tolist(), n_pos, "train")
    assert art.ids.dtype == np.int32 and art.logits.dtype == np.float16 and art.logits.shape[1] == 4
    assert (np.diff(art.logits.astype(np.float32), axis=1) <= 0).all()  # top-k sorted, best first
    # each position's stored top-1 is what the teacher says with exactly that position masked
    i, j = 3, 2
    ids = [tok.cls_token_id, *enc.src[i], tok.sep_token_id, *enc.tgt[i], tok.sep_token_id]
    pos = len(enc.src[i]) + 2 + j
    x = torch.tensor([ids])
    copies = min(7, len(enc.tgt[i]) + 1)
    masked = [p for p in range(len(enc.src[i]) + 2, len(ids)) if (p - len(enc.src[i]) - 2) % copies == j % copies]
    x[0, masked] = tok.mask_token_id
    seg = torch.tensor([[0] * (len(enc.src[i]) + 2) + [1] * (len(enc.tgt[i]) + 1)])
    with torch.no_grad():
        logits = mlm_head(model)(model.base_model(input_ids=x, token_type_ids=seg).last_hidden_state[0, pos])
    assert int(art.ids[first_row[i] + j, 0]) == int(logits.argmax())
    assert np.array_equal(np.sort(art.keys), art.keys)
    assert set(position_keys(ids_to_u64(frame["id"].tolist()), n_pos)) == set(art.keys.tolist())
    with pytest.raises(DistilleryError, match="no soft labels for 1 pairs"):
        art.offsets(["0123456789abcdef"], np.array([3]), "train")
    other = _tiny_mlm(tok, tmp_path / "other")  # the same seed: the same weights, so change one
    with torch.no_grad():
        other.bert.embeddings.word_embeddings.weight[5, 0] += 1
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(DistilleryError, match="made by teacher fingerprint"):
        art.check_teacher(tmp_path / "other")


# --- the student: trained, exported, decoded ------------------------------------------------------------------

def _student_cfg(**over) -> Seq2SeqConfig:
    base = dict(name="s", param="students.s", encoder_layers=1, decoder_layers=1, d_model=32, heads=2, ffn_dim=64,
                dropout=0.0, alpha=0.5, temperature=10.0, top_k=2, label_smoothing=0.1, epochs=3, batch_size=4,
                lr=0.003, warmup_ratio=0.0, weight_decay=0.0, grad_clip=1.0, seed=0, output_vocab="target")
    return Seq2SeqConfig(**{**base, **over})


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

    tok = _tok()
    frame = _pairs(16)
    enc = encode(tok, frame)
    cfg = _student_cfg(alpha=0.0)
    vocab = output_vocab(cfg, enc, len(tok))
    assert tok.sep_token_id in vocab and len(vocab) < 300
    model = build_student(cfg, tok, 64, vocab)
    assert torch.equal(allowed_ids(model), torch.from_numpy(vocab))
    for weight in (model.model.shared.weight, model.model.decoder.layers[0].encoder_attn.q_proj.weight):
        assert abs(float(weight.detach().std()) - 32 ** -0.5) < 0.01  # N(0, 1/d_model), not BART's 0.02
    before = train_seq2seq(build_student(cfg, tok, 64, vocab), _student_cfg(alpha=0.0, epochs=0.25), enc, None)
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


def test_cached_decoder_step_gives_the_uncached_logits_at_every_step():
    """decoder.onnx's step (key-value cache, written out from BART's modules) equals transformers' decoder over
    the whole prefix, step by step, on padded real sources; and so does its ONNX graph."""
    from distillery.generation.export import (
        _CachedStep,
        _Encoder,
        _kv_names,
        export_onnx,
        next_token_logits,
        session,
    )
    from distillery.generation.student import build_student, encoder_inputs

    tok = _tok()
    enc = encode(tok, _pairs(6))
    model = build_student(_student_cfg(alpha=0.0), tok, 64).eval()
    batch = encoder_inputs(enc, range(6))
    assert (batch["attention_mask"] == 0).any()  # sources of different lengths: padding is masked
    n, bs = model.config.decoder_layers, 6
    with torch.inference_mode():
        hidden, *cross = _Encoder(model)(**batch)
        heads, dh = cross[0].shape[1], cross[0].shape[3]
        past = [torch.zeros(bs, heads, 0, dh) for _ in range(2 * n)]
        prefix = torch.full((bs, 1), tok.cls_token_id)
        for t in range(5):
            logits, *past = _CachedStep(model)(prefix[:, -1:], torch.tensor([t]), batch["attention_mask"], *past, *cross)
            ref = next_token_logits(model, prefix, hidden, batch["attention_mask"])
            assert torch.allclose(logits, ref, atol=1e-4), (t, (logits - ref).abs().max())
            assert past[0].shape == (bs, heads, t + 1, dh)  # (bs, H, t + 1, d/H): the cache grows by one
            prefix = torch.cat([prefix, ref.argmax(-1)[:, None]], dim=1)
    folder = Path(tempfile.mkdtemp())
    export_onnx(model, folder, 17)
    e, d = session(folder / "encoder.onnx"), session(folder / "decoder.onnx")
    outs = e.run(None, {k: v.numpy() for k, v in batch.items()})
    feed = {"attention_mask": batch["attention_mask"].numpy(), **dict(zip(_kv_names(n, "cross"), outs[1:]))}
    past = [np.zeros((bs, heads, 0, dh), dtype=np.float32) for _ in range(2 * n)]
    for t in range(3):
        logits, *past = d.run(None, {"token": prefix[:, t:t + 1].numpy(), "position": np.array([t]), **feed,
                                     **dict(zip(_kv_names(n, "past"), past))})
        with torch.inference_mode():
            ref = next_token_logits(model, prefix[:, :t + 1], hidden, batch["attention_mask"]).numpy()
        assert np.abs(logits - ref).max() < 1e-4


def test_student_param_errors_name_the_param():
    from distillery.generation.config import seq2seq_config

    good = dict(encoder_layers=1, decoder_layers=1, d_model=32, heads=2, ffn_dim=64, dropout=0.0, alpha=0.5,
                temperature=10.0, top_k=2, label_smoothing=0.1, epochs=1, batch_size=4, lr=0.003, warmup_ratio=0.0,
                weight_decay=0.0, grad_clip=1.0, seed=0, output_vocab="target")
    assert seq2seq_config("kd", {}, good).alpha == 0.5
    with pytest.raises(DistilleryError, match=r"param students.kd.heads: must divide d_model 32, got 3"):
        seq2seq_config("kd", {"heads": 3}, good)
    with pytest.raises(DistilleryError, match=r"param students.kd.alpha: must be in \[0, 1\], got 1.5"):
        seq2seq_config("kd", {"alpha": 1.5}, good)
    with pytest.raises(DistilleryError, match=r"param students.kd.beam: unknown setting"):
        seq2seq_config("kd", {"beam": 4}, good)
    with pytest.raises(DistilleryError, match=r"param students \(a student's name\)"):
        seq2seq_config("../x", {}, good)


@needs_data
def test_soft_labels_under_torchrun_equal_one_process(tmp_path):
    """`torchrun --nproc-per-node 2 ... gen-soft-labels`: each process labels every other batch into the store,
    rank 0 writes the artifact; it holds the same ids and top-k tokens as a one-process run."""
    import os

    from distillery.generation.soft_labels import TopK

    tok = _tok()
    _tiny_mlm(tok, tmp_path / "teacher")
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    frame = _pairs(24)
    frame["line"] = range(1, 25)
    from distillery.data.table import write_table

    write_table(frame, prepared / "train.tsv")
    (prepared / "limits.json").write_text('{"max_src_len": 96, "max_tgt_len": 64, "tokenizer": "all-MiniLM-L6-v2"}')
    (tmp_path / "params.yaml").write_text("gen_soft_labels: {top_k: 3, max_copies: 7, batch_tokens: 512, bf16: false}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = {}
    for name, launcher in (("one", ()), ("two", ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"))):
        r = subprocess.run([sys.executable, *launcher, "-m", "stages.cli", "gen-soft-labels", "--teacher", "teacher", "--prepared", "prepared", "--store",
                                   f"store-{name}", "--out", f"art-{name}", "--metrics", f"{name}.json"],
                           cwd=tmp_path, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        out[name] = TopK(tmp_path / f"art-{name}")
    assert np.array_equal(out["one"].keys, out["two"].keys)
    assert np.array_equal(out["one"].ids[:, 0], out["two"].ids[:, 0])
    np.testing.assert_allclose(out["one"].logits.astype(np.float32), out["two"].logits.astype(np.float32), atol=1e-2)
    assert '"processes": 2' in (tmp_path / "two.json").read_text()
