"""Parallel text for generation (German -> English Multi30k by default): read, validate, sample, tokenise.

Raw data: one sentence a line, line i of `<stem>.<src>` translating line i of `<stem>.<tgt>`. Every pair is
checked before anything is written: both files have as many lines, no side is empty, each side fits its
WordPiece limit; a failing pair is one error naming the file and line. Prepared splits are tables
(`id`, `src`, `tgt`), ids a hash of the pair. Teacher and student share one tokenizer (the teacher's
vocabulary): the teacher reads `[CLS] src [SEP] tgt [SEP]` (segments 0 / 1), the student's encoder reads
`src [SEP]` and its decoder predicts `tgt [SEP]` from `[CLS] tgt`, so the student's label t sits at teacher
position `len(src) + 2 + t`.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from distillery.data.glue import is_blank
from distillery.data.ids import text_id
from distillery.data.table import read_table, write_table
from distillery.errors import DistilleryError
from distillery.generation.config import SPLITS, GenPrepareConfig
from distillery.io import atomic_dir, read_json, read_utf8, write_json, write_metrics


def read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DistilleryError(f"{path}: no such file; check prepare.data_dir and prepare.splits")
    text = read_utf8(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, ln in enumerate(lines):  # a CR that does not end a line: bare-CR files, or a stray CR inside a sentence
        body = ln[:-1] if ln.endswith("\r") else ln
        if "\r" in body:
            what = ("bare CR line endings (old Mac style); convert the file to LF line endings"
                    if body.count("\r") > 1 or len(lines) == 1 else
                    "a carriage return (CR) inside the sentence; remove it (one sentence a line)")
            raise DistilleryError(f"{path}:{i + 1}: {what}")
    return [ln.rstrip("\r").replace("\t", " ").strip() for ln in lines]


def read_parallel(src_path: Path, tgt_path: Path, tokenizer, max_src_len: int, max_tgt_len: int) -> pd.DataFrame:
    """Validated pairs of two line-aligned files, with their line numbers (1-based)."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DistilleryError(f"{tgt_path}: {len(tgt)} lines, but {src_path} has {len(src)}; line i of one must "
                              "translate line i of the other: fix the files")
    if not src:
        raise DistilleryError(f"{src_path}: no sentences; point prepare.data_dir at a folder of parallel text")
    for path, side, limit, param in ((src_path, src, max_src_len, "max_src_len"),
                                     (tgt_path, tgt, max_tgt_len, "max_tgt_len")):
        empty = [i for i, s in enumerate(side) if is_blank(s)]
        if empty:
            raise DistilleryError(f"{path}:{empty[0] + 1}: empty sentence; remove the pair (the same line of both "
                                  "files) or fill it in")
        lengths = np.fromiter((len(x) for x in tokenizer(side, add_special_tokens=False)["input_ids"]), dtype=np.int64)
        if (lengths == 0).any():
            i = int(np.flatnonzero(lengths == 0)[0])
            raise DistilleryError(f"{path}:{i + 1}: the tokenizer makes no tokens of {side[i]!r}; remove the pair")
        if (lengths > limit).any():
            i = int(np.flatnonzero(lengths > limit)[0])
            raise DistilleryError(f"{path}:{i + 1}: {lengths[i]} tokens, more than prepare.{param} = {limit}; "
                                  f"raise the limit or remove the pair ({int((lengths > limit).sum())} lines are over it)")
    return pd.DataFrame({"id": [text_id(s, t) for s, t in zip(src, tgt)], "src": src, "tgt": tgt,
                         "line": np.arange(1, len(src) + 1)})


def prepare_pairs(cfg: GenPrepareConfig, tokenizer, out_dir: Path) -> dict:
    """Read and validate every split, sample the training pairs, drop repeated training pairs (same id),
    write `out_dir/{train,dev,test}.tsv`. Returns counts."""
    data = Path(cfg.data_dir)
    frames = {}
    for split in SPLITS:
        stem = cfg.splits[split]
        frames[split] = read_parallel(data / f"{stem}.{cfg.src_lang}", data / f"{stem}.{cfg.tgt_lang}", tokenizer,
                                      cfg.max_src_len, cfg.max_tgt_len)
    counts = {"raw_" + s: len(f) for s, f in frames.items()}
    train = frames["train"].drop_duplicates("id", keep="first")
    counts["train_repeats_dropped"] = len(frames["train"]) - len(train)
    if cfg.max_train and cfg.max_train < len(train):
        rng = np.random.default_rng(cfg.seed)
        train = train.iloc[np.sort(rng.choice(len(train), cfg.max_train, replace=False))]
    frames["train"] = train
    if cfg.max_eval:
        frames["dev"], frames["test"] = frames["dev"].iloc[:cfg.max_eval], frames["test"].iloc[:cfg.max_eval]
    with atomic_dir(out_dir, "prepare") as tmp:
        for split, f in frames.items():
            write_table(f[["id", "src", "tgt", "line"]].reset_index(drop=True), tmp / f"{split}.tsv")
        write_json(tmp / "limits.json", {"max_src_len": cfg.max_src_len, "max_tgt_len": cfg.max_tgt_len,
                                         "tokenizer": cfg.tokenizer})
    counts.update({s: len(f) for s, f in frames.items()})
    return counts


def load_split(prepared: Path, split: str) -> pd.DataFrame:
    frame = read_table(Path(prepared) / f"{split}.tsv", required=("id", "src", "tgt"))
    empty = frame.index[(frame["src"] == "") | (frame["tgt"] == "")]
    if len(empty):
        raise DistilleryError(f"{Path(prepared) / f'{split}.tsv'}:{int(empty[0]) + 2}: empty sentence; re-run `distillery prepare`")
    return frame


