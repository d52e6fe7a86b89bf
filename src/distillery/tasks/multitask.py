"""Multi-task classification (MT-DNN KD, Liu et al. 2019): one student, a shared encoder and a head per task.

Data: one prepared folder per task under `paths.prepared`; batches of one task each, tasks mixed in
proportion to their size (MT-DNN's sampler, `multitask/sampler.py`). Teacher targets: per task an
ensemble artifact under `paths.logits` (the mean of its members' probabilities, stored as log-probabilities,
so every logit loss reads it unchanged); a task without members learns from gold labels only: its losses
that read teacher logits are dropped and the rest scaled up to the same total weight. Per task
L_t = sum_l w_l * loss_l(student_t, ensemble_t, batch). Scoring: each task's metric from its own head, and
their average.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distillery.config import StudentConfig
from distillery.data.batching import text_lengths
from distillery.data.prepare import Prepared, load_prepared
from distillery.errors import DistilleryError
from distillery.evaluate.predict import predict
from distillery.io import write_metrics
from distillery.losses import LossContext
from distillery.metrics import task_metric
from distillery.multitask.ensemble import Targets
from distillery.multitask.sampler import task_batches
from distillery.outputs import MAIN, ModelOutput
from distillery.students import STUDENTS, save_student
from distillery.tasks.base import TASKS, Step, Task, build_losses
from distillery.teacher.models import resolve_model

SERVED = frozenset({"labels", "logits"})  # what an ensemble artifact and the gold labels give


@dataclass
class SubTask:
    """One task's training material: its prepared splits, soft targets (or none) and losses."""

    prep: Prepared
    targets: np.ndarray | None  # (n_train, n_labels) ensemble log-probabilities, None without a teacher
    labels: torch.Tensor  # (n_train,)
    losses: dict  # name -> (weight, Loss)
    ensemble: str  # the ensemble's fingerprint ("" without a teacher)


def available_tasks(prepared_root: Path) -> list[str]:
    return sorted(p.parent.name for p in Path(prepared_root).glob("*/task.json"))


def task_losses(cfg: StudentConfig, task: str, has_teacher: bool, model, device: torch.device | None = None) -> dict:
    """The losses of `task` (registered, weighted); soft ones dropped without a teacher, the rest scaled to
    the same total weight."""
    param = f"students.{cfg.name}"
    built = build_losses(cfg.losses, param, LossContext(temperature=cfg.temperature), model, allowed=SERVED,
                         device=device)
    chosen = {n: wl for n, wl in built.items() if has_teacher or "logits" not in wl[1].needs}
    if not chosen:
        raise DistilleryError(f"param {param}.losses: task {task} has no teacher (no ensemble member), so it can "
                              "only learn from gold labels; add ce to the losses, or give the task members")
    total, kept = sum(cfg.losses.values()), sum(w for w, _ in chosen.values())
    return {n: (w * total / kept, loss) for n, (w, loss) in chosen.items()}


