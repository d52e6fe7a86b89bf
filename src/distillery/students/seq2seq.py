"""The sequence-to-sequence student (Chen et al. 2020): a Transformer encoder-decoder built with transformers'
own BART classes from a config, over the teacher's vocabulary, answering with per-token logits.

Sequences: the encoder reads `src [SEP]`; the decoder starts from `[CLS]` and predicts `tgt [SEP]`, so `[SEP]`
is the end-of-sentence token. Decoding is `generate` (beam search), or greedy; the export is an encoder and a
decoder step with a key-value cache (`generation/export.py`).

Output vocabulary: with `output_vocab: target` the softmax covers only the tokens of the training targets (and
[SEP]): the others carry a bias of -1e4 in BART's own `final_logits_bias`, so `generate`, the ONNX export and
training (which computes logits on that subset only) agree. Initialisation: N(0, 1/d_model), not BART's 0.02,
which left a width-128 student writing one caption for every source (docs/study-cmlm.md).
"""

from dataclasses import dataclass, field
from pathlib import Path

import torch

from distillery.outputs import MAIN, ModelOutput
from distillery.students.base import STUDENTS, Student

BLOCKED = -1e4  # final_logits_bias of tokens outside the output vocabulary


@dataclass
class Seq2SeqStudentConfig:
    output_vocab: str = "target"  # "target": the tokens of the training targets (and [SEP]); "full": every token
    dropout: float = 0.1
    d_model: int = 128  # width
    encoder_layers: int = 3
    decoder_layers: int = 3
    heads: int = 4  # attention heads, in the encoder and the decoder
    ffn_dim: int = 512
    vocab_size: int = 30522  # the shared (teacher's) vocabulary; set by the task from the tokenizer
    pad_id: int = 0
    cls_id: int = 101  # the decoder's start token
    sep_id: int = 102  # the end of a sentence
    max_positions: int = 128
    vocab: list[int] = field(default_factory=list)  # the output vocabulary's ids (set by the task); [] = every id
    init_std: float = 0.0  # 0: d_model^-0.5 (BART's own default, 0.02, is for width 1024)


@STUDENTS.register("seq2seq")
class Seq2SeqStudent(Student):
    Config = Seq2SeqStudentConfig
    params_group = "seq2seq"
    card = ("a Transformer encoder-decoder (BART classes) over the teacher's vocabulary", "Chen et al. 2020",
            "Distilling Knowledge Learned in BERT for Text Generation", "1911.03829")
    provides = frozenset({"tokens"})  # per-token logits: the token losses
    export_format = "seq2seq"
    library = "transformers"
    regression = False
    regression_refusal = "it writes text"

    def __init__(self, config: Seq2SeqStudentConfig, hf=None) -> None:
        super().__init__()
        self.config = config
        if config.output_vocab not in ("target", "full"):
            raise ValueError(f"output_vocab must be target or full, got {config.output_vocab!r}")
        if config.d_model % config.heads:
            raise ValueError(f"heads {config.heads} must divide d_model {config.d_model}")
        self.hf = hf if hf is not None else self.build(config)
        self.register_buffer("vocab", allowed_ids(self.hf), persistent=False)  # (|vocab|,) output ids

    @staticmethod
    def build(c: Seq2SeqStudentConfig):
        """A randomly initialised BartForConditionalGeneration (embeddings tied, weights N(0, 1/d_model));
        tokens outside `c.vocab` blocked in `final_logits_bias`."""
        from transformers import BartConfig, BartForConditionalGeneration

        config = BartConfig(
            vocab_size=c.vocab_size, d_model=c.d_model, encoder_layers=c.encoder_layers,
            decoder_layers=c.decoder_layers, encoder_attention_heads=c.heads, decoder_attention_heads=c.heads,
            encoder_ffn_dim=c.ffn_dim, decoder_ffn_dim=c.ffn_dim, dropout=c.dropout, attention_dropout=0.0,
            activation_dropout=0.0, activation_function="gelu", max_position_embeddings=c.max_positions,
            pad_token_id=c.pad_id, bos_token_id=c.cls_id, eos_token_id=c.sep_id, decoder_start_token_id=c.cls_id,
            forced_eos_token_id=None, forced_bos_token_id=None, scale_embedding=True, tie_word_embeddings=True,
            init_std=c.init_std or c.d_model ** -0.5)
        model = BartForConditionalGeneration(config)
        if c.vocab and len(c.vocab) < c.vocab_size:
            blocked = torch.ones(c.vocab_size, dtype=torch.bool)
            blocked[torch.tensor(c.vocab)] = False
            model.final_logits_bias[0, blocked] = BLOCKED
        g = model.generation_config
        g.decoder_start_token_id, g.bos_token_id, g.eos_token_id, g.pad_token_id = c.cls_id, c.cls_id, c.sep_id, c.pad_id
        g.forced_bos_token_id = g.forced_eos_token_id = None
        g.max_length, g.num_beams, g.no_repeat_ngram_size = c.max_positions, 1, 0
        return model

    @property
    def input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "decoder_input_ids"]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, decoder_input_ids: torch.Tensor,
                hidden: bool = False, scores: bool = False) -> ModelOutput:
        """Logits over the output vocabulary only (bs, T, |vocab|): equal to the full logits at those ids, without
        computing the others (whose softmax probability is ~0 anyway)."""
        h = self.hf.model(input_ids=input_ids, attention_mask=attention_mask,
                          decoder_input_ids=decoder_input_ids).last_hidden_state  # (bs, T, d)
        logits = h @ self.hf.lm_head.weight[self.vocab].T + self.hf.final_logits_bias[0, self.vocab]
        return ModelOutput(logits={MAIN: logits}, mask=attention_mask)

    def save_weights(self, folder: Path) -> None:
        self.hf.save_pretrained(folder)  # config.json + model.safetensors: `generate` and the export load it as is

    @classmethod
    def load_weights(cls, folder: Path, config: Seq2SeqStudentConfig) -> "Seq2SeqStudent":
        from transformers import BartForConditionalGeneration

        return cls(config, BartForConditionalGeneration.from_pretrained(folder))


def allowed_ids(model) -> torch.Tensor:
    """The output vocabulary of a BART student: ids whose final_logits_bias is not blocked."""
    return (model.final_logits_bias[0] > BLOCKED / 2).nonzero().squeeze(1)
