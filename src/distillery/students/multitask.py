"""The multi-task student (MT-DNN): a shared transformer encoder and one classification head per task.

The encoder is the first `num_layers` layers of a pre-trained BERT-like model (MT-DNN starts its shared
layers from pre-trained BERT, not from a task's fine-tune), its [CLS] state goes through the model's
own pooler (dense + tanh) where it has one, then per task dropout and a linear map to that task's
labels. One forward pass answers every task: the `ModelOutput` holds a logits entry per head.
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from distillery.outputs import ModelOutput
from distillery.students.base import STUDENTS, Student, dynamo_onnx


@dataclass
class MultiTaskStudentConfig:
    heads: dict[str, int] = field(default_factory=dict)  # task -> number of labels, in output order
    base_model: str = ""  # the pre-trained encoder whose first num_layers layers it starts from
    num_layers: int = 3
    dropout: float = 0.1
    freeze_embeddings: bool = True
    input_names: list[str] = field(default_factory=lambda: ["input_ids", "token_type_ids", "attention_mask"])
    hf: dict | None = None  # the encoder's transformers config (written by from_base)


@STUDENTS.register("mtdnn")
class MultiTaskStudent(Student):
    Config = MultiTaskStudentConfig
    params_group = "mtdnn"
    card = ("a multi-task BERT: a shared encoder with a classification head per task",
            "Liu et al. 2019", "Improving Multi-Task Deep Neural Networks via Knowledge Distillation for Natural Language Understanding", "1904.09482")

    def __init__(self, config: MultiTaskStudentConfig, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        if encoder is None:
            from transformers import AutoConfig, AutoModel

            encoder = AutoModel.from_config(AutoConfig.for_model(**config.hf))
        self.encoder = encoder
        width = encoder.config.hidden_size
        self.dropout = nn.Dropout(config.dropout)
        self.heads = nn.ModuleDict({t: nn.Linear(width, n) for t, n in config.heads.items()})
        self.export_all = False

    @property
    def tasks(self) -> list[str]:
        return list(self.config.heads)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, task: str | None = None, hidden: bool = False,
                scores: bool = False):
        kw = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        out = self.encoder(**kw)
        pooled = getattr(out, "pooler_output", None)
        pooled = out.last_hidden_state[:, 0] if pooled is None else pooled  # (bs, d)
        pooled = self.dropout(pooled)
        names = [task] if task is not None else self.tasks
        logits = {t: self.heads[t](pooled) for t in names}  # task -> (bs, n_labels)
        if self.export_all:
            return tuple(logits[t] for t in self.tasks)
        if self.export_head:
            return logits[self.export_head]
        return ModelOutput(logits=logits, mask=attention_mask)

    def predictor(self, task: str):
        """batch -> `task`'s logits (numpy)."""
        def run(batch: dict):
            with torch.inference_mode():
                return self(**batch, task=task).logits[task].float().numpy()
        return run

    # ------------------------------------------------------------------ export: one graph, every head
    def export_onnx(self, path: Path, example: dict, opset: int) -> None:
        """One ONNX graph with an output `logits_<task>` per head (the encoder runs once)."""
        self.encoder.set_attn_implementation("eager")  # plain-ops attention: the fused kernel's mask shortcuts are data-dependent
        self.export_all = True
        try:
            dynamo_onnx(self, {n: example[n] for n in self.input_names}, [f"logits_{t}" for t in self.tasks], path,
                        opset, max_seq=self.encoder.config.max_position_embeddings)
        finally:
            self.export_all = False

    # ------------------------------------------------------------------ building from a pre-trained encoder
    @classmethod
    def from_base(cls, config: MultiTaskStudentConfig, base_path: str) -> "MultiTaskStudent":
        """The first `num_layers` layers (and embeddings, pooler) of the pre-trained model at `base_path`."""
        from transformers import AutoConfig, AutoModel

        from distillery.teacher.train import quiet_loading

        t = AutoConfig.from_pretrained(base_path)
        if not hasattr(t, "num_hidden_layers"):
            raise ValueError(f"{base_path} ({t.model_type}) is not a BERT-like encoder")
        if config.num_layers > t.num_hidden_layers:
            raise ValueError(f"num_layers {config.num_layers}, but {base_path} has {t.num_hidden_layers} layers")
        hf = t.to_dict()
        for key in ("architectures", "_name_or_path", "transformers_version", "dtype", "torch_dtype", "id2label",
                    "label2id", "num_labels"):
            hf.pop(key, None)
        hf["num_hidden_layers"] = config.num_layers
        c = copy.deepcopy(config)
        c.hf = hf
        model = cls(c)
        with quiet_loading():
            base = AutoModel.from_pretrained(base_path)
        missing, _ = model.encoder.load_state_dict(base.state_dict(), strict=False)  # layers past num_layers: unused
        missing = [k for k in missing if not k.startswith("pooler.")]  # a model without a pooler: it starts random
        if missing:
            raise ValueError(f"could not initialise {missing[0]} from {base_path}")
        model.encoder.get_input_embeddings().weight.requires_grad_(not c.freeze_embeddings)
        return model
