"""The one training recipe, in the shape of torchtune's knowledge-distillation recipe, for every student of
every task: the task (`distillery.tasks`) sets up its data, student, losses and teacher targets; the recipe
runs each step (TinyBERT's and MobileBERT's intermediate step, then the last): the optimizer (Adam, or AdamW
with linear warm-up and decay), the loop of loss steps with gradient clipping, the dev score after each
epoch of the last step, DVCLive curves, the save.

Data-parallel: under `torchrun --nproc-per-node N` (or `accelerate launch`), each process takes
1/N of every global batch (`batch_size` stays the global batch) and gradients are averaged before
the optimizer step, so N processes train the student one process would, within float tolerance.
Rank 0 evaluates, logs and saves. A killed run resumes where it stopped (`distill/checkpoint.py`).
"""

import dataclasses
import math
import time

import numpy as np
import torch
from tqdm import tqdm

from distillery.config import StudentConfig, check_types, coerce, merge_student
from distillery.distill.checkpoint import Checkpoint
from distillery.dist import World, finish, init_world
from distillery.errors import DistilleryError
from distillery.hardware import bf16_supported
from distillery.io import staged_live
from distillery.metrics import plateau_step
from distillery.students import STUDENTS
from distillery.tasks import get_task
from distillery.tasks.base import Paths, Step, Task

