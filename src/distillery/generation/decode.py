"""Translating with a student, turning WordPiece output back into text, and BLEU (sacreBLEU).

The offline default vocabulary (all-MiniLM-L6-v2's) is uncased and strips accents, so output is lower
case: `detokenize` joins WordPiece, re-attaches apostrophes and hyphens, and capitalises the first letter
(the references are captions: sentence case). What that costs is measured, not assumed: `ceiling_bleu`
scores the references themselves after a round trip through the tokenizer. BLEU is sacreBLEU's default
(13a tokenisation, cased, against the references as they are); the lowercased score is reported beside it.
"""

import re

import numpy as np
import torch

from distillery.generation.data import Encoded, encoder_inputs

_JOINS = [(re.compile(r" ' "), "'"), (re.compile(r" ' s\b"), "'s"), (re.compile(r"(\w) - (\w)"), r"\1-\2"),
          (re.compile(r" ([.,!?;:])"), r"\1")]


def detokenize(tokenizer, ids) -> str:
    text = tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)
    for pattern, repl in _JOINS:
        text = pattern.sub(repl, text)
    text = text.strip()
    return text[:1].upper() + text[1:]


def bleu(hypotheses: list[str], references: list[str], lowercase: bool = False) -> float:
    import sacrebleu

    return round(sacrebleu.corpus_bleu(hypotheses, [references], lowercase=lowercase).score, 2)


def ceiling_bleu(tokenizer, references: list[str]) -> float:
    """BLEU of the references after tokenize -> detokenize: the best any student of this vocabulary can do."""
    ids = tokenizer(references, add_special_tokens=False)["input_ids"]
    return bleu([detokenize(tokenizer, x) for x in ids], references)


@torch.inference_mode()
def translate(model, tokenizer, enc: Encoded, beam: int, batch_size: int, max_new: int) -> list[str]:
    """Beam-search translations (`generate`) of every source of `enc`, in order; batches of similar length."""
    model.eval()
    from tqdm import tqdm

    order = np.argsort([len(s) for s in enc.src], kind="stable")
    out: list[str] = [""] * len(order)
    for s in tqdm(range(0, len(order), batch_size), desc="translate", unit="batch", mininterval=5):
        rows = order[s:s + batch_size]
        gen = model.generate(**encoder_inputs(enc, rows), num_beams=beam, max_new_tokens=max_new, max_length=None,
                             early_stopping=beam > 1)
        for r, seq in zip(rows, gen):
            out[r] = detokenize(tokenizer, seq)
    return out
