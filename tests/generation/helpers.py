"""What the C-MLM tests share: the tokenizer, Multi30k samples, a tiny masked LM, a tiny student's config."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from distillery.generation.config import (
    Seq2SeqConfig,
)

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


def student_cfg(**over) -> Seq2SeqConfig:
    base = dict(name="s", param="students.s", encoder_layers=1, decoder_layers=1, d_model=32, heads=2, ffn_dim=64,
                dropout=0.0, alpha=0.5, temperature=10.0, top_k=2, label_smoothing=0.1, epochs=3, batch_size=4,
                lr=0.003, warmup_ratio=0.0, weight_decay=0.0, grad_clip=1.0, seed=0, output_vocab="target")
    return Seq2SeqConfig(**{**base, **over})


