"""Masked-LM teachers: loading any Hugging Face masked LM (a plain encoder gets BERT's head), the objective the one
teacher loop trains (`MaskedTargets`: cross-entropy at the masked positions, the vocabulary projection on those
positions only), its score (masked-token accuracy), and the general-text teacher of task-agnostic distillation.

all-MiniLM-L6-v2 ships no masked-LM head: `BertForMaskedLM` gives it one, the decoder tied to the word embeddings
and the transform new. `teacher.train: head` trains that transform (and the output bias) with the encoder frozen,
`all` the encoder too, `none` uses the model as it is (a masked LM with its own trained head, e.g. bert-base-uncased).
"""

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from datasets import Dataset

from distillery.config import Range, TrainerConfig, check
from distillery.errors import DistilleryError
from distillery.io import write_metrics
from distillery.teacher.train import final_loss, fit_and_save, quiet_loading

def load_mlm(name: str):
    """(model, tokenizer) of a masked LM: a folder written by this stage, a hub id or a known offline name."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from distillery.teacher.models import resolve_model

    path = resolve_model(name)
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForMaskedLM.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise DistilleryError(f"teacher.base_model {name!r}: cannot load a masked LM ({str(e).splitlines()[0]}); "
                              "give a Hugging Face id (with a network) or a local folder") from None
    return model, tokenizer


def mlm_head(model):
    """The callable that maps hidden states (n, d) to vocabulary logits (n, V) for this architecture."""
    for attr in ("cls", "lm_head", "generator_lm_head"):  # BERT-likes; RoBERTa/XLM-R; ELECTRA
        if hasattr(model, attr):
            head = getattr(model, attr)
            if attr == "generator_lm_head":
                return lambda h: head(model.generator_predictions(h))
            return head
    if hasattr(model, "vocab_projector"):  # DistilBERT
        return lambda h: model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(h))))
    raise DistilleryError(f"{type(model).__name__}: no known masked-LM head; use a BERT, RoBERTa, DistilBERT or "
                          "ELECTRA masked LM")


def uses_segments(model) -> bool:
    return getattr(model.config, "type_vocab_size", 0) >= 2


class MaskedTargets(torch.nn.Module):
    """The C-MLM objective around a masked LM, for the one teacher loop (`teacher.train.fit`): cross-entropy at
    the masked target positions (`labels` other than -100), the vocabulary projection run at those positions
    only; in evaluation `logits` answers the predicted token there (-100 elsewhere), all the dev score needs."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        mlm_head(model)  # refuse an architecture without a known head before training

    def forward(self, input_ids, attention_mask, labels, token_type_ids=None) -> dict:
        masked = labels != -100
        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        logits = mlm_head(self.model)(hidden[masked])  # (n_masked, V)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels[masked])
        if self.model.training:  # the Trainer reads the loss only
            return {"loss": loss}
        pred = torch.full_like(labels, -100)
        pred[masked] = logits.argmax(-1)
        return {"loss": loss, "logits": pred}


def masked_accuracy(p) -> dict:
    """Share of the masked target tokens predicted exactly (the Trainer's `compute_metrics`)."""
    preds, labels = np.asarray(p.predictions), np.asarray(p.label_ids)
    scored = labels != -100
    return {"masked_token_accuracy": float((preds[scored] == labels[scored]).mean()) if scored.any() else 0.0}


def has_trained_head(path: str) -> bool:
    """Whether a checkpoint was saved as a masked LM (its head trained), not a plain encoder given a new head."""
    from transformers import AutoConfig

    return any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in AutoConfig.from_pretrained(path).architectures or [])


@dataclass(frozen=True, kw_only=True)
class MlmTeacherConfig(TrainerConfig):
    """The general-distillation study's `teacher` section: a masked LM for general text (`base_model`: any Hugging
    Face masked LM, or an encoder such as all-MiniLM-L6-v2 whose new head is trained here)."""

    train: str  # head (the new head only, encoder frozen) | all (head and encoder) | none (use it as it is)
    max_rows: Annotated[int, Range(0)]  # corpus rows trained on (0: all)
    mask_prob: Annotated[float, Range(0, 1, lo_open=True)]
    logging_steps: Annotated[int, Range(1)] = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.train in ("head", "all", "none"), "teacher.train",
              f"must be head, all or none, got {self.train!r}")
        check(self.train == "none" or self.epochs > 0, "teacher.epochs", "must be > 0 when teacher.train trains")


