"""Single-task classification (or regression: `problem: regression`), the main pipeline's task.

Data: the prepared task (`prepare`), with the augmented transfer set where a step asks for it. Teacher
targets: the soft-labels artifact (logits, [CLS] states), or the teacher run alongside when the losses need
hidden states or attention scores (`distill/teacher.py`). Student: any registered family, built from the
teacher (`Student.from_teacher`). Scoring: the task's metrics on dev (`TaskSpec.score`), in fp32 on the CPU.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from distillery.config import StepConfig, check_types
from distillery.data.batching import length_batches, text_lengths
from distillery.data.prepare import Prepared, load_prepared
from distillery.data.table import read_table
from distillery.distill.teacher import TeacherSource
from distillery.errors import DistilleryError
from distillery.evaluate.predict import predict_logits
from distillery.export.onnx import export_student
from distillery.io import write_metrics
from distillery.losses import LOSSES, LossContext
from distillery.students import STUDENTS, save_student
from distillery.students.base import Student
from distillery.tasks.base import TASKS, Step, Task, build_losses
from distillery.teacher.train import check_seq_len, load_teacher


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


@TASKS.register("classification")
class Classification(Task):
    name = "classification"

    def setup(self) -> None:
        """Data, student, every step's losses, the teacher source; every input checked before any output."""
        cfg, paths = self.cfg, self.paths
        cls = STUDENTS.get(cfg.model, param=f"students.{cfg.name}.model")
        if paths.teacher is None:
            raise DistilleryError(f"param students.{cfg.name}.task: {self.name} needs --teacher")
        self.prep = load_prepared(paths.prepared)
        _, self.tokenizer, self.teacher_info = load_teacher(paths.teacher, n_labels=self.prep.num_labels)
        from transformers import AutoConfig

        self.teacher_config = AutoConfig.from_pretrained(paths.teacher)
        check_seq_len(self.teacher_config, cfg.max_seq_len, f"students.{cfg.name}.max_seq_len")
        if self.prep.task.regression and not cls.regression:
            raise DistilleryError(f"param students.{cfg.name}.model: the {cls.family} student cannot learn a regression "
                                  f"(task {self.prep.task.name}): {cls.regression_refusal}; leave it out for this task")
        self.model = self.build_student(cls).to(self.device)
        self.steps = [self.step_losses(step) for step in cfg.steps()]
        for step in self.steps:
            aug = paths.augmented
            if step.cfg.transfer_set == "augmented" and not (aug and (Path(aug) / "augmented.tsv").is_file()):
                raise DistilleryError(f"param {step.cfg.param}.transfer_set: 'augmented' needs {aug or '--augmented'}"
                                      "/augmented.tsv; run `distillery augment` first, or use transfer_set train")
        self.teacher = TeacherSource(paths.teacher, paths.logits, cfg.max_seq_len, self.prep.num_labels, self.device)

    def build_student(self, cls: type[Student]) -> Student:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        mcfg = build_student_config(cls, dict(cfg.model_args), self.prep, self.tokenizer, cfg.name,
                                    self.teacher_config.hidden_size)
        try:
            return cls.from_teacher(mcfg, self.paths.teacher)
        except ValueError as e:
            raise DistilleryError(f"param students.{cfg.name}.model_args: {e}") from None

    def step_losses(self, step: StepConfig) -> Step:
        """The step's losses (those that own parameters create them here), checked against the student."""
        mc = self.model.config
        ctx = LossContext(temperature=step.temperature, layer_map=tuple(getattr(mc, "layer_map", None) or ()),
                          patient_layers=tuple(getattr(mc, "patient_layers", None) or ()),
                          student_width=getattr(mc, "hidden_size", 0), teacher_width=self.teacher_config.hidden_size)
        regression = self.prep.task.name if self.prep.task.regression else ""
        losses = build_losses(step.losses, step.param, ctx, self.model, regression, device=self.device)
        needs = set().union(*(loss.needs for _, loss in losses.values()))
        if self.model.trained_by and not needs & self.model.trained_by:
            trainers = sorted(n for n in LOSSES if LOSSES.get(n).needs & self.model.trained_by)
            raise DistilleryError(f"param {step.param}.losses: the {self.model.family} student trains only its "
                                  f"{', '.join(sorted(self.model.trained_by))}; use {', '.join(trainers)}")
        return Step(step, losses, needs)

    def start(self, step: Step, rng: np.random.Generator) -> None:
        """The transfer set, and what the teacher gives for it (stored, or alongside)."""
        step.data, step.labels = transfer_set(step.cfg, self.prep.train, self.paths.augmented, rng,
                                              self.prep.task.regression)
        what = f"the {step.cfg.transfer_set} transfer set"
        cls_layers = list(getattr(self.model.config, "patient_layers", None) or [])
        step.stored = self.teacher.stored(step.needs, step.data["id"].tolist(), what, cls_layers)
        step.alongside = self.teacher.alongside(step.needs, step.stored)

    def batches(self, step: Step, rng: np.random.Generator) -> list:
        return length_batches(text_lengths(step.data), batch_size=step.cfg.batch_size, rng=rng,
                              chunk=self.cfg.bucket_batches)

    def loss(self, step: Step, idx: np.ndarray, bf16: bool) -> torch.Tensor:
        """The weighted sum of the step's losses on rows `idx` of its transfer set."""
        data, pair = step.data, self.prep.task.is_pair
        batch = self.model.collate(self.tokenizer, data["text_a"].iloc[idx].tolist(),
                                   data["text_b"].iloc[idx].tolist() if pair else None, self.cfg.max_seq_len)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            student = self.model(**batch, hidden=bool(step.needs & {"hidden", "cls"}), scores="scores" in step.needs)
            teacher = self.teacher.output(batch, idx, step.stored, step.needs, step.alongside)
            batch["labels"] = step.labels[torch.as_tensor(idx)].to(self.device)
            return sum(w * loss(student, teacher, batch) for w, loss in step.losses.values())

    def evaluate(self) -> dict[str, float]:
        logits = predict_logits(self.model, self.tokenizer, self.prep.dev, self.cfg.max_seq_len)
        return self.prep.task.score(self.prep.dev["label"].to_numpy(), logits)

    def save(self, seconds: float, history: list[dict], processes: int) -> dict:
        cfg, task, last = self.cfg, self.prep.task, self.steps[-1]
        metrics = {"student": cfg.name, "model": cfg.model,
                   **{f"dev_{m}": history[-1][f"dev_{m}"] for m in task.metrics},
                   "train_seconds": round(seconds, 1), "transfer_examples": len(last.data),
                   "teacher_forward_texts": self.teacher.forward_texts, "processes": processes,
                   "params": sum(p.numel() for p in self.model.parameters())}
        if history and history[-1].get("kept"):  # trained to a plateau: which score the weights are, and every score
            metrics |= {"kept_epoch": history[-1]["epoch"],
                        "curve": [{"epoch": h["epoch"], **{m: round(h[f"dev_{m}"], 4) for m in task.metrics}}
                                  for h in history[:-1] if h["step"] == "train" and f"dev_{task.metric}" in h]}
        save_student(self.model, self.tokenizer, self.paths.out, {
            "name": cfg.name, "task": task.name, "problem": task.problem, "metric": task.metric,
            "metrics": list(task.metrics), "label_names": self.prep.label_names, "pair": task.is_pair,
            "max_seq_len": cfg.max_seq_len, "teacher_fingerprint": self.teacher.fingerprint,
            "teacher_dev_metric": self.teacher_info.get(f"dev_{task.metric}"),
            "training": dataclasses.asdict(cfg), "history": history})
        write_metrics(self.paths.metrics, metrics, "distill", written=self.paths.out)
        return metrics

    export = staticmethod(export_student)  # one graph (+ int8, the model card), checked against PyTorch on dev
