"""The `teacher` stage: fine-tune a sequence classifier with the transformers `Trainer`."""

import contextlib
import math
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from distillery.config import TeacherConfig
from distillery.data.prepare import load_prepared
from distillery.errors import DistilleryError
from distillery.hardware import bf16_supported
from distillery.metrics import plateau_step
from distillery.io import atomic_dir, read_json, scratch_dir, staged_live, write_json
from distillery.hub import require_hub
from distillery.teacher.models import (
    DIGESTS,
    check_finite,
    load_tokenizer,
    load_weights,
    resolve_model,
    weight_digests,
    weights_file,
)

TEACHER_INFO = "distillery.json"
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


def tokenize_frame(tokenizer, frame, max_seq_len: int) -> dict:
    """Batch-tokenise a prepared table with the fast tokenizer (no padding: the collator pads)."""
    a = frame["text_a"].tolist()
    b = frame["text_b"].tolist() if (frame["text_b"] != "").any() else None
    return tokenizer(a, b, truncation=True, max_length=max_seq_len)


class _LiveCallback(TrainerCallback):
    """Logs the Trainer's loss and dev metric to DVCLive (`Live(dir, dvcyaml=False)`)."""

    def __init__(self, live, metric: str) -> None:
        self.live, self.metric = live, metric
        self.last_eval: tuple[int, dict] | None = None  # (step, metrics) of the latest dev evaluation

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.live.step = state.global_step
            self.live.log_metric("train/loss", float(logs["loss"]))
            self.live.next_step()

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if not metrics:
            return
        self.last_eval = (state.global_step, dict(metrics))
        if f"eval_{self.metric}" in metrics:
            self.live.step = state.global_step
            self.live.log_metric(f"dev/{self.metric}", float(metrics[f"eval_{self.metric}"]))
            self.live.next_step()


class PlateauStop(TrainerCallback):
    """Stops training after `patience` dev evaluations in a row at which `metric` rose by less than `min_gain` over the
    best before it ("train until the dev score stops rising by more than a point per epoch"). `keep`: the weights of the best
    evaluation are kept in memory and put back when training ends (their metrics in `best_metrics`), and the last
    step is always evaluated, so that the end of a run that never stalled is scored too."""

    def __init__(self, metric: str, min_gain: float, keep: bool = False, patience: int = 1) -> None:
        self.metric, self.min_gain, self.best = f"eval_{metric}", min_gain, None
        self.keep, self.state, self.best_metrics = keep, None, None
        self.patience, self.stalled = patience, 0  # evaluations in a row that gained less than min_gain

    def on_step_end(self, args, state, control, **kw):
        if self.keep and state.global_step >= state.max_steps:
            control.should_evaluate = True

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kw):
        if not metrics or self.metric not in metrics:
            return
        self.best, self.stalled, improved, stop = plateau_step(self.best, self.stalled, float(metrics[self.metric]),
                                                               self.min_gain, self.patience)
        if stop:
            control.should_training_stop = True
        if improved and self.keep and model is not None:
            self.state = {n: t.detach().to("cpu", copy=True) for n, t in model.state_dict().items()}
            self.best_metrics = {**metrics, "epoch": state.epoch, "step": state.global_step}

    def on_train_end(self, args, state, control, model=None, **kw):
        if self.keep and self.state is not None and model is not None:
            model.load_state_dict(self.state)
            self.state = None


def dev_curve(state, metric: str) -> list[dict]:
    """Every dev evaluation in a trainer's history: [{epoch, metric}], in order."""
    return [{"epoch": round(float(h["epoch"]), 2), metric: round(float(h[f"eval_{metric}"]), 4)}
            for h in state.log_history if f"eval_{metric}" in h]


def check_num_labels(model_config, n_labels: int, where: str) -> None:
    archs = model_config.architectures or []
    has_head = any(a.endswith("ForSequenceClassification") for a in archs)
    if has_head and model_config.num_labels != n_labels:
        raise DistilleryError(
            f"{where}: teacher has num_labels={model_config.num_labels} but the data has {n_labels} labels; "
            "use a teacher fine-tuned on this task, or a base encoder to fine-tune"
        )


def check_seq_len(model_config, max_seq_len: int, param: str) -> None:
    """Refuse a max_seq_len beyond the model's position embeddings (e.g. 512 for BERT)."""
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit is not None and max_seq_len > limit:
        raise DistilleryError(f"param {param}: {max_seq_len} tokens, but the model has {limit} positions; "
                              f"set it to at most {limit}")


