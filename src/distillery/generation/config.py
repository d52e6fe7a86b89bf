"""Frozen, validated configs of the text-generation study (C-MLM, `studies/cmlm`), one per stage, built from
its section of the study's params.yaml. As in `distillery.config`: no defaults for what params.yaml sets,
and every `__post_init__` names the param it refuses."""

from dataclasses import dataclass

from distillery.config import TrainerConfig, check, check_int, check_name, check_num

SPLITS = ("train", "dev", "test")  # prepared names; prepare.splits maps each to a file stem


@dataclass(frozen=True)
class GenPrepareConfig:
    data_dir: str  # a folder of parallel files: <stem>.<src_lang> and <stem>.<tgt_lang>, line i translating line i
    src_lang: str
    tgt_lang: str
    splits: dict[str, str]  # train/dev/test -> file stem (Multi30k: train, val, test_2016_flickr)
    tokenizer: str  # the teacher's base model: its WordPiece vocabulary is shared by teacher and student
    max_src_len: int  # WordPiece tokens, without special tokens: a longer sentence is an error (file:line)
    max_tgt_len: int
    max_train: int  # 0: every training pair; else a seeded sample of this many
    max_eval: int  # 0: the whole dev and test sets; else the first this many of each (quick runs, tests)
    seed: int

    def __post_init__(self) -> None:
        for name in ("src_lang", "tgt_lang"):
            check_name(getattr(self, name), f"prepare.{name}")
        check(isinstance(self.splits, dict) and set(self.splits) == set(SPLITS), "prepare.splits",
               f"must map each of {', '.join(SPLITS)} to a file stem, got {self.splits!r}")
        for split, stem in self.splits.items():
            check_name(str(stem), f"prepare.splits.{split}")
        check_int(self.max_src_len, "prepare.max_src_len", 1, 1000)
        check_int(self.max_tgt_len, "prepare.max_tgt_len", 1, 1000)
        check_int(self.max_train, "prepare.max_train", 0)
        check_int(self.max_eval, "prepare.max_eval", 0)
        check_int(self.seed, "prepare.seed", 0)


@dataclass(frozen=True, kw_only=True)
class CmlmTeacherConfig(TrainerConfig):
    """Chen et al. 2020's teacher: a masked LM fine-tuned on `[CLS] source [SEP] target [SEP]` (`base_model`: any
    Hugging Face masked LM; a plain encoder such as all-MiniLM-L6-v2 gets a new MLM head)."""

    mask_prob: float  # share of target tokens masked (always with [MASK])
    eos_mask_prob: float  # probability that the final [SEP] is masked too (so the model learns to end)
    logging_steps: int = 50
    min_gain: float = 0.0  # stop after an epoch whose val masked-token accuracy rose by less (0: run every epoch)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_num(self.min_gain, "teacher.min_gain", 0, 1)
        check_num(self.mask_prob, "teacher.mask_prob", 0, 1, lo_open=True)
        check_num(self.eos_mask_prob, "teacher.eos_mask_prob", 0, 1)


@dataclass(frozen=True)
class GenSoftLabelConfig:
    top_k: int  # logits kept per target token (with their token ids); students may read fewer
    max_copies: int  # a pair is repeated with strided masks: every target position masked exactly once
    batch_tokens: int
    bf16: bool
    checkpoint_every: int = 2048  # pairs per store part: a killed run loses at most this much work

    def __post_init__(self) -> None:
        check_int(self.top_k, "soft_labels.top_k", 1, 1024)
        check_int(self.max_copies, "soft_labels.max_copies", 1, 1000)
        check_int(self.batch_tokens, "soft_labels.batch_tokens", 1)
        check_int(self.checkpoint_every, "soft_labels.checkpoint_every", 1)


@dataclass(frozen=True)
class GenEvaluateConfig:
    beam: int
    batch_size: int  # sentences per generate() call for BLEU
    latency_sentences: int  # test sentences timed at batch 1 (and in batches of 32)
    threads: int

    def __post_init__(self) -> None:
        check_int(self.beam, "evaluate.beam", 1, 64)
        check_int(self.batch_size, "evaluate.batch_size", 1)
        check_int(self.latency_sentences, "evaluate.latency_sentences", 1)
        check_int(self.threads, "evaluate.threads", 1, 1024)
