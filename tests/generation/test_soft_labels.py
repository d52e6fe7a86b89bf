"""The C-MLM teacher's top-k soft labels: coverage, resume, the teacher check, torchrun."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from distillery.errors import DistilleryError
from distillery.generation.data import encode
from distillery.logits.artifact import Logits
from tests.generation.helpers import (
    REPO,
    make_tok,
    multi30k_pairs,
    needs_data,
    tiny_mlm,
)


@needs_data
def test_topk_soft_labels_cover_every_position_resume_and_check_teacher(tmp_path):
    from distillery.generation.soft_labels import (
        topk_store,
        label_pairs,
        position_keys,
        write_topk,
    )
    from distillery.teacher.mlm import mlm_head
    from distillery.logits.fingerprint import ids_to_u64, teacher_fingerprint

    tok = make_tok()
    model = tiny_mlm(tok, tmp_path / "teacher")
    frame = multi30k_pairs(12)
    enc = encode(tok, frame)
    fp = teacher_fingerprint(tmp_path / "teacher", 7)
    store = topk_store(tmp_path / "store", fp, 4, "fp32")
    first = label_pairs(model, enc, frame["id"].tolist(), store, 7, 4, 2048, False, 5)
    assert first["labelled_pairs"] == 12 and first["positions"] == sum(len(t) + 1 for t in enc.tgt)
    again = label_pairs(model, enc, frame["id"].tolist(), topk_store(tmp_path / "store", fp, 4, "fp32"), 7, 4, 2048,
                        False, 5)
    assert again["labelled_pairs"] == 0 and again["reused_pairs"] == 12  # the store serves them
    write_topk(tmp_path / "art", frame["id"].tolist(), enc, store, {"fingerprint": fp, "copies": 7, "top_k": 4})
    art = Logits(tmp_path / "art")
    art.check_teacher(tmp_path / "teacher")
    n_pos = np.array([len(t) + 1 for t in enc.tgt])
    first_row = art.rows(frame["id"].tolist(), n_pos, "train")
    assert art.arrays["ids"].dtype == np.int32 and art.logits.dtype == np.float16 and art.logits.shape[1] == 4
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
    assert int(art.arrays["ids"][first_row[i] + j, 0]) == int(logits.argmax())
    assert np.array_equal(np.sort(art.keys), art.keys)
    assert set(position_keys(ids_to_u64(frame["id"].tolist()), n_pos)) == set(art.keys.tolist())
    with pytest.raises(DistilleryError, match="no soft labels for 1 examples"):
        art.rows(["0123456789abcdef"], np.array([3]), "train")
    other = tiny_mlm(tok, tmp_path / "other")  # the same seed: the same weights, so change one
    with torch.no_grad():
        other.bert.embeddings.word_embeddings.weight[5, 0] += 1
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(DistilleryError, match="made by teacher fingerprint"):
        art.check_teacher(tmp_path / "other")


# --- the student: trained, exported, decoded ------------------------------------------------------------------

@needs_data
def test_soft_labels_under_torchrun_equal_one_process(tmp_path):
    """`torchrun --nproc-per-node 2 ... soft-labels`: each process labels every other batch into the store,
    rank 0 writes the artifact; it holds the same ids and top-k tokens as a one-process run."""
    import os

    from distillery.logits.artifact import Logits

    tok = make_tok()
    tiny_mlm(tok, tmp_path / "teacher")
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    frame = multi30k_pairs(24)
    frame["line"] = range(1, 25)
    from distillery.data.table import write_table

    write_table(frame, prepared / "train.tsv")
    (prepared / "limits.json").write_text('{"max_src_len": 96, "max_tgt_len": 64, "tokenizer": "all-MiniLM-L6-v2"}')
    (tmp_path / "params.yaml").write_text("soft_labels: {top_k: 3, max_copies: 7, batch_tokens: 512, bf16: false}\n"
                                          "distill: {common: {task: seq2seq}}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = {}
    for name, launcher in (("one", ()), ("two", ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"))):
        r = subprocess.run([sys.executable, *launcher, "-m", "stages.cli", "soft-labels", "--teacher", "teacher", "--prepared", "prepared", "--store",
                                   f"store-{name}", "--out", f"art-{name}", "--metrics", f"{name}.json"],
                           cwd=tmp_path, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        out[name] = Logits(tmp_path / f"art-{name}")
    assert np.array_equal(out["one"].keys, out["two"].keys)
    assert np.array_equal(out["one"].arrays["ids"][:, 0], out["two"].arrays["ids"][:, 0])
    np.testing.assert_allclose(out["one"].logits.astype(np.float32), out["two"].logits.astype(np.float32), atol=1e-2)
    assert '"processes": 2' in (tmp_path / "two.json").read_text()
