"""Parity: the C-MLM student trained by the former generation loop (`generation/train.py`) and by the one
`Recipe` with the `seq2seq` task ends with equal weights (issue 32, before the former loop is deleted).
Warm-up 0: the two schedules differ only in the warm-up's first step (the recipe's starts at lr/warm)."""

import numpy as np
import pandas as pd
import torch

from distillery.config import merge_student
from distillery.data.table import write_table
from distillery.distill.recipe import Paths, distill
from distillery.io import write_json
from distillery.students import load_student
from tests.generation.helpers import make_tok, multi30k_pairs, needs_data, student_cfg, tiny_mlm


def soft_labelled_pairs(root, tok, n: int = 16):
    """A prepared folder (train/dev/limits.json) and a tiny C-MLM teacher's top-k artifact for its train pairs."""
    from distillery.generation.data import encode
    from distillery.generation.soft_labels import TopKStore, label_pairs, write_topk
    from distillery.logits.fingerprint import teacher_fingerprint

    frame = multi30k_pairs(n)
    (root / "prepared").mkdir(parents=True)
    for split, part in (("train", frame), ("dev", frame.iloc[:6])):
        write_table(pd.DataFrame({**part.reset_index(drop=True), "line": range(1, len(part) + 1)}),
                    root / "prepared" / f"{split}.tsv")
    write_json(root / "prepared" / "limits.json", {"max_src_len": 96, "max_tgt_len": 64, "tokenizer": "all-MiniLM-L6-v2"})
    teacher = tiny_mlm(tok, root / "teacher")
    enc = encode(tok, frame)
    fp = teacher_fingerprint(root / "teacher", 7)
    store = TopKStore(root / "store", fp, 4, "fp32")
    label_pairs(teacher, enc, frame["id"].tolist(), store, 7, 4, 2048, False, 5)
    write_topk(root / "art", frame["id"].tolist(), enc, store, {"fingerprint": fp, "copies": 7, "top_k": 4})
    return frame, enc


@needs_data
def test_seq2seq_student_through_the_recipe_equals_the_former_loop(tmp_path):
    from distillery.generation.soft_labels import TopK
    from distillery.generation.student import build_student, output_vocab
    from distillery.generation.train import TeacherTargets, train_seq2seq

    tok = make_tok()
    frame, enc = soft_labelled_pairs(tmp_path, tok)
    old_cfg = student_cfg(alpha=0.5, top_k=2, epochs=2, dropout=0.1)
    model = build_student(old_cfg, tok, 97, output_vocab(old_cfg, enc, len(tok)))
    train_seq2seq(model, old_cfg, enc, TeacherTargets(TopK(tmp_path / "art"), frame["id"].tolist(), enc, 2, "s"))

    common = {"task": "seq2seq", "transfer_set": "train", "max_examples": 0, "optimizer": "adamw", "betas": [0.9, 0.98],
              "epochs": 2, "batch_size": 4, "lr": 0.003, "weight_decay": 0.0, "warmup_ratio": 0.0, "grad_clip": 1.0,
              "temperature": 10.0, "max_seq_len": 128, "seed": 0, "bucket_batches": 50,
              "loss_args": {"label_smoothing": 0.1, "top_k": 2}}
    args = {"encoder_layers": 1, "decoder_layers": 1, "d_model": 32, "heads": 2, "ffn_dim": 64, "dropout": 0.1,
            "output_vocab": "target"}
    cfg = merge_student("s", {"model": "seq2seq", "losses": {"token_nll": 0.5, "topk_kd": 0.5}},
                        {"common": common, "seq2seq": {"model_args": args}}, "seq2seq")
    m = distill(cfg, Paths(tmp_path / "prepared", tmp_path / "teacher", tmp_path / "art", None, tmp_path / "new",
                           tmp_path / "new.json", tmp_path / "new-live"))
    new, _, info = load_student(tmp_path / "new")
    ref, got = model.state_dict(), new.hf.state_dict()
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), (k, (ref[k] - got[k]).abs().max())
    assert m["alpha"] == 0.5 and m["top_k"] == 2 and np.isfinite(m["dev_bleu_greedy"])
