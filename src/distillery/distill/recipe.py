"""The `distill` stage as a recipe, in the shape of torchtune's knowledge-distillation recipe: set up
the data, the student, its losses and the teacher source, then for each step (TinyBERT's and
MobileBERT's intermediate step, then the last) the optimizer and the loop of loss steps; evaluate on
dev after each epoch of the last step; save.

What a step needs is read from its losses' declarations (`Loss.needs`): stored teacher logits or
[CLS] states, the teacher run alongside, the student's hidden states or attention scores, labels.

Data-parallel: under `torchrun --nproc-per-node N` (or `accelerate launch`), each process takes
1/N of every global batch (`batch_size` stays the global batch) and gradients are averaged before
the optimizer step, so N processes train the student one process would, within float tolerance.
Rank 0 evaluates, logs and saves.
"""

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from distillery.config import StepConfig, StudentConfig, check_types, merge_student
from distillery.data.batching import length_batches, text_lengths
from distillery.data.prepare import Prepared, load_prepared
from distillery.data.table import read_table
from distillery.dist import World, finish, init_world
from distillery.distill.teacher import TeacherSource
from distillery.errors import DistilleryError
from distillery.evaluate.predict import predict_logits
from distillery.hardware import bf16_supported
from distillery.io import staged_live, write_json
from distillery.losses import LOSSES, Loss, LossContext
from distillery.losses.base import STUDENT_PARTS
from distillery.students import STUDENTS, save_student
from distillery.students.base import Student
from distillery.teacher.train import check_seq_len, load_teacher


@dataclass
class Paths:
    prepared: Path
    teacher: Path
    logits: Path
    augmented: Path | None
    out: Path
    metrics: Path
    live: Path


@dataclass
class Step:
    """One training step, set up: its losses (weight, module), transfer set and teacher outputs."""

    cfg: StepConfig
    losses: dict[str, tuple[float, Loss]]
    needs: set[str]
    data: pd.DataFrame | None = None
    labels: torch.Tensor | None = None
    stored: dict | None = None
    alongside: bool = False

    @property
    def last(self) -> bool:
        return not self.cfg.param.endswith(".intermediate")


def build_student_config(cls: type[Student], model_args: dict, prep: Prepared, tokenizer, name: str,
                         teacher_hidden: int | None = None):
    """The family's config: what the data and the teacher fix, then the student's model_args."""
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = [k for k in model_args if k not in fields]
    if unknown:
        raise DistilleryError(f"param students.{name}.model_args.{unknown[0]}: {cls.family} has no such setting; "
                              f"choose from {', '.join(fields)}")
    derived = {"num_labels": prep.num_labels, "pair": prep.task.is_pair, "vocab_size": len(tokenizer),
               "pad_id": tokenizer.pad_token_id, "embed_dim": teacher_hidden,
               "input_names": list(tokenizer.model_input_names)}
    merged = {k: v for k, v in derived.items() if k in fields and v is not None} | model_args
    check_types(cls.Config, model_args, f"students.{name}.model_args")
    return cls.Config(**merged)


def student_config(name: str, block: dict, defaults: dict) -> StudentConfig:
    """`students.<name>` on top of `distill.common` and `distill.<its family's group>` (params.yaml)."""
    model = block.get("model")
    if not model:
        raise DistilleryError(f"param students.{name}.model: missing; name a student family ({', '.join(STUDENTS)})")
    group = STUDENTS.get(str(model), param=f"students.{name}.model").params_group
    if not isinstance(defaults, dict):
        raise DistilleryError("param distill: must be a block of family defaults (common, "
                              f"{', '.join(sorted({STUDENTS.get(n).params_group for n in STUDENTS} - {''}))})")
    groups = {"common"} | {STUDENTS.get(n).params_group for n in STUDENTS} - {""}
    for key, value in defaults.items():  # a typo'd group (distill.bilstmm) would silently train with the defaults
        if key not in groups:
            raise DistilleryError(f"param distill.{key}: not a family group; use {', '.join(sorted(groups))}")
        if value is not None and not isinstance(value, dict):
            raise DistilleryError(f"param distill.{key}: must be a block of settings")
    cfg = merge_student(name, block, defaults, group)
    family = STUDENTS.get(str(model))
    known = {f.name for f in dataclasses.fields(family.Config)}
    unknown = [k for k in cfg.model_args if k not in known]
    if unknown:  # before any data or teacher is loaded
        raise DistilleryError(f"param students.{name}.model_args.{unknown[0]}: {family.family} has no such setting; "
                              f"choose from {', '.join(sorted(known))}")
    check_types(family.Config, cfg.model_args, f"students.{name}.model_args")
    return cfg


