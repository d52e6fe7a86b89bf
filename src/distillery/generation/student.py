"""What the translation student reads and writes: encoder inputs `src [SEP]`, decoder inputs `[CLS] tgt` and
labels `tgt [SEP]`, and loading a saved student for decoding and export. The student itself is the `seq2seq`
family (`students/seq2seq.py`).
"""

from pathlib import Path

import torch

from distillery.errors import DistilleryError
from distillery.generation.data import Encoded, pad


def load_seq2seq(path: str | Path):
    """(transformers model, tokenizer) of a saved seq2seq student: `generate` and the export read it as is."""
    from transformers import AutoTokenizer, BartForConditionalGeneration

    path = Path(path)
    if not (path / "config.json").is_file():
        raise DistilleryError(f"{path}: no student here (config.json missing); run `distillery distill` first")
    return BartForConditionalGeneration.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def encoder_inputs(enc: Encoded, rows) -> dict[str, torch.Tensor]:
    """`src [SEP]` of `rows`, padded: input_ids and attention_mask (bs, S)."""
    seqs = [[*enc.src[i], enc.sep] for i in rows]
    ids = torch.from_numpy(pad(seqs, enc.pad))
    lengths = torch.tensor([len(s) for s in seqs])
    return {"input_ids": ids, "attention_mask": (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()}


def decoder_io(enc: Encoded, rows) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs `[CLS] tgt` and labels `tgt [SEP]` of `rows` (bs, T); labels -100 on padding."""
    inp = [[enc.cls, *enc.tgt[i]] for i in rows]
    lab = [[*enc.tgt[i], enc.sep] for i in rows]
    return torch.from_numpy(pad(inp, enc.pad)), torch.from_numpy(pad(lab, -100))


def n_params(model) -> int:
    """Parameters, the tied embedding counted once."""
    return int(sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()))
