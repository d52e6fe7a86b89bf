"""Transformer students from the papers, all built on transformers' own model classes so that a saved
student loads with `AutoModelForSequenceClassification.from_pretrained(folder)`.

| family       | paper                 | shape (our 6 x 384 teacher)            | initialised from the teacher      |
|--------------|-----------------------|----------------------------------------|-----------------------------------|
| `bert`       | (baseline)            | k of the teacher's layers               | its first k layers                |
| `distilbert` | Sanh et al. 2019      | k layers, teacher width                 | every other layer (2, 4, 6)       |
| `pkd_skip`   | Sun et al. 2019 (PKD) | k layers, teacher width                 | first k layers; patient layers 2, 4 |
| `pkd_last`   | Sun et al. 2019 (PKD) | k layers, teacher width                 | first k layers; patient layers 4, 5 |
| `tinybert`   | Jiao et al. 2020      | 4 layers of 192, uniform layer map      | embeddings (PCA, see below)       |
| `mobilebert` | Sun et al. 2020       | teacher depth, bottleneck blocks        | embeddings (PCA)                  |

Layer numbers are 1-based teacher layers (0 = embeddings), as in transformers' `hidden_states`.
Everything a family derives from the teacher (width, heads, layer maps) is resolved by `from_teacher`
and stored in the student's config, so `load_student` rebuilds exactly the same model.

TinyBERT and MobileBERT start, in their papers, from a student pre-distilled on a general corpus
(General TinyBERT, the pre-trained MobileBERT): `model_args.init_from` names such a general student of the
same family and shape (`studies/general`, task-agnostic distillation). Without one, their word, position and
segment embeddings start from the teacher's projected onto the student width by PCA, and the rest is random.
The task-specific steps are the papers' own.
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from distillery.io import read_json
from distillery.outputs import MAIN, ModelOutput
from distillery.teacher.models import load_weights
from distillery.students.base import STUDENTS, Student, dynamo_onnx


@dataclass
class TransformerConfig:
    vocab_size: int = 30522
    num_labels: int = 2
    pair: bool = False
    pad_id: int = 0
    num_layers: int = 0  # 0: the family's default
    hidden_size: int = 0  # 0: the teacher's (mobilebert: the inter-block width, must equal the teacher's)
    num_heads: int = 0  # 0: the teacher's (mobilebert: 4)
    intermediate_size: int = 0  # 0: the teacher's at its width, else 4 x hidden_size (mobilebert: 4 x intra_size)
    init_layers: list[int] | None = None  # teacher layers copied into student layers 1..k
    layer_map: list[int] | None = None  # teacher layer each student layer learns from (feature losses)
    patient_layers: list[int] | None = None  # PKD: teacher layers for student layers 1..k-1
    freeze_embeddings: bool = False  # keep the word-embedding table fixed (about 1.4x faster steps on CPU)
    init_embeddings: str = ""  # "pca": teacher embeddings projected to the student width; "": random
    intra_size: int = 128  # mobilebert: intra-block (bottleneck) width
    num_ffn: int = 2  # mobilebert: stacked feed-forward networks per block
    embedding_size: int = 128  # mobilebert: embedding width before the trigram projection
    normalization: str = "no_norm"  # mobilebert: "no_norm" (the paper's NoNorm) or "layer_norm"
    input_names: list[str] = field(default_factory=lambda: ["input_ids", "token_type_ids", "attention_mask"])
    head: str = "classification"  # classification (a task's student) | mlm (a general student: a masked-LM head)
    init_from: str = ""  # a general student's folder (task-agnostic distillation): its embeddings and layers
    hf: dict | None = None  # the resolved transformers config (written by from_teacher)


def auto_class(head: str):
    """transformers' Auto class of a student with this head."""
    import transformers

    if head not in ("classification", "mlm"):
        raise ValueError(f"head must be classification or mlm, got {head!r}")
    return transformers.AutoModelForMaskedLM if head == "mlm" else transformers.AutoModelForSequenceClassification