@contextlib.contextmanager
def quiet_loading():
    """transformers' weight-loading bar and load report (a table of missing / unexpected keys) off."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def build_teacher(cfg: TeacherConfig, prep):
    """The base model with a new classifier for `prep`'s labels (and the member's own dropout, if set),
    after checking its label count and positions; and its tokenizer."""
    path = resolve_model(cfg.base_model)  # reachable or local: train_teacher checked it before reading any data
    try:
        base_cfg = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise DistilleryError(
            f"param teacher.base_model: cannot load {cfg.base_model!r} ({str(e).splitlines()[0]}); "
            "give a local folder or a Hugging Face id reachable from here"
        ) from None
    check_num_labels(base_cfg, prep.num_labels, f"param teacher.base_model ({cfg.base_model})")
    check_seq_len(base_cfg, cfg.max_seq_len, "teacher.max_seq_len")
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(path, getattr(base_cfg, "vocab_size", None), f"param teacher.base_model ({cfg.base_model})")
    drop = {}
    if cfg.dropout is not None:  # an ensemble member's own dropout, under whatever names this architecture uses
        drop = {k: cfg.dropout for k in DROPOUT_KEYS if hasattr(base_cfg, k)}
        if not drop:
            raise DistilleryError(f"param teacher.dropout: {cfg.base_model} ({base_cfg.model_type}) has no dropout "
                                  "setting distillery knows; leave teacher.dropout unset")
    with quiet_loading():  # the new classifier is expected to be missing: no load report, no loading bar
        model = load_weights(
            AutoModelForSequenceClassification, path, f"base model ({cfg.base_model})",
            **drop,
            num_labels=prep.num_labels,
            problem_type="regression" if prep.task.regression else "single_label_classification",  # MSE or CE
            id2label=dict(enumerate(prep.label_names)),
            label2id={n: i for i, n in enumerate(prep.label_names)},
        )
    return model, tokenizer


def train_teacher(cfg: TeacherConfig, prepared_dir: str | Path, out_dir: str | Path, live_dir: str | Path) -> dict:
    """Fine-tune (or, with epochs 0, only check and evaluate) the teacher; save it with save_pretrained."""
    require_hub(resolve_model(cfg.base_model), "teacher.base_model")  # before anything else: offline, one line at once
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    prep = load_prepared(prepared_dir)
    task, train, dev = prep.task, prep.train, prep.dev
    model, tokenizer = build_teacher(cfg, prep)
    train_enc = tokenize_frame(tokenizer, train, cfg.max_seq_len)
    # regression: float targets (the model's one output is trained with MSE); classification: class ids
    train_ds = Dataset.from_dict({**train_enc, "labels": train["label"].tolist(),
                                  "length": [len(x) for x in train_enc["input_ids"]]})
    dev_ds = Dataset.from_dict({**tokenize_frame(tokenizer, dev, cfg.max_seq_len), "labels": dev["label"].tolist()})

    def compute_metrics(p) -> dict:
        preds = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        return {**task.score(p.label_ids, np.asarray(preds).reshape(len(p.label_ids), -1)), "scored": len(preds)}

    def info(final: dict) -> dict:
        return {"task": task.name, "problem": task.problem, "label_names": prep.label_names, "metric": task.metric,
                "metrics": list(task.metrics), "pair": task.is_pair, "max_seq_len": cfg.max_seq_len,
                "base_model": cfg.base_model, "seed": cfg.seed, "dropout": cfg.dropout,
                **{f"dev_{m}": float(final[f"eval_{m}"]) for m in task.metrics}}

    plateau = cfg.min_gain is not None and cfg.epochs > 0
    final, state, use_bf16, _ = fit_and_save(
        cfg, model, tokenizer, train_ds, dev_ds, DataCollatorWithPadding(tokenizer), compute_metrics, task.metric,
        out_dir, live_dir, info, callbacks=[PlateauStop(task.metric, cfg.min_gain, True, cfg.patience)] if plateau else [])
    out = {"task": task.name, "metric": task.metric, **{f"dev_{m}": float(final[f"eval_{m}"]) for m in task.metrics},
           "n_train": len(train), "n_dev": int(final["eval_scored"]),  # predictions scored: every dev row
           "bf16": use_bf16, "params": sum(p.numel() for p in model.parameters())}
    if plateau:  # every evaluation, and which one the saved weights are
        out |= {"kept_epoch": round(float(final["epoch"]), 2), "trained_epochs": round(float(state.epoch or 0), 2),
                "steps": int(state.global_step), "curve": dev_curve(state, task.metric)}
    return out


def fit_and_save(cfg, model, tokenizer, train_ds, dev_ds, collator, compute_metrics, metric: str, out_dir: str | Path,
                 live_dir: str | Path, info=None, saved=None, **extra) -> tuple[dict, object, bool, float]:
    """Every teacher stage's training and save: `fit` (bf16 where `cfg.bf16` asks and the device has it), then the
    weights checked and saved (`saved`, when `model` is an objective wrapped around it) with the tokenizer (and
    `info(final evaluation)` as distillery.json) in one atomic step, the curves published with them or not at all. Returns (the final dev evaluation, the trainer's
    state, whether bf16 ran, seconds)."""
    use_bf16 = cfg.bf16 and bf16_supported("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    with staged_live(live_dir) as (live_tmp, publish):  # the curves change together with the model, or not at all
        with scratch_dir(out_dir, "trainer") as scratch:  # the Trainer's output_dir: beside ours, removed after
            final, state = fit(cfg, model, tokenizer, train_ds, dev_ds, collator, compute_metrics, metric, scratch,
                               live_tmp, use_bf16, **extra)
        check_finite(model, f"the trained teacher for {out_dir}", "lower teacher.lr or check the data")
        with atomic_dir(out_dir, "teacher") as tmp:
            (saved or model).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / TEACHER_INFO, {**(info(final) if info is not None else {}),
                                            DIGESTS: weight_digests(tmp)})
        publish()
    return final, state, use_bf16, time.perf_counter() - t0


def final_loss(state) -> float | None:
    """The last training loss a trainer logged (None when it trained no step)."""
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    return round(float(losses[-1]), 4) if losses else None


def plateau_args(cfg, rows: int) -> dict:
    """`TrainingArguments` of a teacher trained to a plateau (`min_gain` set): `evals_per_epoch` evaluations an
    epoch; `max_steps` (when set) caps the optimizer steps before `epochs` would."""
    out = {}
    per_epoch = max(1, math.ceil(rows / cfg.batch_size))
    if getattr(cfg, "max_steps", 0) and cfg.epochs > 0:  # the Trainer's max_steps overrides its epochs: the fewer
        out["max_steps"] = min(cfg.max_steps, math.ceil(cfg.epochs * per_epoch))
    if hasattr(cfg, "evals_per_epoch") and cfg.min_gain is not None and cfg.epochs > 0:  # a classification teacher's
        out |= {"eval_strategy": "steps", "eval_steps": max(1, math.ceil(per_epoch / cfg.evals_per_epoch))}
    return out


def fit(cfg, model, tokenizer, train_ds, dev_ds, collator, compute_metrics, metric: str, scratch: Path,
        live_dir: str | Path, use_bf16: bool, callbacks=(), **extra) -> tuple[dict, object]:
    """The one teacher loop, for every task: fine-tune `model` with the transformers `Trainer` (linear warm-up and
    decay, AdamW without decay on biases and norms, clipping at 1, batches grouped by length, nothing when
    epochs is 0), curves to DVCLive; then the dev evaluation of the final weights. `extra`: more
    `TrainingArguments`; `callbacks`: more `TrainerCallback`s (e.g. `PlateauStop`). Returns (that evaluation's metrics, the trainer's state)."""
    from dvclive import Live

    args = TrainingArguments(**{
        "output_dir": str(scratch),
        "num_train_epochs": cfg.epochs,
        "per_device_train_batch_size": cfg.batch_size,
        "per_device_eval_batch_size": 128,
        "learning_rate": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "warmup_steps": cfg.warmup_ratio,
        "lr_scheduler_type": "linear",
        "bf16": use_bf16,
        "logging_steps": cfg.logging_steps,
        "eval_strategy": "epoch" if cfg.epochs > 0 else "no",
        **plateau_args(cfg, len(train_ds)),
        "save_strategy": "no",
        "report_to": "none",
        "seed": cfg.seed,
        "train_sampling_strategy": "group_by_length",
        "dataloader_num_workers": 0,
        "use_cpu": not torch.cuda.is_available(),
        **extra,
    })
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:
        callback = _LiveCallback(live, metric)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=dev_ds,
            data_collator=collator,
            processing_class=tokenizer,
            compute_metrics=compute_metrics,
            callbacks=[callback, *callbacks],
        )
        if cfg.epochs > 0:
            trainer.train()
        best = next((c for c in callbacks if isinstance(c, PlateauStop) and c.keep), None)
        if best is not None and best.best_metrics is not None:
            final = best.best_metrics  # the weights put back: those of the best evaluation
        elif callback.last_eval is not None and callback.last_eval[0] == trainer.state.global_step:
            final = callback.last_eval[1]  # the last epoch's evaluation saw the final weights: not again
        else:
            final = trainer.evaluate()
    return final, trainer.state


def load_teacher(teacher_dir: str | Path, n_labels: int | None = None):
    """Load a saved teacher (model in eval mode, tokenizer, info); check its label count."""
    d = Path(teacher_dir)
    if not (d / "config.json").is_file():
        raise DistilleryError(f"{d}: no teacher here; run `distillery teacher` (or dvc repro) first")
    try:
        model_cfg = AutoConfig.from_pretrained(d)
    except (OSError, ValueError) as e:
        raise DistilleryError(f"{d / 'config.json'}: cannot be read ({str(e).splitlines()[0][:200]}); re-run "
                              "`distillery teacher`") from None
    if n_labels is not None and model_cfg.num_labels != n_labels:
        raise DistilleryError(
            f"{d / 'config.json'}: teacher has num_labels={model_cfg.num_labels} but the data has {n_labels} "
            "labels; re-run the teacher stage on this data or point --teacher at a matching model"
        )
    tokenizer = load_tokenizer(d, getattr(model_cfg, "vocab_size", None), f"teacher {d}")
    with quiet_loading():
        model = load_weights(AutoModelForSequenceClassification, d).eval()
    check_finite(model, weights_file(d), "the file is damaged or the training diverged: re-run `distillery teacher`")
    info = read_json(d / TEACHER_INFO) if (d / TEACHER_INFO).is_file() else {}
    return model, tokenizer, info
