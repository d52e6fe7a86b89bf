"""General text for task-agnostic distillation (DistilBERT, TinyBERT's general stage, MobileBERT): documents read
from WikiExtractor output, plain text or a Hugging Face dataset; packed into sequences of one length with the
teacher's tokenizer; masked per batch by BERT's rule.

- WikiExtractor: `<doc id=.. title=..>`, the title line, the body, `</doc>`; a document with no body (a title-only
  stub) is skipped. Plain text (`.txt`): documents are separated by blank lines; WikiText's `= Heading =` lines
  are skipped and its `@-@`, `@,@`, `@.@` joins undone, `<unk>` becomes the tokenizer's unknown token.
- Packing (RoBERTa's "full sentences"): the documents' tokens one after another, `[SEP]` between documents, cut
  into rows of `seq_len`: `[CLS]` + seq_len - 2 tokens + `[SEP]`; the last, partial row is dropped.
- Masking (Devlin et al. 2019; DistilBERT draws it anew every batch): 15% of the real tokens (never [CLS], [SEP],
  [PAD] or [UNK]) are chosen; of those 80% become [MASK], 10% a random token, 10% stay. The draw comes from a
  generator seeded by (seed, epoch, batch), so a re-run, and a resumed run, masks every batch the same way.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from distillery.config import Checked, Range, check, check_num
from distillery.errors import DistilleryError

DOC_START = re.compile(r"<doc\b[^>]*>")
WIKITEXT_JOINS = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))


@dataclass(frozen=True)
class CorpusConfig(Checked):
    """The general-distillation study's `prepare` section."""

    section = "prepare"
    corpus: str | None  # a file or a folder of files (WikiExtractor output, or .txt)
    heldout: str  # a file of held-out text (its masked-token accuracy is every model's score)
    tokenizer: str  # the teacher's base model: its tokenizer packs the corpus
    seq_len: Annotated[int, Range(8, 4096)]  # tokens per row, [CLS] and [SEP] included
    max_tokens: Annotated[int, Range(0)]  # stop reading once this many corpus tokens are packed (0: the whole corpus)
    max_heldout_rows: Annotated[int, Range(0)]  # held-out rows kept (0: all)
    seed: Annotated[int, Range(0)]  # the order of the corpus's rows
    hf_dataset: str | None = None  # or a Hugging Face dataset (a name, or a local folder) ...
    hf_split: str = "train"
    text_column: str = "text"  # ... and its text column

    def __post_init__(self) -> None:
        check(bool(self.corpus) != bool(self.hf_dataset), "prepare.corpus",
              "give exactly one of prepare.corpus (a file or folder of text) and prepare.hf_dataset")
        super().__post_init__()


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DistilleryError(f"{path}: no such file or folder; set prepare.corpus to your text")
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DistilleryError(f"{path}: an empty folder; put the corpus's text files in it")
    return files


def _wiki_docs(text: str, where: Path) -> Iterator[str]:
    """The bodies of WikiExtractor's `<doc>` blocks (title line dropped); stubs give nothing."""
    for block in DOC_START.split(text)[1:]:
        body, closed, _ = block.partition("</doc>")
        if not closed:
            raise DistilleryError(f"{where}: a <doc> block is not closed by </doc>; the file is cut short")
        lines = body.strip("\n").split("\n")[1:]  # the first line repeats the title
        doc = "\n".join(line for line in lines if line.strip())
        if doc:
            yield doc


def _plain_docs(text: str) -> Iterator[str]:
    """Blank-line separated documents; WikiText's headings skipped and its joins undone."""
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.split("\n")]
        lines = [line for line in lines if line and not (line.startswith("=") and line.endswith("="))]
        if lines:
            doc = " ".join(lines)
            for a, b in WIKITEXT_JOINS:
                doc = doc.replace(a, b)
            yield doc


def read_documents(path: str | Path) -> Iterator[str]:
    """Every document with text in a file or folder (module docstring), in file order."""
    for f in _files(Path(path)):
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DistilleryError(f"{f}: not UTF-8 text (byte {e.start}); convert it or leave it out") from None
        yield from (_wiki_docs(text, f) if DOC_START.search(text) else _plain_docs(text))


def hf_documents(name: str, split: str, column: str) -> Iterator[str]:
    from distillery.hub import require_hub

    from datasets import load_dataset, load_from_disk

    if Path(name).is_dir():
        ds = load_from_disk(name)
        ds = ds[split] if hasattr(ds, "keys") else ds
    else:
        require_hub(name, "prepare.hf_dataset")
        ds = load_dataset(name, split=split)
    if column not in ds.column_names:
        raise DistilleryError(f"prepare.text_column: {name} has no column {column!r}; it has {', '.join(ds.column_names)}")
    yield from (t for t in ds[column] if isinstance(t, str) and t.strip())


