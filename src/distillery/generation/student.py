"""The text-generation student (Chen et al. 2020): a Transformer encoder-decoder built with transformers' own
BART classes from a config, over the teacher's vocabulary (teacher and student share one WordPiece
tokenizer, so the teacher's top-k token ids index the student's softmax directly).

Sequences: the encoder reads `src [SEP]`; the decoder starts from `[CLS]` and predicts `tgt [SEP]`, so
`[SEP]` is the end-of-sentence token. Decoding is `generate` (beam search), or greedy.

Output vocabulary: the embedding matrix covers the whole shared vocabulary (the encoder reads German
WordPiece), but with `output_vocab: target` the decoder's softmax covers only the tokens that occur in the
training targets (and [SEP]): the others carry a bias of -1e4 in BART's own `final_logits_bias`, so
`generate`, the ONNX export and training (which computes logits on that subset only) all agree. On this CPU
the vocabulary projection is most of a training step; Multi30k's English side uses about 8,700 of the
30,522 WordPiece tokens (a target-side shortlist, as NMT toolkits use).

Initialisation: weights and embeddings are drawn with standard deviation d_model^-0.5 (Vaswani et al.'s
embedding scale: times BART's sqrt(d_model) embedding scale, unit variance), not BART's default 0.02, which
is tuned for width 1024. At width 128 the default left every student writing the same caption whatever the
source for 600 steps (3 distinct outputs on 300 val sentences, greedy BLEU 2.7); d_model^-0.5 gave 293
distinct outputs and BLEU 11.5 on the same batches (README, "Text generation").
"""

from pathlib import Path

import numpy as np
import torch

from distillery.errors import DistilleryError
from distillery.generation.config import Seq2SeqConfig
from distillery.generation.data import Encoded, pad, special_ids

MAX_POSITIONS = 1024


BLOCKED = -1e4  # final_logits_bias of tokens outside the output vocabulary


def output_vocab(cfg: Seq2SeqConfig, enc: Encoded, vocab_size: int) -> np.ndarray:
    """Sorted token ids the decoder may emit: every id (`full`), or those of the training targets + [SEP]."""
    if cfg.output_vocab == "full":
        return np.arange(vocab_size)
    return np.unique(np.fromiter((i for t in enc.tgt for i in t), dtype=np.int64).tolist() + [enc.sep])


def build_student(cfg: Seq2SeqConfig, tokenizer, max_len: int, vocab: np.ndarray | None = None,
                  init_std: float | None = None):
    """A randomly initialised BartForConditionalGeneration of the configured size (embeddings tied, weights
    N(0, init_std^2), by default init_std = d_model^-0.5); with `vocab`, tokens outside it are blocked in
    `final_logits_bias`."""
    from transformers import BartConfig, BartForConditionalGeneration

    cls, sep, pad_id, _ = special_ids(tokenizer)
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=cfg.d_model, encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers, encoder_attention_heads=cfg.heads, decoder_attention_heads=cfg.heads,
        encoder_ffn_dim=cfg.ffn_dim, decoder_ffn_dim=cfg.ffn_dim, dropout=cfg.dropout, attention_dropout=0.0,
        activation_dropout=0.0, activation_function="gelu", max_position_embeddings=min(max_len + 2, MAX_POSITIONS),
        pad_token_id=pad_id, bos_token_id=cls, eos_token_id=sep, decoder_start_token_id=cls, forced_eos_token_id=None,
        forced_bos_token_id=None, scale_embedding=True, tie_word_embeddings=True,
        init_std=init_std or cfg.d_model ** -0.5,
    )
    torch.manual_seed(cfg.seed)
    model = BartForConditionalGeneration(config)
    if vocab is not None and len(vocab) < config.vocab_size:
        blocked = torch.ones(config.vocab_size, dtype=torch.bool)
        blocked[torch.from_numpy(vocab)] = False
        model.final_logits_bias[0, blocked] = BLOCKED
    set_generation(model, max_len, 1)
    return model


def allowed_ids(model) -> torch.Tensor:
    """The output vocabulary of a (saved) student: ids whose final_logits_bias is not blocked."""
    return (model.final_logits_bias[0] > BLOCKED / 2).nonzero().squeeze(1)


def subset_logits(model, batch: dict, decoder_input_ids: torch.Tensor, vocab: torch.Tensor) -> torch.Tensor:
    """Logits over `vocab` only (bs, T, |vocab|): equal to the full logits at those ids, without computing the
    others (the softmax over them is the full softmax, whose blocked ids have probability ~0)."""
    hidden = model.model(**batch, decoder_input_ids=decoder_input_ids).last_hidden_state  # (bs, T, d)
    return hidden @ model.lm_head.weight[vocab].T + model.final_logits_bias[0, vocab]


def set_generation(model, max_len: int, beam: int) -> None:
    g = model.generation_config
    c = model.config
    g.decoder_start_token_id, g.bos_token_id, g.eos_token_id, g.pad_token_id = (
        c.decoder_start_token_id, c.bos_token_id, c.eos_token_id, c.pad_token_id)
    g.forced_bos_token_id = g.forced_eos_token_id = None
    g.max_length, g.num_beams, g.no_repeat_ngram_size = max_len + 2, beam, 0


def load_seq2seq(path: str | Path):
    from transformers import AutoTokenizer, BartForConditionalGeneration

    path = Path(path)
    if not (path / "config.json").is_file():
        raise DistilleryError(f"{path}: no student here (config.json missing); run `distillery gen-distill` first")
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
