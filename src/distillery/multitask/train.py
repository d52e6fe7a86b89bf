"""Training a multi-task student (MT-DNN KD), or a single-task one (the same recipe with one task).

Per task t, on a batch of t only (MT-DNN's sampler):  L_t = sum_l w_l * loss_l(student_t, ensemble_t, batch)
with the registered losses the student names (MT-DNN KD: ce 0.5 + soft_ce 0.5, the mean of the gold-label
CE and the soft CE on the ensemble's probabilities). A task without a teacher drops the losses that read
teacher logits and scales the rest up to the same total weight: it learns from gold labels only.
AdamW with linear warm-up and decay; the dev metric of every task after each epoch; the student and
its per-task metrics saved at the end.
"""

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from distillery.config import MultiTaskConfig
from distillery.data.batching import text_lengths
from distillery.data.prepare import Prepared, load_prepared
from distillery.errors import DistilleryError
from distillery.evaluate.predict import predict
from distillery.io import staged_live, write_json
from distillery.losses import LOSSES, LossContext
from distillery.metrics import task_metric
from distillery.multitask.ensemble import Targets
from distillery.multitask.sampler import task_batches
from distillery.outputs import MAIN, ModelOutput
from distillery.students import save_student
from distillery.students.multitask import MultiTaskStudent, MultiTaskStudentConfig
from distillery.teacher.models import resolve_model

ALLOWED_NEEDS = frozenset({"labels", "logits"})


@dataclass
class TaskData:
    """One task's training material: its prepared splits, soft targets (or none) and losses."""

    prep: Prepared
    targets: np.ndarray | None  # (n_train, n_labels) ensemble log-probabilities, None without a teacher
    labels: torch.Tensor  # (n_train,)
    losses: dict  # name -> (weight, Loss)
    ensemble: str  # the ensemble's fingerprint ("" without a teacher)


def available_tasks(prepared_root: Path) -> list[str]:
    return sorted(p.parent.name for p in Path(prepared_root).glob("*/task.json"))


def task_losses(cfg: MultiTaskConfig, task: str, has_teacher: bool) -> dict:
    """The losses of `task` (registered, weighted); soft ones dropped without a teacher, the rest
    scaled to the same total weight."""
    ctx = LossContext(temperature=cfg.temperature)
    chosen = {}
    for name, w in cfg.losses.items():
        cls = LOSSES.get(name, param=f"{cfg.param}.losses")
        extra = cls.needs - ALLOWED_NEEDS
        if extra:
            raise DistilleryError(f"param {cfg.param}.losses.{name}: a multi-task student learns from gold labels "
                                  f"and the ensemble's logits only, not {', '.join(sorted(extra))}; use ce, soft_ce, kl "
                                  "or mse_logits")
        if w > 0 and (has_teacher or "logits" not in cls.needs):
            chosen[name] = (w, cls(ctx))
    total, kept = sum(cfg.losses.values()), sum(w for w, _ in chosen.values())
    if not chosen:
        raise DistilleryError(f"param {cfg.param}.losses: task {task} has no teacher (no ensemble member), so it can "
                              "only learn from gold labels; add ce to the losses, or give the task members")
    return {n: (w * total / kept, loss) for n, (w, loss) in chosen.items()}


def load_tasks(cfg: MultiTaskConfig, prepared_root: Path, ensemble_root: Path) -> dict[str, TaskData]:
    have = available_tasks(prepared_root)
    out = {}
    for task in cfg.tasks:
        if task not in have:
            raise DistilleryError(f"param {cfg.param}.tasks: no task {task!r} in {prepared_root} (prepared: "
                                  f"{', '.join(have) or 'none'}); add it to the tasks section or remove it here")
        prep = load_prepared(Path(prepared_root) / task)
        if prep.task.regression:  # MT-DNN's STS-B head (a score) is not built here: refuse, never argmax one output
            raise DistilleryError(f"param {cfg.param}.tasks: {task} is a regression; the multi-task student has "
                                  "classification heads only, so leave it out of this study")
        tg = Targets(Path(ensemble_root) / task, prep.task.name, prep.label_names)
        soft = tg.get(prep.train["id"].tolist(), f"the {task} training set") if tg.has_teacher else None
        out[task] = TaskData(prep, soft, torch.tensor(prep.train["label"].to_numpy(), dtype=torch.long),
                             task_losses(cfg, task, tg.has_teacher), tg.fingerprint)
    return out


