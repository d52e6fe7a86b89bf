"""Masked LM on general text: task-agnostic distillation (DistilBERT's pre-training loss, TinyBERT's general stage).

Data: the corpus packed by `distillery prepare` (`data/corpus.py`: `train.npy`, `heldout.npy`, the tokenizer),
masked anew for every batch by BERT's rule from (seed, epoch, batch), so that a re-run sees the same masks and
N data-parallel processes the same ones as one. Teacher targets: a masked LM (`teacher/mlm.py`) run alongside
the student: its masked-LM logits at the chosen positions, and its hidden states and attention scores where a
loss reads them. Nothing of it is stored: a corpus's per-token states would be far larger than the corpus
(6 x 384 fp16 states per token), and the teacher's forward pass costs less than the student's forward and backward.
Student: a transformer family with a masked-LM head (`head: mlm`), built from the teacher as on a task, saved in
`save_pretrained` form (loads with `AutoModelForMaskedLM` and `AutoModel`). Losses: the registered ones read
the positions' logits as they read a classifier's (`kl_div`/`soft_ce` at temperature T on the teacher's vocabulary
distribution, `ce` on the original tokens: the student's own masked-LM loss) and the hidden states and scores
as on a task (`cosine_hidden`, `tinybert_*`). Scoring: masked-token accuracy on the held-out rows.
"""

import dataclasses
from pathlib import Path

import numpy as np
import torch

from distillery.config import from_section
from distillery.data.corpus import mask_rule
from distillery.errors import DistilleryError
from distillery.export.card import general_card
from distillery.io import read_json, write_metrics
from distillery.losses import LossContext
from distillery.losses.features import LayerMapLoss
from distillery.outputs import MAIN, ModelOutput
from distillery.students import STUDENTS, save_student
from distillery.students.transformer import TransformerStudent, model_output
from distillery.tasks.base import TASKS, Step, Task, build_losses
from distillery.teacher.mlm import has_trained_head, load_mlm, mlm_head
from distillery.teacher.models import load_tokenizer

SERVED = frozenset({"labels", "logits", "hidden", "scores"})


def forward_masked(hf, batch: dict, labels: torch.Tensor, scores: bool) -> ModelOutput:
    """A masked LM's answer: every hidden state (and the attention scores if asked), and the vocabulary logits at
    the chosen positions only (`labels` other than -100), (n_chosen, V) in the order of `labels[labels != -100]`."""
    out = model_output(hf.base_model, batch, hidden=True, scores=scores)
    out.logits = {MAIN: mlm_head(hf)(out.hidden[-1][labels != -100])}
    return out


def head_trained(losses: dict[str, float]) -> bool:
    """Whether a student's last step trains its masked-LM head (a loss on the chosen positions' logits)."""
    from distillery.losses import LOSSES

    return any(w > 0 and LOSSES.get(n).needs & {"logits", "labels"} for n, w in losses.items())


