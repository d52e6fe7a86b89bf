"""Sequence-to-sequence generation (C-MLM, Chen et al. 2020): a translator distilled from a conditional masked LM.

Data: parallel text prepared by `distillery prepare` (`train.tsv`, `dev.tsv`, `limits.json` naming the tokenizer the
teacher and the student share). Teacher targets: the teacher's top-k logits and token ids per target position
(the `soft-labels` artifact, checked against the teacher's fingerprint and vocabulary), read as a
`ModelOutput` whose `logits` are the k values and `ids` their token ids. Student: the `seq2seq` family.
Losses: `token_nll` (label-smoothed likelihood) and `topk_kd`, weighted like any other losses; C-MLM's
(1 - alpha) * likelihood + alpha * KD is `{token_nll: 1 - alpha, topk_kd: alpha}`. Scoring: greedy BLEU on dev,
after the last epoch (decoding dev after every epoch would cost more than an epoch here).
"""

import dataclasses
from pathlib import Path

import numpy as np
import torch

from distillery.config import from_section
from distillery.data.batching import length_batches
from distillery.errors import DistilleryError
from distillery.generation.data import Encoded, decoder_io, encode, encoder_inputs, load_split, load_tokenizer
from distillery.generation.export import export_stage
from distillery.io import read_json, write_metrics
from distillery.logits.artifact import MANIFEST, Logits
from distillery.losses import LOSSES, LossContext
from distillery.outputs import MAIN, ModelOutput
from distillery.students import STUDENTS, save_student
from distillery.tasks.base import TASKS, Step, Task, build_losses

SERVED = frozenset({"labels", "tokens", "topk"})
MAX_POSITIONS = 1024