def schedule(opt, warmup_ratio: float, total: int):
    warm = int(warmup_ratio * total)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(warm, 1) if s < warm else max(0.0, (total - s) / max(total - warm, 1)))


def evaluate(model: MultiTaskStudent, tokenizer, tasks: dict[str, TaskData], max_seq_len: int) -> dict[str, float]:
    """Each task's dev metric, from its own head."""
    model.eval()
    scores = {}
    for t, td in tasks.items():
        dev = td.prep.dev
        logits = predict(lambda a, b: model.collate(tokenizer, a, b, max_seq_len), model.predictor(t), dev,
                         td.prep.num_labels, td.prep.task.is_pair)
        scores[t] = task_metric(td.prep.task.metric, dev["label"].to_numpy(), logits.argmax(-1))
    return scores


def build_model(cfg: MultiTaskConfig, tasks: dict[str, TaskData]) -> tuple[MultiTaskStudent, object]:
    """The student (a head per task on the base model's first `num_layers` layers) and its tokenizer."""
    from transformers import AutoTokenizer

    base = resolve_model(cfg.base_model)
    torch.manual_seed(cfg.seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        mcfg = MultiTaskStudentConfig(heads={t: td.prep.num_labels for t, td in tasks.items()},
                                      num_layers=cfg.num_layers, dropout=cfg.dropout,
                                      freeze_embeddings=cfg.freeze_embeddings,
                                      input_names=list(tokenizer.model_input_names))
        model = MultiTaskStudent.from_base(mcfg, base)
    except OSError as e:
        raise DistilleryError(f"param {cfg.param}.base_model: cannot load {cfg.base_model!r} "
                              f"({str(e).splitlines()[0]}); give a local folder or a reachable Hugging Face id") from None
    except ValueError as e:
        raise DistilleryError(f"param {cfg.param}.num_layers: {e}") from None
    limit = model.encoder.config.max_position_embeddings
    if cfg.max_seq_len > limit:
        raise DistilleryError(f"param {cfg.param}.max_seq_len: {cfg.max_seq_len}, but the encoder has {limit} positions")
    return model, tokenizer


def train_epoch(model: MultiTaskStudent, tokenizer, tasks: dict[str, TaskData], batches: list, opt, sched,
                cfg: MultiTaskConfig, desc: str) -> dict[str, list]:
    """One pass over `batches` ((task, row indices), one task per batch); per task [loss sum, examples]."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    sums = {t: [0.0, 0] for t in tasks}
    bar = tqdm(batches, desc=desc, unit="batch", mininterval=2.0)
    for task, idx in bar:
        td = tasks[task]
        frame = td.prep.train.iloc[idx]
        batch = model.collate(tokenizer, frame["text_a"].tolist(),
                              frame["text_b"].tolist() if td.prep.task.is_pair else None, cfg.max_seq_len)
        out = model(**batch, task=task)
        student = ModelOutput(logits={MAIN: out.logits[task]}, mask=out.mask)
        teacher = ModelOutput(logits={MAIN: torch.from_numpy(td.targets[idx])} if td.targets is not None else {})
        batch["labels"] = td.labels[torch.as_tensor(idx)]
        loss = sum(w * fn(student, teacher, batch) for w, fn in td.losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        sums[task][0] += loss.item() * len(idx)
        sums[task][1] += len(idx)
        bar.set_postfix(loss=f"{mean_loss(sums):.4f}", refresh=False)
    return sums


def mean_loss(sums: dict[str, list]) -> float:
    return sum(s[0] for s in sums.values()) / max(sum(s[1] for s in sums.values()), 1)


def train_multitask(cfg: MultiTaskConfig, prepared_root: str | Path, ensemble_root: str | Path, out_dir: str | Path,
                    metrics_path: str | Path, live_dir: str | Path) -> dict:
    """Train, evaluate and save one multi-task (or single-task) student (module docstring)."""
    from dvclive import Live

    t0 = time.perf_counter()
    tasks = load_tasks(cfg, Path(prepared_root), Path(ensemble_root))
    model, tokenizer = build_model(cfg, tasks)
    rng = np.random.default_rng(cfg.seed)
    lengths = {t: text_lengths(td.prep.train) for t, td in tasks.items()}
    n_batches = len(task_batches(lengths, cfg.batch_size, np.random.default_rng(0), cfg.bucket_batches))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    sched = schedule(opt, cfg.warmup_ratio, n_batches * cfg.epochs)
    history = []
    with staged_live(live_dir) as (live_tmp, publish):  # curves change together with the model
        with Live(str(live_tmp), dvcyaml=False, save_dvc_exp=False) as live:
            for epoch in range(1, cfg.epochs + 1):
                batches = task_batches(lengths, cfg.batch_size, rng, cfg.bucket_batches)
                sums = train_epoch(model, tokenizer, tasks, batches, opt, sched, cfg,
                                   f"{cfg.name} epoch {epoch}/{cfg.epochs}")
                done = mean_loss(sums)
                if not math.isfinite(done):
                    raise DistilleryError(f"param {cfg.param}.lr: training diverged (loss {done}); lower it")
                dev = evaluate(model, tokenizer, tasks, cfg.max_seq_len)
                entry = {"epoch": epoch, "loss": done, **{f"loss_{t}": s[0] / max(s[1], 1) for t, s in sums.items()},
                         **{f"dev_{t}": v for t, v in dev.items()}, "dev_average": float(np.mean(list(dev.values())))}
                history.append(entry)
                for k, v in entry.items():
                    if k != "epoch":
                        live.log_metric(k.replace("dev_", "dev/") if k.startswith("dev_") else f"train/{k}", v)
                live.next_step()
                print(f"{cfg.name} epoch {epoch}: loss {done:.4f}, dev " +
                      ", ".join(f"{t} {tasks[t].prep.task.metric} {v:.4f}" for t, v in dev.items()))
        m = save_outputs(cfg, model, tokenizer, tasks, history, out_dir, metrics_path, time.perf_counter() - t0)
        publish()
    return m


def save_outputs(cfg: MultiTaskConfig, model: MultiTaskStudent, tokenizer, tasks: dict[str, TaskData],
                 history: list[dict], out_dir: str | Path, metrics_path: str | Path, seconds: float) -> dict:
    """The student (with what each head learnt from) and its per-task metrics of the last epoch."""
    info_tasks = {t: {"metric": td.prep.task.metric, "label_names": td.prep.label_names, "pair": td.prep.task.is_pair,
                      "teacher": bool(td.targets is not None), "ensemble": td.ensemble,
                      "losses": {n: w for n, (w, _) in td.losses.items()}} for t, td in tasks.items()}
    last = history[-1]
    metrics = {"student": cfg.name, "tasks": {t: {"metric": info_tasks[t]["metric"], "dev": last[f"dev_{t}"],
                                                   "teacher": info_tasks[t]["teacher"]} for t in tasks},
               "dev_average": last["dev_average"], "train_seconds": round(seconds, 1),
               "train_examples": {t: len(td.prep.train) for t, td in tasks.items()},
               "params": sum(p.numel() for p in model.parameters())}
    save_student(model, tokenizer, out_dir, {"name": cfg.name, "tasks": info_tasks, "max_seq_len": cfg.max_seq_len,
                                             "training": dataclasses.asdict(cfg), "history": history})
    write_json(metrics_path, metrics)
    return metrics