def transfer_set(step: StepConfig, train: pd.DataFrame, augmented: Path | None, rng: np.random.Generator,
                 regression: bool = False):
    """(frame, labels) of a step's transfer set; generated texts have no gold label: -100 for a class
    (cross-entropy's ignore index), NaN for a regression score."""
    none = np.nan if regression else -100
    if step.transfer_set == "augmented":
        data = read_table(Path(augmented) / "augmented.tsv", score=regression)
        labels = np.where(data["rules"].to_numpy() == "original", data["label"].to_numpy(), none)
    else:
        data, labels = train, train["label"].to_numpy()
    if step.max_examples and step.max_examples < len(data):
        keep = np.sort(rng.choice(len(data), size=step.max_examples, replace=False))
        data, labels = data.iloc[keep].reset_index(drop=True), labels[keep]
    return data, torch.tensor(np.asarray(labels), dtype=torch.float32 if regression else torch.long)


def lr_schedule(opt, cfg: StudentConfig, total_steps: int):
    """adamw: linear warm-up over `warmup_ratio` of the steps, then linear decay to 0; adam: constant."""
    if cfg.optimizer != "adamw" or total_steps == 0:
        return None
    warm = int(cfg.warmup_ratio * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(warm, 1) if s < warm else max(0.0, (total_steps - s) / max(total_steps - warm, 1)))


def average_gradients(params: list[torch.Tensor], world: World) -> None:
    """All-reduce the gradients of every process into their mean (one flat buffer)."""
    if world.size == 1:
        return
    for p in params:  # a process with no rows in this batch (or a loss that skips a weight) adds zeros
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