class TeacherTargets:
    """The teacher's top-k (values, ids) per target position of the training pairs, gathered per batch."""

    def __init__(self, art: Logits, pair_ids: list[str], enc: Encoded, k: int, param: str) -> None:
        if "ids" not in art.arrays:
            raise DistilleryError(f"{art.path / MANIFEST}: holds no token ids: not a C-MLM teacher's top-k soft labels; "
                                  "give --logits the soft-labels output")
        stored = art.logits.shape[1]
        if k > stored:
            raise DistilleryError(f"param {param}.loss_args.top_k: {k}, but the soft labels keep {stored} per token; "
                                  "lower it or raise soft_labels.top_k and re-run `distillery soft-labels`")
        self.n_pos = np.array([len(t) + 1 for t in enc.tgt], dtype=np.int64)
        self.first = art.rows(pair_ids, self.n_pos, "the training data")
        self.art, self.values, self.ids, self.k = art, art.logits, art.arrays["ids"], k

    def batch(self, rows: np.ndarray, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(bs, width, k) values and ids (vocabulary ids); positions past a pair's end hold zeros (their
        labels are -100)."""
        values = np.zeros((len(rows), width, self.k), dtype=np.float32)
        ids = np.zeros((len(rows), width, self.k), dtype=np.int64)
        for r, i in enumerate(rows):
            sl = slice(self.first[i], self.first[i] + self.n_pos[i])
            values[r, :self.n_pos[i]] = self.values[sl, :self.k]
            ids[r, :self.n_pos[i]] = self.ids[sl, :self.k]
        return torch.from_numpy(values), torch.from_numpy(ids)


@TASKS.register("seq2seq")
class Seq2Seq(Task):
    name = "seq2seq"
    eval_each_epoch = False

    def setup(self) -> None:
        cfg, p = self.cfg, f"students.{self.cfg.name}"
        if cfg.intermediate:
            raise DistilleryError(f"param {p}.intermediate: a seq2seq student trains in one step; remove it")
        family = STUDENTS.get(cfg.model, param=f"{p}.model")
        if family.family != "seq2seq":
            raise DistilleryError(f"param {p}.model: the {self.name} task trains a seq2seq student, not {family.family}")
        self.limits = read_json(Path(self.paths.prepared) / "limits.json")
        self.tokenizer = load_tokenizer(self.limits["tokenizer"])
        self.frame, self.dev_frame = load_split(self.paths.prepared, "train"), load_split(self.paths.prepared, "dev")
        self.enc, self.dev = encode(self.tokenizer, self.frame), encode(self.tokenizer, self.dev_frame)
        self.model = self.build_student(family)
        step = cfg.steps()[-1]
        ctx = LossContext(temperature=step.temperature, label_smoothing=cfg.loss_args.get("label_smoothing", 0.0))
        losses = build_losses(step.losses, step.param, ctx, self.model, allowed=SERVED, device=self.device)
        for name, (_, loss) in losses.items():
            if "tokens" not in loss.needs:
                fits = sorted(n for n in LOSSES if "tokens" in LOSSES.get(n).needs)
                raise DistilleryError(f"param {step.param}.losses.{name}: reads one answer per text, and a seq2seq "
                                      f"student answers per token; use {', '.join(fits)}")
        self.steps = [Step(step, losses, set().union(*(loss.needs for _, loss in losses.values())))]
        self.targets = self.teacher_targets() if "topk" in self.steps[0].needs else None
        torch.manual_seed(cfg.seed)  # training's dropout draws from here, whatever building the student drew

    def start(self, step: Step, rng: np.random.Generator) -> None:
        """`max_examples` > 0: a seeded sample of the training pairs (the output vocabulary stays the whole set's)."""
        n = len(self.enc.src)
        if step.cfg.max_examples and step.cfg.max_examples < n:
            keep = np.sort(rng.choice(n, size=step.cfg.max_examples, replace=False))
            self.frame = self.frame.iloc[keep].reset_index(drop=True)
            self.enc = dataclasses.replace(self.enc, src=[self.enc.src[i] for i in keep],
                                           tgt=[self.enc.tgt[i] for i in keep])
            if self.targets is not None:  # the sample's rows of the artifact already opened and checked
                self.targets = TeacherTargets(self.targets.art, self.frame["id"].tolist(), self.enc, self.targets.k,
                                              f"students.{self.cfg.name}")

    def build_student(self, family):
        cfg, tok = self.cfg, self.tokenizer
        args = dict(cfg.model_args)
        vocab = np.arange(len(tok))
        if args.get("output_vocab", "target") == "target":
            vocab = np.unique(np.fromiter((i for t in self.enc.tgt for i in t), dtype=np.int64).tolist() + [self.enc.sep])
        max_len = max(self.limits["max_src_len"], self.limits["max_tgt_len"]) + 1
        torch.manual_seed(cfg.seed)
        try:
            mcfg = family.Config(**args, vocab_size=len(tok), pad_id=self.enc.pad, cls_id=self.enc.cls,
                                 sep_id=self.enc.sep, max_positions=min(max_len + 2, MAX_POSITIONS),
                                 vocab=vocab.tolist())
            model = family(mcfg)
        except (TypeError, ValueError) as e:
            raise DistilleryError(f"param students.{cfg.name}.model_args: {e}") from None
        table = torch.full((len(tok),), -1, dtype=torch.long)  # vocabulary id -> output index (-1: outside)
        table[model.vocab] = torch.arange(len(model.vocab))
        self.table = table
        return model.to(self.device)

    def teacher_targets(self) -> TeacherTargets:
        cfg, paths = self.cfg, self.paths
        if paths.teacher is None or not Path(paths.teacher).is_dir():
            raise DistilleryError(f"param students.{cfg.name}.losses.topk_kd: needs the teacher (--teacher) whose "
                                  "soft labels --logits holds")
        if load_tokenizer(str(paths.teacher)).get_vocab() != self.tokenizer.get_vocab():
            raise DistilleryError(f"{paths.teacher}: the teacher's vocabulary differs from prepare.tokenizer "
                                  f"{self.limits['tokenizer']!r}; teacher and student must share one: set both to one model")
        art = Logits(paths.logits)
        art.check_teacher(paths.teacher)
        k = int(cfg.loss_args.get("top_k", art.logits.shape[1]))
        targets = TeacherTargets(art, self.frame["id"].tolist(), self.enc, k, f"students.{cfg.name}")
        self.outside = round(float(1 - np.isin(targets.ids[:, 0], self.model.vocab.cpu().numpy()).mean()), 4)
        return targets

    def batches(self, step: Step, rng: np.random.Generator) -> list:
        lengths = np.array([len(s) + len(t) for s, t in zip(self.enc.src, self.enc.tgt)])
        return length_batches(lengths, batch_size=step.cfg.batch_size, rng=rng, chunk=self.cfg.bucket_batches)

    def loss(self, step: Step, rows: np.ndarray, bf16: bool) -> torch.Tensor:
        dec_in, labels = decoder_io(self.enc, rows)
        batch = {**encoder_inputs(self.enc, rows), "decoder_input_ids": dec_in}
        batch = {k: v.to(self.device) for k, v in batch.items()}
        labels = torch.where(labels == -100, labels, self.table[labels.clamp(min=0)]).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            student = self.model(**batch)
            teacher = ModelOutput()
            if self.targets is not None:
                values, ids = self.targets.batch(rows, labels.shape[1])
                teacher = ModelOutput(logits={MAIN: values.to(self.device)}, ids=self.table[ids].to(self.device))
            return sum(w * loss(student, teacher, {"labels": labels}) for w, loss in step.losses.values())

    def evaluate(self) -> dict[str, float]:
        """Greedy BLEU on dev (sacreBLEU), in fp32 on the CPU."""
        from distillery.generation.decode import bleu, translate

        hyps = translate(self.model.hf, self.tokenizer, self.dev, 1, 64, self.limits["max_tgt_len"] + 1)
        return {"bleu_greedy": bleu(hyps, list(self.dev_frame["tgt"]))}

    def save(self, seconds: float, history: list[dict], processes: int) -> dict:
        cfg, last = self.cfg, self.steps[-1]
        weights = {n: w for n, (w, _) in last.losses.items()}
        kd = weights.get("topk_kd", 0.0) / max(sum(weights.values()), 1e-12)
        steps = len(self.batches(last, np.random.default_rng(0))) * last.cfg.epochs
        metrics = {"student": cfg.name, "model": cfg.model, "dev_bleu_greedy": history[-1]["dev_bleu_greedy"],
                   "steps": steps, "train_pairs": len(self.enc.src), "train_seconds": round(seconds, 1),
                   "final_loss": round(history[-1]["loss"], 4), "alpha": round(kd, 4),
                   "top_k": self.targets.k if self.targets else None, "temperature": last.cfg.temperature,
                   "processes": processes, "output_vocab": len(self.model.vocab),
                   "teacher_top1_outside_vocab": getattr(self, "outside", None),
                   "params": sum(p.numel() for p in self.model.parameters())}  # a tied weight counted once
        save_student(self.model, self.tokenizer, self.paths.out, {
            "name": cfg.name, "task": self.name, **{k: metrics[k] for k in ("alpha", "top_k", "temperature", "steps")},
            "max_src_len": self.limits["max_src_len"], "max_tgt_len": self.limits["max_tgt_len"],
            "training": dataclasses.asdict(cfg), "history": history})
        write_metrics(self.paths.metrics, metrics, "distill", written=self.paths.out)
        return metrics

    export = staticmethod(export_stage)  # an encoder and a decoder step with a key-value cache, checked on greedy output

    @staticmethod
    def prepare_data(values: dict, section: str, out: Path, metrics: Path) -> str:
        """Parallel text: every pair validated (file and line), a seeded sample of the training pairs, stable ids."""
        from distillery.generation.config import GenPrepareConfig
        from distillery.generation.data import prepare_stage

        c = prepare_stage(from_section(GenPrepareConfig, section, values), out, metrics)
        return f"pairs: train {c['train']}, dev {c['dev']}, test {c['test']} -> {out}"

    @staticmethod
    def train_teacher(values: dict, section: str, prepared: Path, out: Path, metrics: Path, live_dir: Path) -> str:
        """The C-MLM teacher: a masked LM fine-tuned on `[CLS] source [SEP] target [SEP]`, target tokens masked."""
        from distillery.generation.config import CmlmTeacherConfig
        from distillery.generation.teacher import teacher_stage

        r = teacher_stage(from_section(CmlmTeacherConfig, section, values), prepared, out, metrics, live_dir)
        return f"teacher masked-token accuracy (dev): {r['masked_token_accuracy']:.4f} -> {out}"

    @staticmethod
    def label(values: dict, section: str, teacher: Path, prepared: Path, augmented, store: Path, out: Path,
              metrics: Path) -> str | None:
        """The teacher's top-k logits and token ids at every target position (each masked once)."""
        from distillery.generation.config import GenSoftLabelConfig
        from distillery.generation.soft_labels import soft_labels_stage

        r = soft_labels_stage(from_section(GenSoftLabelConfig, section, values), teacher, prepared, store, out, metrics)
        if "pairs" not in r:  # a worker process under torchrun; rank 0 reports
            return None
        return f"soft labels: {r['pairs']} pairs ({r['labelled_pairs']} labelled, {r['reused_pairs']} from the store) -> {out}"

    @staticmethod
    def evaluate_study(values: dict, section: str, doc: dict, paths: dict) -> str:
        """BLEU on the test set (beam in PyTorch, greedy through the export), size, latency per sentence."""
        from distillery.generation.config import GenEvaluateConfig
        from distillery.evaluate.seq2seq import evaluate_stage

        cfg = from_section(GenEvaluateConfig, section, values)
        copies = (doc.get("soft_labels") or {}).get("max_copies", 7)  # the labels' masks (checked by their stage)
        r = evaluate_stage(cfg, list(doc.get("students") or {}), paths["students"], paths["exports"], paths["prepared"],
                           paths["teacher"], paths["teacher_metrics"], copies, paths["out"])
        return f"evaluated {len(r['students'])} students -> {paths['out']}"