__all__ = ["Paths", "Recipe", "distill", "lr_schedule", "student_config"]


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
    cfg = dataclasses.replace(cfg, model_args=coerce(family.Config, cfg.model_args))
    check_types(family.Config, cfg.model_args, f"students.{name}.model_args")
    return cfg


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
    """`Recipe(cfg, paths).run()` trains, evaluates and saves one student of any task; returns its metrics."""

    def __init__(self, cfg: StudentConfig, paths: Paths, checkpoint_minutes: float = 0.0) -> None:
        self.cfg, self.paths = cfg, paths
        self.world = init_world()
        self.ckpt = Checkpoint(cfg, paths, self.world.size, checkpoint_minutes, self.world.rank)
        self.resume: dict | None = None  # the saved state being resumed, until its batch is reached
        self.where: dict = {}  # the position and generator states a checkpoint records
        self.device = self.world.device  # a GPU where there is one; bf16 autocast there where it supports it
        self.bf16 = self.device.type == "cuda" and bf16_supported("cuda")
        self.rng = np.random.default_rng(cfg.seed)
        self.history: list[dict] = []
        self.plateau: dict = {"best": None, "state": None, "entry": None}  # the best evaluation of a plateau step
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.task: Task = get_task(cfg.task, f"students.{cfg.name}.task")(cfg, paths, self.device)

    def setup_optimizer(self, step: Step, total_steps: int):
        cfg = self.cfg
        params = self.task.trainable(step)
        if cfg.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=step.cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=step.cfg.lr, betas=cfg.betas)
        return params, opt, lr_schedule(opt, cfg, total_steps)

    def update(self, step: Step, key, opt, sched, params: list) -> float:
        """One optimizer step on the global batch `key`; returns this process's loss summed over its rows.
        With N processes each takes its share, weighted so that the averaged gradient is the global mean's."""
        task = self.task
        mine = task.shard(key, self.world.rank, self.world.size)
        n, total = task.rows(mine), task.rows(key)
        opt.zero_grad(set_to_none=True)
        value = 0.0
        if n:
            loss = task.loss(step, mine, self.bf16)
            value = loss.item() * n
            (loss * (n * self.world.size / total) if self.world.size > 1 else loss).backward()
        average_gradients(params, self.world)
        torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        opt.step()
        if sched is not None:
            sched.step()
        return value

    def mean_losses(self, sums: dict) -> dict[str, float]:
        """The mean loss per example of `sums` (group -> [loss summed over rows, rows]) over every process, and per
        group (a multi-task student's tasks)."""
        if self.world.size > 1:
            sums = {g: v.clone() for g, v in sums.items()}
            for part in sums.values():
                torch.distributed.all_reduce(part)
        total = sum(sums.values())
        out = {"loss": total[0].item() / max(total[1].item(), 1)}
        if len(sums) > 1 or None not in sums:
            out |= {f"loss_{g}": v[0].item() / max(v[1].item(), 1) for g, v in sums.items()}
        return out

    def train_epoch(self, step: Step, opt, sched, params: list, desc: str, limit: int | None = None,
                    hook=None) -> tuple[dict[str, float], bool]:
        """One pass over the transfer set (its first `limit` batches where `max_steps` ends the step inside it);
        the mean losses (`mean_losses`) and whether `hook(batches done, sums)` (the plateau's evaluation) stopped
        the step. A resumed epoch skips the batches its checkpoint had done."""
        self.task.model.train()
        batches = self.task.batches(step, self.rng)[:limit]
        sums: dict = {}  # group -> [loss summed over rows, rows]
        done = 0
        if self.resume is not None:
            sums, done = self.resume["sums"], self.resume["batch"]
            torch.set_rng_state(self.resume["torch_rng"])
            self.resume = None
        bar = tqdm(batches, desc=desc, unit="batch", mininterval=2.0, disable=not self.world.is_main, initial=done)
        stopped = False
        for b, key in enumerate(batches[done:], done):
            value = self.update(step, key, opt, sched, params)
            part = sums.setdefault(self.task.group(key), torch.zeros(2, dtype=torch.float64))
            part += torch.tensor([value, self.task.rows(self.task.shard(key, self.world.rank, self.world.size))],
                                 dtype=torch.float64)
            total = sum(sums.values())
            bar.update()
            bar.set_postfix(loss=f"{total[0].item() / max(total[1].item(), 1):.4f}", refresh=False)
            if hook is not None:
                stopped = hook(b + 1, sums)
            if self.ckpt.due() and not stopped:
                self.ckpt.save({**self.where, "batch": b + 1, "sums": sums, "torch_rng": torch.get_rng_state(),
                                "model": self.task.model.state_dict(), "opt": opt.state_dict(),
                                "sched": sched.state_dict() if sched is not None else None, "history": self.history,
                                "plateau": self.plateau})
            if stopped:
                break
        bar.close()
        return self.mean_losses(sums), stopped

    def plateau_on(self, step: Step) -> bool:
        """Whether this step trains to a plateau: the last step, with `min_gain` set."""
        return step.last and self.cfg.min_gain is not None

    def run_step(self, index: int, step: Step, live) -> None:
        r = self.resume if self.resume is not None and self.resume["step"] == index else None
        if r is not None:  # the generator as this step began: the same rows again
            self.rng.bit_generator.state = r["rng_steps"][index]
        self.where = {"step": index, "rng_steps": [*self.where.get("rng_steps", [])[:index], self.rng.bit_generator.state]}
        self.task.start(step, self.rng)
        tag = "train" if step.last else "intermediate" + (f"_block{step.block}" if step.block else "")
        n_batches = len(self.task.batches(step, np.random.default_rng(0)))
        total = n_batches * step.cfg.epochs  # optimizer steps: every epoch, or max_steps where it is fewer
        if step.cfg.max_steps:
            total = min(total, step.cfg.max_steps)
        epochs = math.ceil(total / n_batches) if n_batches else step.cfg.epochs
        params, opt, sched = self.setup_optimizer(step, total)
        plateau = self.plateau_on(step)
        self.plateau = {"best": None, "state": None, "entry": None}
        first = 1
        if r is not None:
            self.task.model.load_state_dict(r["model"])
            opt.load_state_dict(r["opt"])
            if sched is not None:
                sched.load_state_dict(r["sched"])
            first, self.history = r["epoch"], list(r["history"])
            self.plateau = r.get("plateau") or self.plateau
            self.rng.bit_generator.state = r["rng_epoch"]
        for epoch in range(first, epochs + 1):
            self.where |= {"epoch": epoch, "rng_epoch": self.rng.bit_generator.state}
            desc = f"{self.cfg.name} {'' if step.last else tag.replace('_', ' ') + ' '}epoch {epoch}/{epochs}"
            limit = min(n_batches, total - (epoch - 1) * n_batches)
            hook = self.plateau_hook(step, tag, epoch, n_batches, limit, live) if plateau else None
            losses, stopped = self.train_epoch(step, opt, sched, params, desc, limit, hook)
            if not math.isfinite(losses["loss"]):
                raise DistilleryError(f"param {step.cfg.param}.lr: training diverged (loss {losses['loss']}); lower it")
            if plateau:  # the hook logged every evaluation, the epoch's end included
                if stopped:
                    break
                continue
            entry = {"step": tag, "epoch": epoch, **losses}
            if step.last and self.world.is_main and (self.task.eval_each_epoch or epoch == epochs):
                entry |= {f"dev_{m}": v for m, v in self.dev_scores().items()}
            self.log(live, entry)
        if plateau:
            self.keep_best()

    def dev_scores(self) -> dict[str, float]:
        """The dev metrics of the student as it is now, scored in fp32 on the CPU, where the exported model will run."""
        self.task.model.to("cpu")
        try:
            return self.task.evaluate()
        finally:
            self.task.model.to(self.device)

    def plateau_hook(self, step: Step, tag: str, epoch: int, n_batches: int, limit: int, live):
        """The evaluation `train_epoch` calls after each batch: at `evals_per_epoch` evenly spaced points of the epoch
        (its end, or where max_steps ends it, always among them), the dev score; the best weights so far kept; True
        (stop) after `patience` evaluations in a row that beat the best before them by less than `min_gain`."""
        k = self.cfg.evals_per_epoch
        points = {min(limit, max(1, round(i * n_batches / k))) for i in range(1, k + 1)} | {limit}

        def hook(done: int, sums: dict) -> bool:
            if done not in points:
                return False
            losses = self.mean_losses(sums)
            stop = torch.zeros(1)
            where = epoch if done == n_batches else round(epoch - 1 + done / n_batches, 3)
            entry = {"step": tag, "epoch": where, **losses}
            if self.world.is_main:
                dev = self.dev_scores()
                entry |= {f"dev_{m}": v for m, v in dev.items()}
                best, stalled, improved, halt = plateau_step(self.plateau["best"], self.plateau.get("stalled", 0),
                                                             self.task.plateau_score(dev), self.cfg.min_gain,
                                                             self.cfg.patience)
                self.plateau |= {"best": best, "stalled": stalled}
                stop[0] = float(halt)
                if improved:
                    state = {n: t.detach().to("cpu", copy=True) for n, t in self.task.model.state_dict().items()}
                    self.plateau |= {"state": state, "entry": dict(entry)}
            if self.world.size > 1:
                torch.distributed.broadcast(stop, 0)
            self.log(live, entry)
            self.task.model.train()
            return bool(stop[0])

        return hook

    def keep_best(self) -> None:
        """After a step trained to a plateau: the weights of its best evaluation back in the model, and that
        evaluation again at the end of the history (`kept`: the figures the saved student has)."""
        if not self.world.is_main or self.plateau["state"] is None:
            return
        self.task.model.load_state_dict(self.plateau["state"])
        kept = {**self.plateau["entry"], "kept": True}
        self.history.append(kept)
        dev = ", ".join(f"dev {k[4:]} {v:.4f}" for k, v in kept.items() if k.startswith("dev_"))
        print(f"{self.cfg.name}: kept the weights of epoch {kept['epoch']} ({dev})")
        self.plateau["state"] = None

    def log(self, live, entry: dict, echo: bool = True) -> None:
        if echo:
            self.history.append(entry)
        if live is None:
            return
        for k, v in entry.items():
            if k.startswith("loss"):
                live.log_metric(f"{entry['step']}/{k}", v)
        dev = {k[4:]: v for k, v in entry.items() if k.startswith("dev_")}
        for k, v in dev.items():
            live.log_metric(f"dev/{k}", v)
        where = f"{self.cfg.name}{'' if entry['step'] == 'train' else ' ' + entry['step'].replace('_', ' ')} epoch {entry['epoch']}"
        if echo:
            print(f"{where}: loss {entry['loss']:.4f}" + "".join(f", dev {k} {v:.4f}" for k, v in dev.items()))
        live.next_step()

    def run(self) -> dict:
        from dvclive import Live

        t0 = time.perf_counter()
        self.task.setup()
        self.resume = self.ckpt.load()
        first = self.resume["step"] if self.resume else 0  # the steps before it are in the saved weights
        for i, step in enumerate(self.task.steps[:first]):  # their rows, as they were drawn (for the metrics)
            self.rng.bit_generator.state = self.resume["rng_steps"][i]
            self.task.start(step, self.rng)
        self.where = {"rng_steps": self.resume["rng_steps"][:first]} if self.resume else {}
        try:
            if not self.world.is_main:
                for i, step in enumerate(self.task.steps[first:], first):
                    self.run_step(i, step, None)
                return {}
            with staged_live(self.paths.live) as (live_tmp, publish):  # curves change together with the model
                with Live(str(live_tmp), dvcyaml=False, save_dvc_exp=False) as live:
                    for entry in (self.resume or {}).get("history", []):  # the curves of the run that was killed
                        self.log(live, dict(entry), echo=False)
                    for i, step in enumerate(self.task.steps[first:], first):
                        self.run_step(i, step, live)
                self.task.model.to("cpu")  # saved as CPU tensors: loads anywhere
                metrics = self.task.save(time.perf_counter() - t0, self.history, self.world.size)
                publish()
            self.ckpt.clear()
            return metrics
        finally:
            self.world.barrier()
            finish(self.world)


def distill(cfg: StudentConfig, paths: Paths, checkpoint_minutes: float = 0.0) -> dict:
    """Train, evaluate and save one student (see the module docstring); `checkpoint_minutes` > 0: save the run's
    state that often, and resume from it (`distill/checkpoint.py`)."""
    return Recipe(cfg, paths, checkpoint_minutes).run()