def _every_other(n_teacher: int, k: int) -> list[int]:
    return [n_teacher - 2 * (k - 1 - i) for i in range(k)]


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of a BERT-like model, in layer order (those with query/key maps)."""
    return [m for _, m in model.named_modules()
            if isinstance(getattr(m, "query", None), nn.Linear) and isinstance(getattr(m, "key", None), nn.Linear)
            and hasattr(m, "attention_head_size")]


def model_output(hf_model: nn.Module, batch: dict, hidden: bool = False, scores: bool = False) -> ModelOutput:
    """A transformers classifier's answer as a `ModelOutput`: logits, and when asked every hidden state
    and every layer's unnormalised attention scores q.k / sqrt(d_head). Scores come from hooks on the
    query and key maps, so the fast attention kernel stays in use. Students and the teacher run
    alongside both answer through here."""
    caught: dict[int, dict[str, torch.Tensor]] = {}
    hooks = []
    mods = attention_modules(hf_model) if scores else []
    for i, m in enumerate(mods):
        for part in ("query", "key"):
            hooks.append(getattr(m, part).register_forward_hook(
                lambda mod, inp, out, i=i, part=part: caught.setdefault(i, {}).__setitem__(part, out)))
    try:
        out = hf_model(**batch, output_hidden_states=hidden or scores)
    finally:
        for h in hooks:
            h.remove()
    logits = getattr(out, "logits", None)  # none from an encoder without a head (a masked LM's base model)
    sc = []
    for i, m in enumerate(mods):
        q, k = caught[i]["query"], caught[i]["key"]
        bs, n, _ = q.shape
        d = m.attention_head_size
        q = q.view(bs, n, -1, d).transpose(1, 2)
        k = k.view(bs, n, -1, d).transpose(1, 2)
        sc.append(q @ k.transpose(-1, -2) * d ** -0.5)  # (bs, H, L, L)
    return ModelOutput(logits={MAIN: logits} if logits is not None else {}, hidden=list(out.hidden_states) if (hidden or scores) else None,
                       scores=sc if scores else None, mask=batch.get("attention_mask"))


def _pca_embeddings(teacher_weight: torch.Tensor, basis: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return (teacher_weight - mean) @ basis


class TransformerStudent(Student):
    """A transformers sequence classifier with the student interface (collate, forward -> ModelOutput)."""

    library = "transformers"
    card = ("a shallower BERT, initialised from the teacher's first layers",
            "Hinton et al. 2015", "Distilling the Knowledge in a Neural Network", "1503.02531")
    params_group = "transformer"
    Config = TransformerConfig
    provides = frozenset({"hidden", "scores"})

    def __init__(self, config: TransformerConfig, hf_model: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        if hf_model is None:
            from transformers import AutoConfig

            hf_model = auto_class(config.head).from_config(AutoConfig.for_model(**dict(config.hf)))
        self.hf = hf_model

    # ------------------------------------------------------------------ the student interface
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, hidden: bool = False, scores: bool = False):
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids
        return self.answer(model_output(self.hf, batch, hidden, scores))  # logits (bs, num_labels)

    def for_export(self, head: str = MAIN) -> "TransformerStudent":
        """Plain-ops attention for export: the fused kernel's mask shortcuts are data-dependent."""
        self.hf.set_attn_implementation("eager")
        return super().for_export(head)

    def export_onnx(self, path: Path, example: dict, opset: int) -> None:
        """ONNX through torch.export (dynamo): the TorchScript tracer bakes parts of transformers'
        mask construction into constants (wrong logits on other inputs); torch.export keeps them symbolic."""
        dynamo_onnx(self, {n: example[n] for n in self.input_names}, ["logits"], path, opset,
                    max_seq=self.hf.config.max_position_embeddings)

    # ------------------------------------------------------------------ saving: the transformers format
    def save_weights(self, folder: Path) -> None:
        self.hf.save_pretrained(folder)

    @classmethod
    def load_weights(cls, folder: Path, config: TransformerConfig) -> "TransformerStudent":
        return cls(config, load_weights(auto_class(config.head), folder, "student"))

    # ------------------------------------------------------------------ building from the teacher
    @classmethod
    def defaults(cls, c: TransformerConfig, t) -> dict:
        """Family defaults for the fields left at 0/None, given the teacher's config `t`."""
        k = c.num_layers or max(1, t.num_hidden_layers // 2)
        return {"num_layers": k, "init_layers": list(range(1, k + 1))}

    @classmethod
    def resolve(cls, config: TransformerConfig, t) -> TransformerConfig:
        """Fill the family defaults and check that the student fits the teacher (ValueError if not)."""
        c = copy.deepcopy(config)
        for what in ("init_layers", "layer_map", "patient_layers"):  # one layer arrives as a bare int
            if isinstance(getattr(c, what), int):
                setattr(c, what, [getattr(c, what)])
        for key, value in cls.defaults(c, t).items():
            if getattr(c, key) in (0, None, ""):
                setattr(c, key, value)
        c.hidden_size = c.hidden_size or t.hidden_size
        c.num_heads = c.num_heads or t.num_attention_heads
        c.intermediate_size = c.intermediate_size or (
            t.intermediate_size if c.hidden_size == t.hidden_size else 4 * c.hidden_size)
        n = t.num_hidden_layers
        cls.check_heads(c)
        if c.layer_map is None:
            c.layer_map = [round(m * n / c.num_layers) for m in range(1, c.num_layers + 1)]  # uniform
        for what in ("init_layers", "layer_map", "patient_layers"):
            layers = getattr(c, what)
            if not layers:
                continue
            expect = c.num_layers - 1 if what == "patient_layers" else c.num_layers
            if len(layers) != expect:
                raise ValueError(f"{what} {layers} names {len(layers)} teacher layers for {expect} student layers")
            bad = [x for x in layers if not 1 <= x <= n]
            if bad:
                raise ValueError(f"{what} {layers} names teacher layer {bad[0]}, but the teacher has layers 1..{n}")
        if c.init_layers and c.hidden_size != t.hidden_size:
            raise ValueError(f"init_layers needs the teacher's width: hidden_size {c.hidden_size} vs the teacher's "
                             f"{t.hidden_size}; set hidden_size to {t.hidden_size} or init_layers to []")
        c.hf = cls.hf_config(c, t)
        return c

    @classmethod
    def check_heads(cls, c: TransformerConfig) -> None:
        if c.hidden_size % c.num_heads:
            raise ValueError(f"hidden_size {c.hidden_size} is not a multiple of num_heads {c.num_heads}")

    @classmethod
    def hf_config(cls, c: TransformerConfig, t) -> dict:
        d = t.to_dict()
        for key in ("architectures", "_name_or_path", "transformers_version", "dtype", "torch_dtype"):
            d.pop(key, None)
        d.update(num_hidden_layers=c.num_layers, hidden_size=c.hidden_size, num_attention_heads=c.num_heads,
                 intermediate_size=c.intermediate_size, num_labels=c.num_labels,
                 id2label={i: t.id2label.get(i, f"LABEL_{i}") for i in range(c.num_labels)},
                 label2id={t.id2label.get(i, f"LABEL_{i}"): i for i in range(c.num_labels)})
        return d

    @classmethod
    def from_teacher(cls, config: TransformerConfig, teacher_dir: str | Path | None) -> "TransformerStudent":
        from transformers import AutoConfig

        if teacher_dir is None:
            raise ValueError(f"{cls.family} students are built from a teacher; give its folder")
        tcfg = AutoConfig.from_pretrained(teacher_dir)
        if not hasattr(tcfg, "num_hidden_layers") or not hasattr(tcfg, "hidden_size"):
            raise ValueError(f"the teacher ({tcfg.model_type}) is not a BERT-like encoder")
        c = cls.resolve(config, tcfg)
        model = cls(c)
        if c.init_layers or c.init_embeddings:
            teacher = load_weights(auto_class(c.head), teacher_dir)
            model.init_from(teacher, c)
        if c.init_from:
            model.init_from_general(Path(c.init_from))
        emb = model.hf.get_input_embeddings()
        emb.weight.requires_grad_(not c.freeze_embeddings)
        return model

    def init_from(self, teacher: nn.Module, c: TransformerConfig) -> None:
        """Copy embeddings, the chosen layers, pooler and classifier (same width), or PCA embeddings."""
        src = teacher.state_dict()
        dst = self.hf.state_dict()
        new = {}
        if c.init_layers:
            for key in dst:
                if ".layer." in key:
                    pre, rest = key.split(".layer.", 1)
                    i, tail = rest.split(".", 1)
                    tkey = f"{pre}.layer.{c.init_layers[int(i)] - 1}.{tail}"
                else:
                    tkey = key
                if tkey in src and src[tkey].shape == dst[key].shape:
                    new[key] = src[tkey]
            missing = [k for k in dst if k not in new]
            if missing:
                raise ValueError(f"could not initialise {missing[0]} from the teacher (no tensor of that shape)")
        elif c.init_embeddings == "pca":
            new = self._pca_init(src, dst)
        elif c.init_embeddings:
            raise ValueError(f"init_embeddings must be 'pca' or '', got {c.init_embeddings!r}")
        self.hf.load_state_dict({**dst, **new})

    def init_from_general(self, folder: Path) -> None:
        """Every weight of the encoder (embeddings and layers) from a general student of the same shape
        (task-agnostic distillation); the pooler and classifier stay as the teacher or the seed gave them."""
        from distillery.errors import DistilleryError
        from distillery.students.base import INFO

        info = read_json(folder / INFO) if (folder / INFO).is_file() else None
        if not info or info.get("config", {}).get("head") != "mlm":
            raise DistilleryError(f"model_args.init_from {folder}: not a general student (its student.json is missing "
                                  "or not a task-agnostic student's); run the general study's distill stage first")
        if info.get("family") != self.family:
            raise DistilleryError(f"model_args.init_from {folder}: a {info.get('family')} general student, and this "
                                  f"student is {self.family}; start it from a general {self.family}")
        general = load_weights(auto_class("mlm"), folder, "general student").base_model.state_dict()
        own = self.hf.base_model.state_dict()
        odd = [k for k in own if not k.startswith("pooler.") and (k not in general or general[k].shape != own[k].shape)]
        if odd:
            raise DistilleryError(f"model_args.init_from {folder}: its {odd[0]} does not fit this student "
                                  f"({tuple(general[odd[0]].shape) if odd[0] in general else 'missing'} vs "
                                  f"{tuple(own[odd[0]].shape)}); give the student the general student's model_args")
        self.hf.base_model.load_state_dict({**own, **{k: general[k] for k in own if not k.startswith("pooler.")}})

    @staticmethod
    def _pca_init(src: dict, dst: dict) -> dict:
        def find(sd, suffix):
            return next((k for k in sd if k.endswith(suffix)), None)

        tw = src[find(src, "embeddings.word_embeddings.weight")].float()
        sw_key = find(dst, "embeddings.word_embeddings.weight")
        width = dst[sw_key].shape[1]
        mean = tw.mean(0, keepdim=True)
        _, _, v = torch.linalg.svd(tw - mean, full_matrices=False)
        basis = v[:width].T  # (d_teacher, width): the top principal directions
        new = {sw_key: _pca_embeddings(tw, basis, mean)}
        for name in ("position_embeddings", "token_type_embeddings"):
            tk, sk = find(src, f"embeddings.{name}.weight"), find(dst, f"embeddings.{name}.weight")
            if not (tk and sk and src[tk].shape[0] <= dst[sk].shape[0]):
                continue
            init = dst[sk].clone()
            if dst[sk].shape[1] == width:
                init[: src[tk].shape[0]] = src[tk].float() @ basis
            elif dst[sk].shape[1] == src[tk].shape[1]:  # mobilebert: positions at the inter-block width
                init[: src[tk].shape[0]] = src[tk].float()
            new[sk] = init
        return new


STUDENTS.register("bert")(TransformerStudent)


@STUDENTS.register("distilbert")
class DistilBertStudent(TransformerStudent):
    """Sanh et al. 2019: half the teacher's layers at its width, initialised from every other layer
    (by default ending with the top one), trained with soft CE + hard CE + `cosine_hidden`."""

    card = ("a DistilBERT-style BERT at the teacher's width, initialised from every other teacher layer",
            "Sanh et al. 2019", "DistilBERT, a distilled version of BERT: smaller, faster, cheaper and lighter", "1910.01108")

    @classmethod
    def defaults(cls, c, t):
        k = c.num_layers or max(1, t.num_hidden_layers // 2)
        return {"num_layers": k, "init_layers": _every_other(t.num_hidden_layers, k)}


@STUDENTS.register("pkd_skip")
class PKDSkipStudent(TransformerStudent):
    """Sun et al. 2019, PKD-Skip: first k teacher layers; student layer j learns from teacher layer 2j."""

    card = ("a Patient-KD BERT (PKD-Skip: learns from every other teacher layer)",
            "Sun et al. 2019", "Patient Knowledge Distillation for BERT Model Compression", "1908.09355")

    @classmethod
    def defaults(cls, c, t):
        k = c.num_layers or max(1, t.num_hidden_layers // 2)
        return {"num_layers": k, "init_layers": list(range(1, k + 1)),
                "patient_layers": [2 * j for j in range(1, k)]}


@STUDENTS.register("pkd_last")
class PKDLastStudent(TransformerStudent):
    """Sun et al. 2019, PKD-Last: first k teacher layers; student layers 1..k-1 learn from the
    teacher's k-1 layers just below its top."""

    card = ("a Patient-KD BERT (PKD-Last: learns from the teacher's last layers)",
            "Sun et al. 2019", "Patient Knowledge Distillation for BERT Model Compression", "1908.09355")

    @classmethod
    def defaults(cls, c, t):
        k = c.num_layers or max(1, t.num_hidden_layers // 2)
        n = t.num_hidden_layers
        return {"num_layers": k, "init_layers": list(range(1, k + 1)),
                "patient_layers": list(range(n - k + 1, n))}


@STUDENTS.register("tinybert")
class TinyBertStudent(TransformerStudent):
    """Jiao et al. 2020: narrower and shallower (default 4 x 192, the teacher's head count), layer m
    learning from teacher layer round(m N / M); learned maps W_e, W_h to the teacher's width."""

    card = ("a narrow, shallow TinyBERT",
            "Jiao et al. 2020", "TinyBERT: Distilling BERT for Natural Language Understanding", "1909.10351")

    @classmethod
    def defaults(cls, c, t):
        return {"num_layers": 4, "hidden_size": 192, "init_layers": [], "init_embeddings": "pca"}


@STUDENTS.register("mobilebert")
class MobileBertStudent(TransformerStudent):
    """Sun et al. 2020: the teacher's depth, each block a bottleneck (inter-block width = the teacher's
    width, so feature maps compare directly; attention and stacked FFNs at the narrow intra-block
    width, with linear maps in and out), trigram embeddings, NoNorm, ReLU."""

    card = ("a MobileBERT-style student: the teacher's depth in narrow bottleneck blocks",
            "Sun et al. 2020", "MobileBERT: a Compact Task-Agnostic BERT for Resource-Limited Devices", "2004.02984")

    @classmethod
    def defaults(cls, c, t):
        return {"num_layers": t.num_hidden_layers, "num_heads": 4, "init_layers": [], "init_embeddings": "pca",
                "intermediate_size": 4 * c.intra_size}

    @classmethod
    def resolve(cls, config, t):
        c = super().resolve(config, t)
        if c.hidden_size != t.hidden_size:
            raise ValueError(f"mobilebert transfers feature maps: its hidden_size (inter-block width) must be the "
                             f"teacher's {t.hidden_size}, got {c.hidden_size}")
        if t.num_attention_heads % c.num_heads:
            raise ValueError(f"attention transfer pairs the teacher's {t.num_attention_heads} heads with "
                             f"num_heads {c.num_heads}: it must divide them")
        return c

    @classmethod
    def check_heads(cls, c: TransformerConfig) -> None:  # the heads split the narrow intra-block width
        if c.intra_size % c.num_heads:
            raise ValueError(f"intra_size {c.intra_size} is not a multiple of num_heads {c.num_heads}")

    @classmethod
    def hf_config(cls, c, t):
        if c.normalization not in ("no_norm", "layer_norm"):
            raise ValueError(f"normalization must be 'no_norm' or 'layer_norm', got {c.normalization!r}")
        return {
            "model_type": "mobilebert", "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
            "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads,
            "intermediate_size": c.intermediate_size, "hidden_act": "relu", "embedding_size": c.embedding_size,
            "trigram_input": True, "use_bottleneck": True, "intra_bottleneck_size": c.intra_size,
            "use_bottleneck_attention": False, "key_query_shared_bottleneck": True,
            "num_feedforward_networks": c.num_ffn, "normalization_type": c.normalization,
            "true_hidden_size": c.intra_size, "max_position_embeddings": t.max_position_embeddings,
            "type_vocab_size": getattr(t, "type_vocab_size", 2), "pad_token_id": c.pad_id,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.1, "num_labels": c.num_labels,
            "id2label": {i: t.id2label.get(i, f"LABEL_{i}") for i in range(c.num_labels)},
            "label2id": {t.id2label.get(i, f"LABEL_{i}"): i for i in range(c.num_labels)},
            "problem_type": getattr(t, "problem_type", None),  # regression: one output, MSE in transformers
        }