@TASKS.register("mlm")
class MaskedLM(Task):
    name = "mlm"

    def setup(self) -> None:
        cfg, paths, p = self.cfg, self.paths, f"students.{self.cfg.name}"
        family = STUDENTS.get(cfg.model, param=f"{p}.model")
        if not issubclass(family, TransformerStudent):
            raise DistilleryError(f"param {p}.model: general distillation trains a transformer student "
                                  f"({', '.join(n for n in STUDENTS if issubclass(STUDENTS.get(n), TransformerStudent))})")
        prepared = Path(paths.prepared)
        if not (prepared / "corpus.json").is_file():
            raise DistilleryError(f"{prepared}: no packed corpus (corpus.json missing); run `distillery prepare` of the "
                                  "general study first")
        self.tokenizer = load_tokenizer(prepared / "tokenizer", None, f"{prepared}/tokenizer")
        self.corpus, self.heldout = np.load(prepared / "train.npy"), np.load(prepared / "heldout.npy")
        if paths.teacher is None or not Path(paths.teacher).is_dir():
            raise DistilleryError(f"param {p}.task: general distillation needs the masked-LM teacher (--teacher)")
        self.teacher, teacher_tok = load_mlm(str(paths.teacher))
        if teacher_tok.get_vocab() != self.tokenizer.get_vocab():
            raise DistilleryError(f"{paths.teacher}: the teacher's vocabulary differs from the one that packed the "
                                  f"corpus ({prepared}/tokenizer); re-run prepare with the teacher's tokenizer")
        self.teacher.eval().requires_grad_(False).to(self.device)
        self.rule = mask_rule(self.tokenizer)
        self.model = self.build_student(family)
        self.steps = []
        for step in cfg.steps():  # a progressive step: one stage per student layer (MobileBERT)
            blocks = range(1, self.model.config.num_layers + 1) if step.progressive else [None]
            self.steps += [self.step_losses(step, block) for block in blocks]
        self.trains = {name: p.requires_grad for name, p in self.model.named_parameters()}
        if any("logits" in s.needs for s in self.steps) and not has_trained_head(str(paths.teacher)):
            raise DistilleryError(f"{paths.teacher}: the teacher has no trained masked-LM head, and the losses read its "
                                  "logits; train one (the study's teacher stage, teacher.train: head)")
        self.teacher_forward_rows = 0

    def build_student(self, family):
        cfg = self.cfg
        known = {f.name for f in dataclasses.fields(family.Config)}
        args = {"vocab_size": len(self.tokenizer), "pad_id": self.tokenizer.pad_token_id, "num_labels": 2,
                "input_names": list(self.tokenizer.model_input_names), **cfg.model_args, "head": "mlm"}
        torch.manual_seed(cfg.seed)
        try:
            model = family.from_teacher(family.Config(**{k: v for k, v in args.items() if k in known}), self.paths.teacher)
        except (TypeError, ValueError) as e:
            raise DistilleryError(f"param students.{cfg.name}.model_args: {e}") from None
        if model.hf.config.vocab_size != self.teacher.config.vocab_size:
            raise DistilleryError(f"param students.{cfg.name}.model_args: the student's vocabulary "
                                  f"({model.hf.config.vocab_size}) differs from the teacher's ({self.teacher.config.vocab_size})")
        return model.to(self.device)

    def step_losses(self, step, block: int | None = None) -> Step:
        mc = self.model.config
        ctx = LossContext(temperature=step.temperature, layer_map=tuple(mc.layer_map or ()), student_width=mc.hidden_size,
                          teacher_width=self.teacher.config.hidden_size, layers=(block,) if block else ())
        losses = build_losses(step.losses, step.param, ctx, self.model, allowed=SERVED, device=self.device)
        odd = [n for n, (_, loss) in losses.items() if block and not isinstance(loss, LayerMapLoss)]
        if odd:
            raise DistilleryError(f"param {step.param}.losses.{odd[0]}: a progressive stage trains one layer on that "
                                  "layer's teacher maps; use layer-map losses (mobilebert_feature_map, "
                                  "mobilebert_attention, tinybert_hidden, tinybert_attention)")
        return Step(step, losses, set().union(*(loss.needs for _, loss in losses.values())), block=block)

    def trainable(self, step: Step) -> list[torch.Tensor]:
        """A progressive stage trains its one layer (and, the first, the embeddings), the layers below it frozen
        (Sun et al. 2020, sec. 3.5); any other step what the student trains (its own freezing kept)."""
        layers = self.model.hf.base_model.encoder.layer
        for name, p in self.model.named_parameters():
            p.requires_grad_(self.trains[name])
        if step.block:
            keep = {id(p) for p in layers[step.block - 1].parameters()}
            if step.block == 1:
                keep |= {id(p) for p in self.model.hf.base_model.embeddings.parameters()}
            for p in self.model.parameters():
                p.requires_grad_(p.requires_grad and id(p) in keep)
        return super().trainable(step)

    def start(self, step: Step, rng: np.random.Generator) -> None:
        n = len(self.corpus)
        step.data = np.sort(rng.choice(n, size=step.cfg.max_examples, replace=False)) \
            if step.cfg.max_examples and step.cfg.max_examples < n else np.arange(n)
        step.alongside = True

    def batches(self, step: Step, rng: np.random.Generator) -> list:
        """Keys (mask seed, global rows): the rows shuffled, in batches of batch_size, each batch's masks seeded by a
        draw of the run's generator (itself seeded by the student's seed): a re-run masks every batch alike."""
        order = rng.permutation(step.data)
        starts = range(0, len(order), step.cfg.batch_size)
        seeds = rng.integers(0, 2**62, size=len(starts))
        return [((self.cfg.seed, int(seeds[b])), order[s:s + step.cfg.batch_size]) for b, s in enumerate(starts)]

    def shard(self, key, rank: int, size: int):
        seed, rows = key
        part = np.array_split(np.arange(len(rows)), size)[rank]
        return seed, rows, part

    def rows_of(self, key) -> np.ndarray:
        return key[1][key[2]] if len(key) == 3 else key[1]

    def rows(self, key) -> int:
        return len(self.rows_of(key))

    def loss(self, step: Step, key, bf16: bool) -> torch.Tensor:
        """The step's weighted losses on this process's rows. The global batch is masked as one, then split; a loss
        on the chosen positions (a mean over them) is rescaled by this part's share of the positions over its share
        of the rows, so that the recipe's row-weighted average over processes is the global batch's mean."""
        seed, rows, part = key
        inputs, labels = self.rule(torch.from_numpy(self.corpus[rows].astype(np.int64)), seed)
        chosen_all = int((labels != -100).sum())
        inputs, labels = inputs[part].to(self.device), labels[part].to(self.device)
        chosen = int((labels != -100).sum())
        share = (chosen / max(chosen_all, 1)) / (len(part) / len(rows))
        batch = {"input_ids": inputs, "attention_mask": torch.ones_like(inputs)}  # packed rows: no padding
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            student = forward_masked(self.model.hf, batch, labels, "scores" in step.needs)
            with torch.no_grad():
                teacher = forward_masked(self.teacher, batch, labels, "scores" in step.needs)
            self.teacher_forward_rows += len(part)
            gold = {"labels": labels[labels != -100]}
            total = inputs.new_zeros((), dtype=torch.float32)
            for w, loss in step.losses.values():
                per_position = bool(loss.needs & {"logits", "labels"})
                if not (per_position and chosen == 0):
                    total = total + w * loss(student, teacher, gold) * (share if per_position else 1.0)
            return total

    def teacher_accuracy(self) -> float | None:
        """The teacher's held-out masked-token accuracy, on the rows and masks the student is scored on."""
        from distillery.teacher.mlm import heldout_accuracy

        return heldout_accuracy(self.teacher.to("cpu"), self.rule, self.heldout, self.cfg.seed)

    def evaluate(self) -> dict[str, float]:
        from distillery.teacher.mlm import heldout_accuracy

        return {"masked_token_accuracy": heldout_accuracy(self.model.hf, self.rule, self.heldout, self.cfg.seed)}

    def save(self, seconds: float, history: list[dict], processes: int) -> dict:
        cfg, last = self.cfg, self.steps[-1]
        tokens = sum(len(s.data) * s.cfg.epochs for s in self.steps) * self.corpus.shape[1]
        metrics = {"student": cfg.name, "model": cfg.model,
                   "dev_masked_token_accuracy": history[-1]["dev_masked_token_accuracy"],
                   "train_seconds": round(seconds, 1), "train_rows": len(last.data), "seq_len": int(self.corpus.shape[1]),
                   "tokens_per_second": round(tokens / seconds, 1), "teacher_forward_rows": self.teacher_forward_rows,
                   "processes": processes, "params": sum(p.numel() for p in self.model.parameters())}
        info = {"name": cfg.name, "task": self.name, "max_seq_len": int(self.corpus.shape[1]),
                **{k: metrics[k] for k in ("tokens_per_second", "train_seconds", "dev_masked_token_accuracy")},
                "training": dataclasses.asdict(cfg), "history": history}
        card = general_card({**info, "family": self.model.family, "config": dataclasses.asdict(self.model.config)},
                            read_json(Path(self.paths.prepared) / "corpus.json"),
                            {**metrics, "head_trained": head_trained(last.cfg.losses)}, self.teacher_accuracy())
        save_student(self.model, self.tokenizer, self.paths.out, info, files={"README.md": card})
        write_metrics(self.paths.metrics, metrics, "distill", written=self.paths.out)
        return metrics

    @staticmethod
    def prepare_data(values: dict, section: str, out: Path, metrics: Path) -> str:
        """The corpus read, packed with the teacher's tokenizer, shuffled; held-out text packed the same way."""
        from distillery.data.corpus import CorpusConfig, prepare_corpus

        r = prepare_corpus(from_section(CorpusConfig, section, values), out, metrics)
        return f"corpus: {r['documents']} documents, {r['train_rows']} rows of {r['seq_len']} tokens; held out: " \
               f"{r['heldout_rows']} rows -> {out}"

    @staticmethod
    def train_teacher(values: dict, section: str, prepared: Path, out: Path, metrics: Path, live_dir: Path) -> str:
        from distillery.teacher.mlm import MlmTeacherConfig, general_teacher_stage

        r = general_teacher_stage(from_section(MlmTeacherConfig, section, values), prepared, out, metrics, live_dir)
        return f"teacher masked-token accuracy (held out): {r['heldout_masked_token_accuracy']:.4f} -> {out}"

    @staticmethod
    def evaluate_study(values: dict, section: str, doc: dict, paths: dict) -> str:
        """Held-out masked-token accuracy of the teacher and of every general student (same rows, same masks),
        their size and training throughput: table.md, table.csv, summary.json."""
        from distillery.evaluate.tables import md, write_tables
        from distillery.students import load_student
        from distillery.teacher.mlm import heldout_accuracy
        import pandas as pd

        prepared, names = Path(paths["prepared"]), [str(n) for n in doc.get("students") or {}]
        tok = load_tokenizer(prepared / "tokenizer", None, f"{prepared}/tokenizer")
        heldout, rule, seed = np.load(prepared / "heldout.npy"), mask_rule(tok), int(doc["distill"]["common"]["seed"])
        teacher = read_json(paths["teacher_metrics"])
        model, _ = load_mlm(str(paths["teacher"]))
        rows = [{"model": "teacher", "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                 "heldout_masked_token_accuracy": round(heldout_accuracy(model, rule, heldout, seed), 4),
                 "tokens_per_second": teacher.get("tokens_per_second"), "train_seconds": teacher.get("train_seconds")}]
        for n in names:
            student, _, info = load_student(Path(paths["students"]) / n)
            scored = head_trained(info["training"]["losses"])  # TinyBERT's general stage leaves the head untrained
            rows.append({"model": n, "params_m": round(sum(p.numel() for p in student.parameters()) / 1e6, 2),
                         "heldout_masked_token_accuracy": round(heldout_accuracy(student.hf, rule, heldout, seed), 4)
                         if scored else None,
                         "tokens_per_second": info.get("tokens_per_second"), "train_seconds": info.get("train_seconds")})
        text = (f"Held out: {len(heldout)} rows of {heldout.shape[1]} tokens ({prepared}), every model on the same masks, "
                "in fp32 (the teacher stage scores in its training precision). -: no masked-LM head trained.\n\n")
        text += "\n".join(md(["model", "params (M)", "held-out masked-token accuracy", "training tokens/s", "training s"],
                             [[r["model"], r["params_m"], "-" if r["heldout_masked_token_accuracy"] is None
                               else f"{r['heldout_masked_token_accuracy']:.4f}",
                               r["tokens_per_second"] or "-", r["train_seconds"] or "-"] for r in rows])) + "\n"
        write_tables(Path(paths["out"]), text, pd.DataFrame(rows), {"rows": rows})
        return text

    @staticmethod
    def export(cfg, student_dir: Path, prepared: Path, out: Path, teacher: Path | None = None,
               augmented: Path | None = None) -> dict:
        raise DistilleryError(f"{student_dir}: a general student is not exported; it is the starting point of a task's "
                              "student (model_args.init_from), and it already loads with AutoModelForMaskedLM")
