"""What the C-MLM tests share: the tokenizer, Multi30k samples, a tiny masked LM, a tiny student's config."""

from pathlib import Path

import pandas as pd
import pytest
import torch


REPO = Path(__file__).resolve().parents[2]
MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
needs_data = pytest.mark.skipif(not MULTI30K.is_dir(), reason="needs ../shared/data/multi30k")


def make_tok():
    from distillery.generation.data import load_tokenizer

    return load_tokenizer("all-MiniLM-L6-v2")


def write_pair(folder: Path, src: list[str], tgt: list[str], stem: str = "train") -> None:
    (folder / f"{stem}.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    (folder / f"{stem}.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")


def tiny_mlm(tok, folder: Path):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=256))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model


def multi30k_pairs(n: int) -> pd.DataFrame:
    from distillery.data.ids import text_id

    de = (MULTI30K / "train.de").read_text(encoding="utf-8").split("\n")[:n]
    en = (MULTI30K / "train.en").read_text(encoding="utf-8").split("\n")[:n]
    return pd.DataFrame({"id": [text_id(s, t) for s, t in zip(de, en)], "src": de, "tgt": en})


SEQ2SEQ_DEFAULTS = {
    "common": {"task": "seq2seq", "transfer_set": "train", "max_examples": 0, "optimizer": "adamw", "betas": [0.9, 0.98],
               "epochs": 3, "batch_size": 4, "lr": 0.003, "weight_decay": 0.0, "warmup_ratio": 0.0, "grad_clip": 1.0,
               "temperature": 10.0, "max_seq_len": 128, "seed": 0, "bucket_batches": 50,
               "loss_args": {"label_smoothing": 0.1, "top_k": 2}},
    "seq2seq": {"model_args": {"encoder_layers": 1, "decoder_layers": 1, "d_model": 32, "heads": 2, "ffn_dim": 64,
                               "dropout": 0.0, "output_vocab": "target"}}}


def student_cfg(losses: dict | None = None, **over):
    """A tiny seq2seq student (1 + 1 layers, width 32) as `distillery distill` builds it from params."""
    from distillery.config import merge_student

    block = {"model": "seq2seq", "losses": losses or {"token_nll": 1.0}, **over}
    return merge_student("s", block, SEQ2SEQ_DEFAULTS, "seq2seq")


def tiny_translator(tok, vocab=None, **args):
    """A tiny seq2seq student built from its config (the family's own initialisation)."""
    from distillery.students.seq2seq import Seq2SeqStudent, Seq2SeqStudentConfig

    torch.manual_seed(0)
    c = {**SEQ2SEQ_DEFAULTS["seq2seq"]["model_args"], "vocab_size": len(tok), "pad_id": tok.pad_token_id,
         "cls_id": tok.cls_token_id, "sep_id": tok.sep_token_id, "max_positions": 130, "vocab": list(vocab or []), **args}
    return Seq2SeqStudent(Seq2SeqStudentConfig(**c))


def prepared_pairs(root, tok, n: int = 16):
    """A prepared folder (train/dev/limits.json, as prepare writes it) of the first n Multi30k pairs, and a
    tiny C-MLM teacher's top-k artifact (`root/art`, k = 4) for them; (frame, encoded)."""
    from distillery.data.table import write_table
    from distillery.generation.data import encode
    from distillery.generation.soft_labels import topk_store, label_pairs, write_topk
    from distillery.io import write_json
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
    store = topk_store(root / "store", fp, 4, "fp32")
    label_pairs(teacher, enc, frame["id"].tolist(), store, 7, 4, 2048, False, 5)
    write_topk(root / "art", frame["id"].tolist(), enc, store, {"fingerprint": fp, "copies": 7, "top_k": 4})
    return frame, enc


def train_translator(root, cfg, out_name: str = "student"):
    """`cfg` trained through the one recipe on `prepared_pairs(root)`: its metrics."""
    from distillery.distill.recipe import Paths, distill

    out = root / out_name
    return distill(cfg, Paths(root / "prepared", root / "teacher", root / "art", None, out, out.with_suffix(".json"),
                              root / f"{out_name}-live"))
