"""FastBERT (Liu et al. 2020, "FastBERT: a Self-distilling BERT with Adaptive Inference Time"): a
fine-tuned BERT backbone with a small classifier ("branch") after every layer but the last, whose
own classifier is the "teacher" the branches learn from.

- Step 1 of the paper (backbone and last classifier fine-tuned on gold labels) is our `teacher`
  stage: the backbone is the model `--teacher` names (the teacher, or any BERT-shaped student folder),
  loaded whole and frozen.
- Step 2, self-distillation: only the branches train (`self_distill`: sum of KL(p_L || p_i), T = 1;
  no labels, so the augmented transfer set serves). `exit_kd` distils them from the stored teacher
  logits instead, `exit_ce` from gold labels (the ablation).
- Inference: a text leaves at the first exit whose normalised entropy is below `speed`
  (`exits.adaptive_predict`, batched: each layer runs only on the rows still in play).

Branch, as in the authors' code (autoliuweijie/FastBERT): Linear(d -> w) + tanh, multi-head
self-attention at width w (2 heads), the [CLS] vector, Linear(w -> w) + tanh, Linear(w -> C); w = 128.
Only [CLS]'s attention output is read, so only [CLS] gets a query (same result, less work).
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distillery.outputs import MAIN, ModelOutput
from distillery.teacher.models import load_weights
from distillery.students.base import STUDENTS, Student, safe_torch_load
from distillery.students.exits import adaptive_predict

BRANCHES = "branches.pt"


def exit_head(layer: int) -> str:
    """The head name of layer `layer`'s branch in a `ModelOutput` (the last layer's is `MAIN`)."""
    return f"exit{layer}"


@dataclass
class FastBertConfig:
    branch_width: int = 128  # the authors' cla_hidden_size
    branch_heads: int = 2
    num_labels: int = 2
    vocab_size: int = 30522
    pair: bool = False
    pad_id: int = 0
    speed: float = 0.5  # exit threshold on the normalised entropy used by default at inference (0: never exit early)
    input_names: list[str] = field(default_factory=lambda: ["input_ids", "token_type_ids", "attention_mask"])
    hf: dict | None = None  # the backbone's transformers config (written by from_teacher)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(bs, n) 1/0 token mask -> (bs, 1, 1, n) additive attention mask (0 or the dtype's minimum)."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class Branch(nn.Module):
    """One exit classifier over a layer's hidden states (see the module docstring)."""

    def __init__(self, d_in: int, width: int, heads: int, n_labels: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"branch_width {width} is not a multiple of branch_heads {heads}")
        self.heads, self.d_head = heads, width // heads
        self.inp = nn.Linear(d_in, width)
        self.query, self.key, self.value = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)
        self.attn_out = nn.Linear(width, width)
        self.dense = nn.Linear(width, width)
        self.out = nn.Linear(width, n_labels)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bs, n, _ = h.shape
        x = torch.tanh(self.inp(h))  # (bs, n, w)
        q = self.query(x[:, :1]).view(bs, 1, self.heads, self.d_head).transpose(1, 2)  # (bs, heads, 1, d_head)
        k = self.key(x).view(bs, n, self.heads, self.d_head).transpose(1, 2)  # (bs, heads, n, d_head)
        v = self.value(x).view(bs, n, self.heads, self.d_head).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) * self.d_head ** -0.5 + additive_mask(mask, q.dtype)  # (bs, heads, 1, n)
        cls = (scores.softmax(-1) @ v).transpose(1, 2).reshape(bs, -1)  # (bs, w)
        return self.out(torch.tanh(self.dense(self.attn_out(cls))))  # (bs, C)