def pack(tokenizer, docs: Iterator[str], seq_len: int, max_tokens: int = 0, batch: int = 256) -> np.ndarray:
    """(rows, seq_len) int32 token ids: the documents' tokens in order, [SEP] between documents, cut into
    `[CLS] ... [SEP]` rows (module docstring); at most `max_tokens` corpus tokens (0: all)."""
    from distillery.teacher.train import quiet_loading

    unk = tokenizer.unk_token or ""
    stream: list[int] = []
    budget = max_tokens or None
    pending: list[str] = []

    def flush() -> None:  # whole documents, longer than the model's positions: packing cuts them (no warning)
        with quiet_loading():
            enc = tokenizer([d.replace("<unk>", unk) for d in pending], add_special_tokens=False)["input_ids"]
        for ids in enc:
            stream.extend(ids)
            stream.append(tokenizer.sep_token_id)
        pending.clear()

    for doc in docs:
        pending.append(doc)
        if len(pending) == batch:
            flush()
            if budget and len(stream) >= budget:
                break
    if pending:
        flush()
    body = seq_len - 2
    tokens = np.asarray(stream[:budget] if budget else stream, dtype=np.int32)
    n = len(tokens) // body
    if n == 0:
        raise DistilleryError(f"the corpus holds {len(tokens)} tokens, fewer than one row of {seq_len}; give more text "
                              "or lower prepare.seq_len")
    rows = np.empty((n, seq_len), dtype=np.int32)
    rows[:, 0], rows[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    rows[:, 1:-1] = tokens[: n * body].reshape(n, body)
    return rows


def special_ids(tokenizer) -> list[int]:
    """Ids never masked: [CLS], [SEP], [PAD], [UNK], [MASK] and the tokenizer's other special tokens."""
    return sorted(set(tokenizer.all_special_ids))


@dataclass(frozen=True)
class MaskRule:
    """BERT's masking: `prob` of the real tokens chosen; of those `p_mask` -> [MASK], `p_random` -> a random
    token, the rest unchanged."""

    mask_id: int
    vocab_size: int
    special: tuple[int, ...]
    prob: float = 0.15
    p_mask: float = 0.8
    p_random: float = 0.1

    def __post_init__(self) -> None:
        check_num(self.prob, "mask_prob", 0, 1, lo_open=True)
        check(self.p_mask + self.p_random <= 1, "mask_prob", "p_mask + p_random must be <= 1")

    def __call__(self, ids: torch.Tensor, seed: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked input ids, labels: the original id where chosen, -100 elsewhere) for ids (bs, L); the draw
        is a function of `seed` alone (e.g. (seed, epoch, batch))."""
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence(list(seed)).generate_state(1)[0]))
        u = torch.rand(ids.shape, generator=gen)
        kind = torch.rand(ids.shape, generator=gen)
        random_ids = torch.randint(0, self.vocab_size, ids.shape, generator=gen, dtype=ids.dtype)
        chosen = (u < self.prob) & ~torch.isin(ids, torch.tensor(self.special, dtype=ids.dtype))
        labels = ids.masked_fill(~chosen, -100)
        out = ids.masked_fill(chosen & (kind < self.p_mask), self.mask_id)
        swap = chosen & (kind >= self.p_mask) & (kind < self.p_mask + self.p_random)
        return torch.where(swap, random_ids, out), labels


def mask_rule(tokenizer, prob: float = 0.15) -> MaskRule:
    if tokenizer.mask_token_id is None:
        raise DistilleryError(f"the tokenizer {tokenizer.name_or_path} has no mask token; a masked LM needs one")
    return MaskRule(tokenizer.mask_token_id, len(tokenizer), tuple(special_ids(tokenizer)), prob)


def prepare_corpus(cfg: CorpusConfig, out: Path, metrics: Path) -> dict:
    """`train.npy` (the corpus's rows, shuffled by `seed`), `heldout.npy`, the tokenizer and `corpus.json`, written
    together (a folder renamed into place) or not at all."""
    from distillery.io import atomic_dir, write_json, write_metrics
    from distillery.teacher.models import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model(cfg.tokenizer), None, f"param prepare.tokenizer ({cfg.tokenizer})")
    counted = {"documents": 0}

    def counting(docs):
        for d in docs:
            counted["documents"] += 1
            yield d

    source = cfg.corpus or cfg.hf_dataset
    docs = read_documents(cfg.corpus) if cfg.corpus else hf_documents(cfg.hf_dataset, cfg.hf_split, cfg.text_column)
    try:
        train = pack(tok, counting(docs), cfg.seq_len, cfg.max_tokens)
    except DistilleryError as e:
        raise DistilleryError(f"prepare.corpus {source}: {e}") from None
    train = train[np.random.default_rng(cfg.seed).permutation(len(train))]
    try:
        heldout = pack(tok, read_documents(cfg.heldout), cfg.seq_len)
    except DistilleryError as e:
        raise DistilleryError(f"prepare.heldout {cfg.heldout}: {e}") from None
    if cfg.max_heldout_rows:
        heldout = heldout[:cfg.max_heldout_rows]
    info = {"source": str(source), "heldout": cfg.heldout, "tokenizer": cfg.tokenizer, "vocab_size": len(tok),
            "documents": counted["documents"], "seq_len": cfg.seq_len, "train_rows": len(train),
            "train_tokens": int(train.size), "heldout_rows": len(heldout), "seed": cfg.seed}
    with atomic_dir(out, "prepare") as tmp:
        np.save(tmp / "train.npy", train)
        np.save(tmp / "heldout.npy", heldout)
        tok.save_pretrained(tmp / "tokenizer")
        write_json(tmp / "corpus.json", info)
    write_metrics(metrics, info, "prepare", written=out)
    return info