@dataclass
class Encoded:
    """Token ids of pairs (no special tokens), and the ids of the special tokens both models use."""

    src: list[list[int]]
    tgt: list[list[int]]
    cls: int
    sep: int
    pad: int
    mask: int


def special_ids(tokenizer) -> tuple[int, int, int, int]:
    ids = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id)
    if any(i is None for i in ids):
        raise DistilleryError(f"tokenizer {tokenizer.name_or_path}: needs [CLS], [SEP], [PAD] and [MASK] tokens "
                              "(a BERT-style masked-LM tokenizer)")
    return ids


def encode(tokenizer, frame: pd.DataFrame) -> Encoded:
    cls, sep, pad, mask = special_ids(tokenizer)
    src = tokenizer(list(frame["src"]), add_special_tokens=False)["input_ids"]
    tgt = tokenizer(list(frame["tgt"]), add_special_tokens=False)["input_ids"]
    return Encoded(src=src, tgt=tgt, cls=cls, sep=sep, pad=pad, mask=mask)


def teacher_inputs(enc: Encoded, rows) -> tuple[list[list[int]], list[list[int]], list[int]]:
    """`[CLS] src [SEP] tgt [SEP]` per row, its segment ids, and where the target starts (its first token)."""
    ids, seg, start = [], [], []
    for i in rows:
        s, t = enc.src[i], enc.tgt[i]
        ids.append([enc.cls, *s, enc.sep, *t, enc.sep])
        seg.append([0] * (len(s) + 2) + [1] * (len(t) + 1))
        start.append(len(s) + 2)
    return ids, seg, start


def pad(seqs: list[list[int]], value: int) -> np.ndarray:
    width = max(len(s) for s in seqs)
    out = np.full((len(seqs), width), value, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


def encoder_inputs(enc: Encoded, rows) -> dict:
    """The student's encoder inputs `src [SEP]` of `rows`, padded: input_ids and attention_mask (bs, S) tensors."""
    import torch

    seqs = [[*enc.src[i], enc.sep] for i in rows]
    ids = torch.from_numpy(pad(seqs, enc.pad))
    lengths = torch.tensor([len(s) for s in seqs])
    return {"input_ids": ids, "attention_mask": (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()}


def decoder_io(enc: Encoded, rows) -> tuple:
    """The student's decoder inputs `[CLS] tgt` and labels `tgt [SEP]` of `rows` (bs, T) tensors; labels -100 on
    padding."""
    import torch

    inp = [[enc.cls, *enc.tgt[i]] for i in rows]
    lab = [[*enc.tgt[i], enc.sep] for i in rows]
    return torch.from_numpy(pad(inp, enc.pad)), torch.from_numpy(pad(lab, -100))


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    from distillery.teacher.models import resolve_model

    try:
        return AutoTokenizer.from_pretrained(resolve_model(name))
    except (OSError, ValueError) as e:
        raise DistilleryError(f"param prepare.tokenizer {name!r}: cannot load ({str(e).splitlines()[0]}); give a "
                              "Hugging Face id (with a network) or a local folder") from None


def check_fits(max_positions: int, who: str, prepared: Path, tokenizer, splits: tuple[str, ...] = ("dev", "test")) -> None:
    """Refuse, before any work, prepared text longer than a seq2seq student's positions: its encoder reads
    `src [SEP]` (room for max_positions - 1 source tokens) and its decoder `[CLS]` plus up to max_tgt_len + 1 new
    tokens (room for max_tgt_len = max_positions - 2). `prepare.max_src_len` / `max_tgt_len` above that (limits
    raised after the student was trained) is one line naming both numbers and the first sentence past them;
    without it the model would index past its position embeddings."""
    limits = read_json(Path(prepared) / "limits.json")
    for key, cap, side, col in (("max_src_len", max_positions - 1, "source", "src"),
                                ("max_tgt_len", max_positions - 2, "target", "tgt")):
        if int(limits[key]) <= cap:
            continue
        first = ""
        for split in splits:
            frame = load_split(prepared, split)
            lengths = [len(x) for x in tokenizer(list(frame[col]), add_special_tokens=False)["input_ids"]]
            over = [i for i, n in enumerate(lengths) if n > cap]
            if over:
                i = over[0]
                many = f"{len(over)} {split} sentences are" if len(over) > 1 else f"a {split} sentence is"
                first = (f"; {many} longer, the first {lengths[i]} tokens "
                         f"({Path(prepared) / f'{split}.tsv'} row {i + 1}, line {int(frame['line'].iloc[i])} of the "
                         f"{side} file)")
                break
        raise DistilleryError(f"{Path(prepared) / 'limits.json'}: prepare.{key} = {limits[key]}, but {who} has "
                              f"positions for {side} sentences of at most {cap} tokens{first}; prepare with "
                              f"prepare.{key} <= {cap}, or train the student on the data prepared with the higher limit")


def max_new_tokens(prepared: Path) -> int:
    return int(read_json(Path(prepared) / "limits.json")["max_tgt_len"]) + 1


def prepare_stage(cfg: GenPrepareConfig, out_dir: Path, metrics: Path) -> dict:
    counts = prepare_pairs(cfg, load_tokenizer(cfg.tokenizer), out_dir)
    write_metrics(metrics, counts, "prepare", written=out_dir)
    return counts