class CorpusMasking:
    """Batches of packed corpus rows (`row`, `heldout`), masked by BERT's rule (`data.corpus.MaskRule`): a new
    draw for every training batch (seeded by teacher.seed and a batch counter), one fixed draw per held-out row."""

    def __init__(self, rule, train: np.ndarray, heldout: np.ndarray, seed: int) -> None:
        self.rule, self.rows, self.seed, self.calls = rule, {False: train, True: heldout}, seed, 0

    def __call__(self, features: list[dict]) -> dict:
        rows, held = [f["row"] for f in features], bool(features[0]["heldout"])
        ids = torch.from_numpy(self.rows[held][rows].astype(np.int64))
        if held:
            pairs = [self.rule(ids[i:i + 1], (self.seed, 1, r)) for i, r in enumerate(rows)]
            inputs, labels = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
        else:
            self.calls += 1
            inputs, labels = self.rule(ids, (self.seed, 0, self.calls))
        return {"input_ids": inputs, "attention_mask": torch.ones_like(ids), "labels": labels}


def heldout_accuracy(model, rule, rows: np.ndarray, seed: int, batch: int = 64) -> float:
    """Masked-token accuracy on held-out rows, each masked by the fixed draw `CorpusMasking` gives it."""
    masking = CorpusMasking(rule, rows, rows, seed)
    objective = MaskedTargets(model).eval()
    hit = total = 0
    with torch.inference_mode():
        for s in range(0, len(rows), batch):
            b = masking([{"row": r, "heldout": True} for r in range(s, min(s + batch, len(rows)))])
            pred, labels = objective(**b)["logits"], b["labels"]
            scored = labels != -100
            hit += int((pred[scored] == labels[scored]).sum())
            total += int(scored.sum())
    return hit / max(total, 1)


def general_teacher_stage(cfg: MlmTeacherConfig, prepared: Path, out_dir: Path, metrics: Path, live_dir: Path) -> dict:
    """A masked LM for general text: `train` head / all / none (module docstring), saved with its tokenizer;
    its masked-token accuracy on the held-out rows."""
    from distillery.data.corpus import mask_rule
    from distillery.io import read_json
    from distillery.teacher.models import resolve_model

    info = read_json(Path(prepared) / "corpus.json")
    torch.manual_seed(cfg.seed)  # the new head's weights
    model, tok = load_mlm(cfg.base_model)
    if cfg.train == "none" and not has_trained_head(resolve_model(cfg.base_model)):
        raise DistilleryError(f"param teacher.train: {cfg.base_model} has no trained masked-LM head, and none is "
                              "trained with teacher.train: none; set it to head (or all)")
    if tok.get_vocab() != _prepared_vocab(prepared):
        raise DistilleryError(f"param teacher.base_model: {cfg.base_model}'s vocabulary differs from prepare.tokenizer "
                              f"{info['tokenizer']!r}, which packed the corpus; set both to one model")
    train, heldout = np.load(Path(prepared) / "train.npy"), np.load(Path(prepared) / "heldout.npy")
    if cfg.max_rows:
        train = train[:cfg.max_rows]
    rule = mask_rule(tok, cfg.mask_prob)
    if cfg.train == "head":
        model.base_model.requires_grad_(False)  # the encoder, and the decoder tied to its word embeddings
    rows = lambda n, held: Dataset.from_dict({"row": list(range(n)), "heldout": [held] * n})  # noqa: E731
    final, state, use_bf16, seconds = fit_and_save(
        replace(cfg, epochs=0) if cfg.train == "none" else cfg, MaskedTargets(model), tok, rows(len(train), False),
        rows(len(heldout), True), CorpusMasking(rule, train, heldout, cfg.seed), masked_accuracy, "masked_token_accuracy",
        out_dir, live_dir, saved=model, remove_unused_columns=False, per_device_eval_batch_size=64,
        train_sampling_strategy="random")
    tokens = int(state.global_step * cfg.batch_size * train.shape[1])
    result = {"base_model": cfg.base_model, "train": cfg.train,
              "heldout_masked_token_accuracy": round(float(final["eval_masked_token_accuracy"]), 4),
              "train_rows": len(train) if cfg.train != "none" else 0, "steps": state.global_step,
              "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad) if cfg.train != "none" else 0,
              "final_loss": final_loss(state), "train_seconds": round(seconds, 1),
              "tokens_per_second": round(tokens / seconds, 1) if tokens else None,
              "precision": "bf16" if use_bf16 else "fp32"}
    write_metrics(metrics, result, "teacher", written=out_dir)
    return result


def _prepared_vocab(prepared: Path) -> dict:
    from distillery.teacher.models import load_tokenizer

    return load_tokenizer(Path(prepared) / "tokenizer", None, f"{prepared}/tokenizer").get_vocab()