@STUDENTS.register("fastbert")
class FastBertStudent(Student):
    """The frozen backbone plus one branch per layer below the top; `forward` answers every exit."""

    card = ("a FastBERT model: the fine-tuned teacher with an early-exit classifier after each layer, answering at "
            "the first layer that is certain enough", "Liu et al. 2020",
            "FastBERT: a Self-distilling BERT with Adaptive Inference Time", "2004.02178")
    params_group = "fastbert"
    Config = FastBertConfig
    provides = frozenset({"exits"})
    trained_by = frozenset({"exits"})  # the backbone is frozen: a step must train the exits
    export_format = "exits"
    regression = False  # the paper's exits stop on the entropy of class probabilities; a score has none
    regression_refusal = ("its exits stop on the normalised entropy of the class probabilities (Liu et al. 2020), "
                          "which a one-output score does not have")

    def __init__(self, config: FastBertConfig, hf_model: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        if hf_model is None:
            from transformers import AutoConfig, AutoModelForSequenceClassification

            hf_model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(**dict(config.hf)))
        self.hf = hf_model
        for p in self.hf.parameters():
            p.requires_grad_(False)
        hc = self.hf.config
        self.branches = nn.ModuleList(Branch(hc.hidden_size, config.branch_width, config.branch_heads,
                                             config.num_labels) for _ in range(hc.num_hidden_layers - 1))

    # ------------------------------------------------------------------ the backbone, layer by layer
    @property
    def n_layers(self) -> int:
        return self.hf.config.num_hidden_layers

    @property
    def backbone(self) -> nn.Module:
        return self.hf.base_model

    def train(self, mode: bool = True) -> "FastBertStudent":
        super().train(mode)
        self.hf.eval()  # frozen: no dropout in the backbone while the branches train
        return self

    def embed(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.backbone.embeddings(input_ids=inputs["input_ids"], token_type_ids=inputs.get("token_type_ids"))
        return emb, inputs["attention_mask"]  # (bs, n, d), (bs, n)

    def layer(self, i: int, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer i (1-based) and its exit: the branch, or the backbone's classifier at the top."""
        out = self.backbone.encoder.layer[i - 1](h, attention_mask=additive_mask(mask, h.dtype))
        h = out[0] if isinstance(out, tuple) else out  # (bs, n, d)
        return h, self.exit_logits(i, h, mask)

    def exit_logits(self, i: int, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if i < self.n_layers:
            return self.branches[i - 1](h, mask)
        pooled = self.backbone.pooler(h) if self.backbone.pooler is not None else h[:, 0]
        return self.hf.classifier(self.hf.dropout(pooled) if hasattr(self.hf, "dropout") else pooled)

    # ------------------------------------------------------------------ the student interface
    def collate(self, tokenizer, texts_a: list[str], texts_b: list[str] | None, max_seq_len: int) -> dict:
        enc = tokenizer(texts_a, texts_b, truncation=True, max_length=max_seq_len, padding=True, return_tensors="pt")
        names = self.input_names if "attention_mask" in self.input_names else [*self.input_names, "attention_mask"]
        return {n: enc[n] for n in names}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, hidden: bool = False, scores: bool = False):
        """Every exit's logits: `exit1` .. `exit{L-1}` and `MAIN` (the backbone's classifier)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
        with torch.no_grad():  # the backbone is frozen
            h, mask = self.embed(inputs)
            states = [h]
            for i in range(1, self.n_layers + 1):
                out = self.backbone.encoder.layer[i - 1](h, attention_mask=additive_mask(mask, h.dtype))
                h = out[0] if isinstance(out, tuple) else out
                states.append(h)
            main = self.exit_logits(self.n_layers, h, mask)
        logits = {exit_head(i): self.branches[i - 1](states[i], mask) for i in range(1, self.n_layers)}
        logits[MAIN] = main
        return self.answer(ModelOutput(logits=logits, hidden=states if hidden else None, mask=mask))

    def exit_names(self) -> list[str]:
        return [exit_head(i) for i in range(1, self.n_layers)] + [MAIN]

    # ------------------------------------------------------------------ adaptive inference
    def take(self, h: torch.Tensor, mask: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.as_tensor(rows, dtype=torch.long)
        h, mask = h.index_select(0, r), mask.index_select(0, r)
        n = max(int(mask.sum(1).max()), 1)  # trim the columns that are padding in every row left
        return h[:, :n], mask[:, :n]

    def join(self, parts: list) -> tuple[torch.Tensor, torch.Tensor]:
        n = max(h.shape[1] for h, _ in parts)
        return (torch.cat([F.pad(h, (0, 0, 0, n - h.shape[1])) for h, _ in parts]),
                torch.cat([F.pad(m, (0, n - m.shape[1])) for _, m in parts]))

    @torch.inference_mode()
    def adaptive(self, batches, n_rows: int, speed: float | None = None, pool: bool = False):
        """(logits (n, C) numpy, exit layer (n,)) with early exits; see `exits.adaptive_predict`."""
        self.eval()
        return adaptive_predict(TorchRunner(self), batches, n_rows, self.config.speed if speed is None else speed,
                                pool=pool)

    def predictor(self, speed: float | None = None):
        """batch -> logits of the adaptive model (one batch, its own rows only)."""
        def run(batch: dict) -> np.ndarray:
            n = len(batch["input_ids"])
            return self.adaptive([(np.arange(n), batch)], n, speed)[0]
        return run

    # ------------------------------------------------------------------ saving: transformers format + branches
    def save_weights(self, folder: Path) -> None:
        self.hf.save_pretrained(folder)
        torch.save(self.branches.state_dict(), Path(folder) / BRANCHES)

    @classmethod
    def load_weights(cls, folder: Path, config: FastBertConfig) -> "FastBertStudent":
        from transformers import AutoModelForSequenceClassification

        model = cls(config, load_weights(AutoModelForSequenceClassification, folder, "student"))
        model.branches.load_state_dict(safe_torch_load(Path(folder) / BRANCHES))
        return model

    @classmethod
    def from_teacher(cls, config: FastBertConfig, teacher_dir: str | Path | None) -> "FastBertStudent":
        from transformers import AutoModelForSequenceClassification

        if teacher_dir is None:
            raise ValueError("fastbert's backbone is a fine-tuned model; give its folder")
        if not 0 <= config.speed <= 1:
            raise ValueError(f"speed must be in [0, 1] (a normalised entropy), got {config.speed}")
        hf = load_weights(AutoModelForSequenceClassification, teacher_dir)
        base = hf.base_model
        if not (hasattr(base, "embeddings") and hasattr(getattr(base, "encoder", None), "layer")):
            raise ValueError(f"the backbone ({hf.config.model_type}) is not BERT-shaped (embeddings + encoder.layer)")
        if hf.config.num_labels != config.num_labels:
            raise ValueError(f"the backbone has {hf.config.num_labels} labels, the data {config.num_labels}")
        c = copy.deepcopy(config)
        d = hf.config.to_dict()
        for key in ("architectures", "_name_or_path", "transformers_version", "dtype", "torch_dtype"):
            d.pop(key, None)
        c.hf = d
        return cls(c, hf)


class TorchRunner:
    """FastBertStudent as an `exits` runner (numpy logits, torch hidden states)."""

    def __init__(self, model: FastBertStudent) -> None:
        self.model, self.n_layers = model, model.n_layers

    def embed(self, inputs: dict):
        return self.model.embed(inputs)

    def layer(self, i: int, h, mask):
        h, z = self.model.layer(i, h, mask)
        return h, z.float().numpy()

    def take(self, h, mask, rows):
        return self.model.take(h, mask, rows)

    def join(self, parts):
        return self.model.join(parts)