class Recipe:
    """`Recipe(cfg, paths).run()` trains, evaluates and saves one student; returns its metrics."""

    def __init__(self, cfg: StudentConfig, paths: Paths) -> None:
        self.cfg, self.paths = cfg, paths
        self.world = init_world()
        self.device = self.world.device  # a GPU where there is one; bf16 autocast there where it supports it
        self.bf16 = self.device.type == "cuda" and bf16_supported("cuda")
        self.rng = np.random.default_rng(cfg.seed)
        self.history: list[dict] = []

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Data, student, every step's losses, the teacher source; every input checked before any output."""
        cfg = self.cfg
        cls = STUDENTS.get(cfg.model, param=f"students.{cfg.name}.model")
        self.prep = load_prepared(self.paths.prepared)
        _, self.tokenizer, self.teacher_info = load_teacher(self.paths.teacher, n_labels=self.prep.num_labels)
        from transformers import AutoConfig

        self.teacher_config = AutoConfig.from_pretrained(self.paths.teacher)
        check_seq_len(self.teacher_config, cfg.max_seq_len, f"students.{cfg.name}.max_seq_len")
        if self.prep.task.regression and not cls.regression:
            raise DistilleryError(f"param students.{cfg.name}.model: the {cls.family} student cannot learn a regression "
                                  f"(task {self.prep.task.name}): {cls.regression_refusal}; leave it out for this task")
        self.model = self.setup_student(cls).to(self.device)
        self.steps = [self.setup_losses(step) for step in cfg.steps()]
        for step in self.steps:
            aug = self.paths.augmented
            if step.cfg.transfer_set == "augmented" and not (aug and (Path(aug) / "augmented.tsv").is_file()):
                raise DistilleryError(f"param {step.cfg.param}.transfer_set: 'augmented' needs {aug or '--augmented'}"
                                      "/augmented.tsv; run `distillery augment` first, or use transfer_set train")
        self.teacher = TeacherSource(self.paths.teacher, self.paths.logits, cfg.max_seq_len, self.prep.num_labels,
                                     self.device)

    def setup_student(self, cls: type[Student]) -> Student:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        mcfg = build_student_config(cls, dict(cfg.model_args), self.prep, self.tokenizer, cfg.name,
                                    self.teacher_config.hidden_size)
        try:
            return cls.from_teacher(mcfg, self.paths.teacher)
        except ValueError as e:
            raise DistilleryError(f"param students.{cfg.name}.model_args: {e}") from None

    def setup_losses(self, step: StepConfig) -> Step:
        """Build the step's losses (those that own parameters create them here) and check that the
        student gives what they read."""
        mc = self.model.config
        ctx = LossContext(temperature=step.temperature, layer_map=tuple(getattr(mc, "layer_map", None) or ()),
                          patient_layers=tuple(getattr(mc, "patient_layers", None) or ()),
                          student_width=getattr(mc, "hidden_size", 0), teacher_width=self.teacher_config.hidden_size)
        losses = {}
        for name, weight in step.losses.items():
            loss_cls = LOSSES.get(name, param=f"{step.param}.losses")
            if weight <= 0:
                continue
            if loss_cls.probabilities and self.prep.task.regression:
                fits = sorted(n for n in LOSSES if not LOSSES.get(n).probabilities)
                raise DistilleryError(f"param {step.param}.losses.{name}: needs class probabilities, and task "
                                      f"{self.prep.task.name} is a regression (one output); use {', '.join(fits)}")
            lacking = (loss_cls.needs & STUDENT_PARTS) - self.model.provides
            if "cls" in loss_cls.needs and "hidden" not in self.model.provides:
                lacking.add("hidden")
            if lacking:
                raise DistilleryError(f"param {step.param}.losses.{name}: the {self.model.family} student has no "
                                      f"{' or '.join(sorted(lacking))}; use it with output-layer losses only")
            try:
                losses[name] = (weight, loss_cls(ctx).to(self.device))
            except ValueError as e:
                raise DistilleryError(f"param {step.param}.losses.{name}: {e}") from None
        needs = set().union(*(loss.needs for _, loss in losses.values()))
        if self.model.trained_by and not needs & self.model.trained_by:
            trainers = sorted(n for n in LOSSES if LOSSES.get(n).needs & self.model.trained_by)
            raise DistilleryError(f"param {step.param}.losses: the {self.model.family} student trains only its "
                                  f"{', '.join(sorted(self.model.trained_by))}; use {', '.join(trainers)}")
        return Step(step, losses, needs)

    def setup_data(self, step: Step) -> None:
        """The transfer set, and what the teacher gives for it (stored, or alongside)."""
        step.data, step.labels = transfer_set(step.cfg, self.prep.train, self.paths.augmented, self.rng,
                                              self.prep.task.regression)
        what = f"the {step.cfg.transfer_set} transfer set"
        cls_layers = list(getattr(self.model.config, "patient_layers", None) or [])
        step.stored = self.teacher.stored(step.needs, step.data["id"].tolist(), what, cls_layers)
        step.alongside = self.teacher.alongside(step.needs, step.stored)

    def setup_optimizer(self, step: Step, n_batches: int):
        """The student's trainable weights and the step's loss parameters (TinyBERT's W_e, W_h)."""
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        params += [p for _, loss in step.losses.values() for p in loss.parameters()]
        if cfg.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=step.cfg.lr, weight_decay=cfg.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=step.cfg.lr)
        return params, opt, lr_schedule(opt, cfg, n_batches * step.cfg.epochs)

    # ------------------------------------------------------------------ training
    def loss_step(self, step: Step, idx: np.ndarray) -> torch.Tensor:
        """The weighted sum of the step's losses on rows `idx` of its transfer set."""
        data, pair = step.data, self.prep.task.is_pair
        batch = self.model.collate(self.tokenizer, data["text_a"].iloc[idx].tolist(),
                                   data["text_b"].iloc[idx].tolist() if pair else None, self.cfg.max_seq_len)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            student = self.model(**batch, hidden=bool(step.needs & {"hidden", "cls"}), scores="scores" in step.needs)
            teacher = self.teacher.output(batch, idx, step.stored, step.needs, step.alongside)
            batch["labels"] = step.labels[torch.as_tensor(idx)].to(self.device)
            return sum(w * loss(student, teacher, batch) for w, loss in step.losses.values())

    def update(self, step: Step, idx: np.ndarray, opt, sched, params: list) -> float:
        """One optimizer step on the global batch `idx`; returns this process's loss summed over its rows.
        With N processes each takes its share, weighted so that the averaged gradient is the global mean's."""
        mine = np.array_split(idx, self.world.size)[self.world.rank]
        opt.zero_grad(set_to_none=True)
        value = 0.0
        if len(mine):
            loss = self.loss_step(step, mine)
            value = loss.item() * len(mine)
            (loss * (len(mine) * self.world.size / len(idx)) if self.world.size > 1 else loss).backward()
        average_gradients(params, self.world)
        torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        opt.step()
        if sched is not None:
            sched.step()
        return value

    def train_epoch(self, step: Step, opt, sched, params: list, desc: str) -> float:
        """One pass over the transfer set; returns the mean loss per example (over every process)."""
        self.model.train()
        batches = length_batches(text_lengths(step.data), batch_size=step.cfg.batch_size, rng=self.rng,
                                 chunk=self.cfg.bucket_batches)
        total = torch.zeros(2, dtype=torch.float64)  # loss summed over rows, rows
        bar = tqdm(batches, desc=desc, unit="batch", mininterval=2.0, disable=not self.world.is_main)
        for idx in bar:
            total += torch.tensor([self.update(step, idx, opt, sched, params),
                                   len(np.array_split(idx, self.world.size)[self.world.rank])], dtype=torch.float64)
            bar.set_postfix(loss=f"{total[0].item() / max(total[1].item(), 1):.4f}", refresh=False)
        if self.world.size > 1:
            torch.distributed.all_reduce(total)
        return total[0].item() / max(total[1].item(), 1)

    def run_step(self, step: Step, live) -> None:
        self.setup_data(step)
        tag = "train" if step.last else "intermediate"
        params, opt, sched = self.setup_optimizer(step, math.ceil(len(step.data) / step.cfg.batch_size))
        for epoch in range(1, step.cfg.epochs + 1):
            desc = f"{self.cfg.name} {'' if step.last else 'intermediate '}epoch {epoch}/{step.cfg.epochs}"
            loss = self.train_epoch(step, opt, sched, params, desc)
            if not math.isfinite(loss):
                raise DistilleryError(f"param {step.cfg.param}.lr: training diverged (loss {loss}); lower it")
            entry = {"step": tag, "epoch": epoch, "loss": loss}
            if step.last and self.world.is_main:
                entry |= {f"dev_{m}": v for m, v in self.evaluate().items()}
            self.log(live, entry)

    # ------------------------------------------------------------------ evaluate, log, save
    def evaluate(self) -> dict[str, float]:
        """Dev metrics in fp32 on the CPU, where the exported model will run (the model goes back after)."""
        self.model.to("cpu")
        try:
            logits = predict_logits(self.model, self.tokenizer, self.prep.dev, self.cfg.max_seq_len)
        finally:
            self.model.to(self.device)
        return self.prep.task.score(self.prep.dev["label"].to_numpy(), logits)

    def log(self, live, entry: dict) -> None:
        self.history.append(entry)
        if live is None:
            return
        metric = self.prep.task.metric
        live.log_metric(f"{entry['step']}/loss", entry["loss"])
        where = f"{self.cfg.name}{'' if entry['step'] == 'train' else ' intermediate'} epoch {entry['epoch']}"
        if f"dev_{metric}" in entry:
            live.log_metric(f"dev/{metric}", entry[f"dev_{metric}"])
            print(f"{where}: loss {entry['loss']:.4f}, dev {metric} {entry[f'dev_{metric}']:.4f}")
        else:
            print(f"{where}: loss {entry['loss']:.4f}")
        live.next_step()

    def save(self, seconds: float) -> dict:
        cfg, task, last = self.cfg, self.prep.task, self.steps[-1]
        metrics = {"student": cfg.name, "model": cfg.model,
                   **{f"dev_{m}": self.history[-1][f"dev_{m}"] for m in task.metrics},
                   "train_seconds": round(seconds, 1), "transfer_examples": len(last.data),
                   "teacher_forward_texts": self.teacher.forward_texts, "processes": self.world.size,
                   "params": sum(p.numel() for p in self.model.parameters())}
        self.model.to("cpu")  # saved as CPU tensors: loads anywhere
        save_student(self.model, self.tokenizer, self.paths.out, {
            "name": cfg.name, "task": task.name, "problem": task.problem, "metric": task.metric,
            "metrics": list(task.metrics), "label_names": self.prep.label_names,
            "max_seq_len": cfg.max_seq_len, "teacher_fingerprint": self.teacher.fingerprint,
            "teacher_dev_metric": self.teacher_info.get(f"dev_{task.metric}"),
            "training": dataclasses.asdict(cfg), "history": self.history})
        write_json(self.paths.metrics, metrics)
        return metrics

    def run(self) -> dict:
        from dvclive import Live

        t0 = time.perf_counter()
        self.setup()
        try:
            if not self.world.is_main:
                for step in self.steps:
                    self.run_step(step, None)
                return {}
            with staged_live(self.paths.live) as (live_tmp, publish):  # curves change together with the model
                with Live(str(live_tmp), dvcyaml=False, save_dvc_exp=False) as live:
                    for step in self.steps:
                        self.run_step(step, live)
                metrics = self.save(time.perf_counter() - t0)
                publish()
            return metrics
        finally:
            self.world.barrier()
            finish(self.world)


def distill(cfg: StudentConfig, paths: Paths) -> dict:
    """Train, evaluate and save one student (see the module docstring)."""
    return Recipe(cfg, paths).run()