@TASKS.register("multitask")
class MultiTask(Task):
    name = "multitask"

    def setup(self) -> None:
        cfg = self.cfg
        p = f"students.{cfg.name}"
        if cfg.intermediate:
            raise DistilleryError(f"param {p}.intermediate: a multi-task student trains in one step; remove it")
        if not cfg.tasks:
            raise DistilleryError(f"param {p}.tasks: name the tasks of this multi-task student")
        family = STUDENTS.get(cfg.model, param=f"{p}.model")
        if family.family != "mtdnn":
            raise DistilleryError(f"param {p}.model: the {self.name} task trains a student with a head per task "
                                  f"(mtdnn), not {family.family}")
        self.subtasks = self.load_subtasks()
        self.model, self.tokenizer = self.build_student(family)
        step = cfg.steps()[-1]
        self.steps = [Step(step, {}, set(SERVED))]  # each sub-task carries its own losses
        for t, sub in self.subtasks.items():
            sub.losses = task_losses(cfg, t, sub.targets is not None, self.model, self.device)

    def load_subtasks(self) -> dict[str, SubTask]:
        cfg, root = self.cfg, Path(self.paths.prepared)
        have = available_tasks(root)
        out = {}
        for task in cfg.tasks:
            if task not in have:
                raise DistilleryError(f"param students.{cfg.name}.tasks: no task {task!r} in {root} (prepared: "
                                      f"{', '.join(have) or 'none'}); add it to the tasks section or remove it here")
            prep = load_prepared(root / task)
            if prep.task.regression:  # MT-DNN's STS-B head (a score) is not built here: refuse, never argmax one output
                raise DistilleryError(f"param students.{cfg.name}.tasks: {task} is a regression; the multi-task "
                                      "student has classification heads only, so leave it out of this study")
            tg = Targets(Path(self.paths.logits) / task, prep.task.name, prep.label_names)
            soft = tg.get(prep.train["id"].tolist(), f"the {task} training set") if tg.has_teacher else None
            out[task] = SubTask(prep, soft, torch.tensor(prep.train["label"].to_numpy(), dtype=torch.long), {},
                                tg.fingerprint)
        return out

    def build_student(self, family):
        """The student (a head per task on the base model's first `num_layers` layers) and its tokenizer."""
        from transformers import AutoTokenizer

        cfg, p = self.cfg, f"students.{self.cfg.name}"
        args = dict(cfg.model_args)
        base_name = str(args.get("base_model") or "")
        if not base_name:
            raise DistilleryError(f"param {p}.model_args.base_model: missing; name the pre-trained encoder")
        base = resolve_model(base_name)
        torch.manual_seed(cfg.seed)
        try:
            tokenizer = AutoTokenizer.from_pretrained(base)
            mcfg = family.Config(heads={t: s.prep.num_labels for t, s in self.subtasks.items()},
                                 input_names=list(tokenizer.model_input_names), **args)
            model = family.from_base(mcfg, base)
        except OSError as e:
            raise DistilleryError(f"param {p}.model_args.base_model: cannot load {base_name!r} "
                                  f"({str(e).splitlines()[0]}); give a local folder or a reachable Hugging Face id") from None
        except (TypeError, ValueError) as e:
            raise DistilleryError(f"param {p}.model_args: {e}") from None
        limit = model.encoder.config.max_position_embeddings
        if cfg.max_seq_len > limit:
            raise DistilleryError(f"param {p}.max_seq_len: {cfg.max_seq_len}, but the encoder has {limit} positions")
        return model.to(self.device), tokenizer

    def batches(self, step: Step, rng: np.random.Generator) -> list:
        lengths = {t: text_lengths(s.prep.train) for t, s in self.subtasks.items()}
        return task_batches(lengths, step.cfg.batch_size, rng, self.cfg.bucket_batches)

    def shard(self, key, rank: int, size: int):
        task, idx = key
        return task, np.array_split(idx, size)[rank]

    def rows(self, key) -> int:
        return len(key[1])

    def group(self, key) -> str:
        return key[0]

    def loss(self, step: Step, key, bf16: bool) -> torch.Tensor:
        task, idx = key
        sub = self.subtasks[task]
        frame = sub.prep.train.iloc[idx]
        batch = self.model.collate(self.tokenizer, frame["text_a"].tolist(),
                                   frame["text_b"].tolist() if sub.prep.task.is_pair else None, self.cfg.max_seq_len)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = self.model(**batch, task=task)
            student = ModelOutput(logits={MAIN: out.logits[task]}, mask=out.mask)
            teacher = ModelOutput(logits={MAIN: torch.from_numpy(sub.targets[idx]).to(self.device)}
                                  if sub.targets is not None else {})
            batch["labels"] = sub.labels[torch.as_tensor(idx)].to(self.device)
            return sum(w * fn(student, teacher, batch) for w, fn in sub.losses.values())

    def evaluate(self) -> dict[str, float]:
        """Each task's dev metric, from its own head, and their average (fp32, on the CPU)."""
        self.model.eval()
        scores = {}
        for t, sub in self.subtasks.items():
            dev = sub.prep.dev
            logits = predict(lambda a, b: self.model.collate(self.tokenizer, a, b, self.cfg.max_seq_len),
                             self.model.predictor(t), dev, sub.prep.num_labels, sub.prep.task.is_pair)
            scores[t] = task_metric(sub.prep.task.metric, dev["label"].to_numpy(), logits.argmax(-1))
        return {**scores, "average": float(np.mean(list(scores.values())))}

    def plateau_score(self, dev: dict[str, float]) -> float:
        return float(dev["average"])

    def save(self, seconds: float, history: list[dict], processes: int) -> dict:
        """The student (with what each head learnt from) and its per-task metrics of the last epoch."""
        cfg = self.cfg
        info_tasks = {t: {"metric": s.prep.task.metric, "label_names": s.prep.label_names, "pair": s.prep.task.is_pair,
                          "teacher": s.targets is not None, "ensemble": s.ensemble,
                          "losses": {n: w for n, (w, _) in s.losses.items()}} for t, s in self.subtasks.items()}
        last = history[-1]
        metrics = {"student": cfg.name, "tasks": {t: {"metric": info_tasks[t]["metric"], "dev": last[f"dev_{t}"],
                                                       "teacher": info_tasks[t]["teacher"]} for t in self.subtasks},
                   "dev_average": last["dev_average"], "train_seconds": round(seconds, 1),
                   "train_examples": {t: len(s.prep.train) for t, s in self.subtasks.items()},
                   "processes": processes, "params": sum(p.numel() for p in self.model.parameters())}
        save_student(self.model, self.tokenizer, self.paths.out, {
            "name": cfg.name, "tasks": info_tasks, "max_seq_len": cfg.max_seq_len,
            "training": dataclasses.asdict(cfg), "history": history})
        write_metrics(self.paths.metrics, metrics, "distill", written=self.paths.out)
        return metrics

    @staticmethod
    def ensemble(doc: dict, prepared: Path, teachers: Path, member_logits: Path, out: Path, metrics: Path) -> str:
        """`soft-labels --ensemble-of`: the mean of the prepared task's members' probabilities (params `members`)."""
        from distillery.config import members_config
        from distillery.multitask.ensemble import build_ensemble

        m = build_ensemble(members_config(doc.get("members")), prepared, teachers, member_logits, out, metrics)
        key = f"dev_{m['metric']}"
        each = ", ".join(f"{r['member']} {r[key]:.4f}" for r in m["members"])
        return f"ensemble {m['task']}: " + (f"{key} {m['ensemble_' + key]:.4f} (members: {each})" if each
                                             else "no member in `members`: its students learn from gold labels") + f" -> {out}"

    @staticmethod
    def export(cfg, student_dir: Path, prepared: Path, out: Path, teacher: Path | None = None,
               augmented: Path | None = None) -> dict:
        """One ONNX graph with an output per task (the encoder runs once), checked on every task's dev set."""
        from distillery.multitask.export import export_multitask

        return export_multitask(student_dir, prepared, out, cfg.opset, cfg.min_agreement)

    @staticmethod
    def evaluate_study(values: dict, section: str, doc: dict, paths: dict) -> str:
        """One table: single teachers, ensembles, single-task students, each multi-task student and its export."""
        from distillery.config import MtEvaluateConfig, from_section, study_tasks
        from distillery.evaluate.multitask import mt_evaluate

        cfg = from_section(MtEvaluateConfig, section, values)
        mt_evaluate(cfg, study_tasks(doc), list(doc.get("students") or {}), paths["prepared"], paths["ensemble_metrics"],
                    paths["teachers"], paths["students"], paths["single"], paths["exports"], paths["out"])
        return f"evaluated -> {paths['out']}"
