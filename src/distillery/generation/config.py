"""Frozen, validated configs of the text-generation study (C-MLM, `studies/cmlm`), one per stage, built from
its section of the study's params.yaml. As in `distillery.config`: no defaults for what params.yaml sets, ranges
beside their fields (`Range`), and every check names the param it refuses."""

from dataclasses import dataclass
from typing import Annotated

from distillery.config import Checked, Range, TrainerConfig, check, check_name

SPLITS = ("train", "dev", "test")  # prepared names; prepare.splits maps each to a file stem


@dataclass(frozen=True)
class GenPrepareConfig(Checked):
    section = "prepare"
    data_dir: str  # a folder of parallel files: <stem>.<src_lang> and <stem>.<tgt_lang>, line i translating line i
    src_lang: str
    tgt_lang: str
    splits: dict[str, str]  # train/dev/test -> file stem (Multi30k: train, val, test_2016_flickr)
    tokenizer: str  # the teacher's base model: its WordPiece vocabulary is shared by teacher and student
    max_src_len: Annotated[int, Range(1, 1000)]  # WordPiece tokens, without special tokens: longer is an error
    max_tgt_len: Annotated[int, Range(1, 1000)]
    max_train: Annotated[int, Range(0)]  # 0: every training pair; else a seeded sample of this many
    max_eval: Annotated[int, Range(0)]  # 0: the whole dev and test sets; else the first this many of each
    seed: Annotated[int, Range(0)]

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("src_lang", "tgt_lang"):
            check_name(getattr(self, name), f"prepare.{name}")
        check(isinstance(self.splits, dict) and set(self.splits) == set(SPLITS), "prepare.splits",
               f"must map each of {', '.join(SPLITS)} to a file stem, got {self.splits!r}")
        for split, stem in self.splits.items():
            check_name(str(stem), f"prepare.splits.{split}")


@dataclass(frozen=True, kw_only=True)
class CmlmTeacherConfig(TrainerConfig):
    """Chen et al. 2020's teacher: a masked LM fine-tuned on `[CLS] source [SEP] target [SEP]` (`base_model`: any
    Hugging Face masked LM; a plain encoder such as all-MiniLM-L6-v2 gets a new MLM head)."""

    mask_prob: Annotated[float, Range(0, 1, lo_open=True)]  # share of target tokens masked (always with [MASK])
    eos_mask_prob: Annotated[float, Range(0, 1)]  # probability that the final [SEP] is masked too (learn to end)
    logging_steps: Annotated[int, Range(1)] = 50
    # stop after an epoch whose val masked-token accuracy rose by less (0: run every epoch)
    min_gain: Annotated[float, Range(0, 1)] = 0.0


@dataclass(frozen=True)
class GenSoftLabelConfig(Checked):
    section = "soft_labels"
    top_k: Annotated[int, Range(1, 1024)]  # logits kept per target token (with their token ids); students may read fewer
    max_copies: Annotated[int, Range(1, 1000)]  # a pair is repeated with strided masks: each target position masked once
    batch_tokens: Annotated[int, Range(1)]
    bf16: bool
    checkpoint_every: Annotated[int, Range(1)] = 2048  # pairs per store part: a killed run loses at most this much


@dataclass(frozen=True)
class GenEvaluateConfig(Checked):
    section = "evaluate"
    beam: Annotated[int, Range(1, 64)]
    batch_size: Annotated[int, Range(1)]  # sentences per generate() call for BLEU
    latency_sentences: Annotated[int, Range(1)]  # test sentences timed at batch 1 (and in batches of 32)
    threads: Annotated[int, Range(1, 1024)]
