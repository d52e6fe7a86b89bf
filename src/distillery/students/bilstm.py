"""Tang et al. 2019's BiLSTM student: embeddings -> BiLSTM -> final states -> ReLU MLP -> logits.

Single sentences use the concatenated final forward/backward states; sentence pairs use a siamese
encoder and the features [h1, h2, h1*h2, |h1-h2|], as in the paper. Words are the teacher's
WordPiece tokens, and the embedding table starts from the teacher's input embeddings (the paper's
word2vec is not available offline; this is the same role: pretrained, fine-tuned).

Padding never leaks into a real token's state: the backward direction runs a forward LSTM over
each sequence reversed *within its length*, so pads always come after the real tokens. That keeps
batch-1 and padded-batch predictions identical and the model exportable to ONNX as plain ops.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distillery.outputs import MAIN, ModelOutput
from distillery.students.base import STUDENTS, Student


@dataclass
class BiLSTMConfig:
    vocab_size: int = 30522
    embed_dim: int = 384
    hidden_size: int = 150
    mlp_size: int = 200
    dropout: float = 0.1
    num_labels: int = 2
    pair: bool = False
    pad_id: int = 0
    init_from_teacher: bool = True
    freeze_embeddings: bool = False  # Tang et al.'s static channel; frozen tables train much faster on CPU


def _reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x (bs, seq, dim): each row's first `length` steps reversed, pads left in place."""
    seq = x.shape[1]
    t = torch.arange(seq, device=x.device).unsqueeze(0)  # (1, seq)
    ln = lengths.unsqueeze(1)  # (bs, 1)
    idx = torch.where(t < ln, ln - 1 - t, t)  # (bs, seq)
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))


class BiLSTMEncoder(nn.Module):
    def __init__(self, cfg: BiLSTMConfig) -> None:
        super().__init__()
        self.fwd = nn.LSTM(cfg.embed_dim, cfg.hidden_size, batch_first=True)
        self.bwd = nn.LSTM(cfg.embed_dim, cfg.hidden_size, batch_first=True)

    def forward(self, emb: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, self.fwd.hidden_size)
        h_f, _ = self.fwd(emb)  # (bs, seq, hidden)
        h_b, _ = self.bwd(_reverse_within_length(emb, lengths))  # (bs, seq, hidden)
        return torch.cat([h_f.gather(1, last).squeeze(1), h_b.gather(1, last).squeeze(1)], dim=-1)  # (bs, 2*hidden)


@STUDENTS.register("bilstm")
class BiLSTMStudent(Student):
    card = ("a one-layer BiLSTM with a ReLU MLP head",
            "Tang et al. 2019", "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks", "1903.12136")
    params_group = "bilstm"
    Config = BiLSTMConfig
    provides = frozenset()  # logits only: output-layer losses

    def __init__(self, config: BiLSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_id)
        self.encoder = BiLSTMEncoder(config)
        feat = 2 * config.hidden_size * (4 if config.pair else 1)
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(feat, config.mlp_size),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.mlp_size, config.num_labels),
        )

    @property
    def input_names(self) -> list[str]:
        return ["input_ids", "lengths"] + (["input_ids_b", "lengths_b"] if self.config.pair else [])

    @classmethod
    def from_teacher(cls, config: BiLSTMConfig, teacher_dir: str | Path | None) -> "BiLSTMStudent":
        model = cls(config)
        if config.init_from_teacher and teacher_dir is not None:
            from transformers import AutoModelForSequenceClassification

            from distillery.teacher.models import load_weights

            teacher = load_weights(AutoModelForSequenceClassification, teacher_dir)
            emb = teacher.get_input_embeddings().weight.detach()
            if emb.shape != model.embed.weight.shape:
                raise ValueError(
                    f"bilstm embed_dim={config.embed_dim}, vocab_size={config.vocab_size} do not fit the teacher's "
                    f"embeddings {tuple(emb.shape)}; set model_args.embed_dim to {emb.shape[1]} or init_from_teacher false"
                )
            with torch.no_grad():
                model.embed.weight.copy_(emb)
        model.embed.weight.requires_grad_(not config.freeze_embeddings)
        return model

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor, input_ids_b: torch.Tensor | None = None,
                lengths_b: torch.Tensor | None = None, hidden: bool = False, scores: bool = False):
        h = self.encoder(self.embed(input_ids), lengths)  # (bs, 2*hidden)
        if self.config.pair:
            h2 = self.encoder(self.embed(input_ids_b), lengths_b)
            h = torch.cat([h, h2, h * h2, (h - h2).abs()], dim=-1)  # (bs, 8*hidden)
        return self.answer(ModelOutput(logits={MAIN: self.head(h)}))  # (bs, num_labels)

    def export_onnx(self, path: Path, example: dict, opset: int) -> None:
        """One bidirectional LSTM node per side (`bilstm_onnx_graph`), not the traced graph."""
        import onnx

        onnx.save(bilstm_onnx_graph(self, opset), str(path))

    @staticmethod
    def _pad(tokenizer, texts: list[str], max_seq_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        enc = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_seq_len)["input_ids"]
        enc = [ids if ids else [tokenizer.unk_token_id] for ids in enc]
        lengths = torch.tensor([len(ids) for ids in enc])
        out = torch.full((len(enc), int(lengths.max())), pad_id, dtype=torch.long)
        for i, ids in enumerate(enc):
            out[i, : len(ids)] = torch.tensor(ids)
        return out, lengths

    def collate(self, tokenizer, texts_a: list[str], texts_b: list[str] | None, max_seq_len: int) -> dict:
        ids, lengths = self._pad(tokenizer, texts_a, max_seq_len, self.config.pad_id)
        batch = {"input_ids": ids, "lengths": lengths}
        if self.config.pair:
            ids_b, lengths_b = self._pad(tokenizer, texts_b, max_seq_len, self.config.pad_id)
            batch.update(input_ids_b=ids_b, lengths_b=lengths_b)
        return batch


def _onnx_gates(w: torch.Tensor) -> np.ndarray:
    """PyTorch's LSTM gate blocks (i, f, g, o) in ONNX's order (i, o, f, c)."""
    i, f, g, o = w.detach().float().chunk(4, dim=0)
    return torch.cat([i, o, f, g], dim=0).numpy()


def bilstm_onnx_graph(model: "BiLSTMStudent", opset: int):
    """The BiLSTM as one ONNX `LSTM` node per side, direction "bidirectional", with `sequence_lens`: the
    reverse direction then starts at each row's own last token, which is what `_reverse_within_length`
    does in PyTorch, and `Y_h` holds both final states. Built by hand (onnx.helper) rather than traced:
    the traced graph has two LSTM nodes that run one after the other plus the gathers that reverse the
    rows; this one lets onnxruntime run the two directions together."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cfg, enc = model.config, model.encoder
    hsz = cfg.hidden_size
    w = np.stack([_onnx_gates(enc.fwd.weight_ih_l0), _onnx_gates(enc.bwd.weight_ih_l0)])  # (2, 4H, E)
    r = np.stack([_onnx_gates(enc.fwd.weight_hh_l0), _onnx_gates(enc.bwd.weight_hh_l0)])  # (2, 4H, H)
    b = np.stack([np.concatenate([_onnx_gates(m.bias_ih_l0), _onnx_gates(m.bias_hh_l0)]) for m in (enc.fwd, enc.bwd)])  # (2, 8H)
    lin1, lin2 = model.head[1], model.head[4]
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in [
        (model.embed.weight.detach().float().numpy(), "embed"), (w, "W"), (r, "R"), (b, "B"),
        (lin1.weight.detach().float().numpy().T.copy(), "mlp_w"), (lin1.bias.detach().float().numpy(), "mlp_b"),
        (lin2.weight.detach().float().numpy().T.copy(), "out_w"), (lin2.bias.detach().float().numpy(), "out_b")]]
    inits.append(numpy_helper.from_array(np.array([0, 2 * hsz], dtype=np.int64), "flat_shape"))
    nodes, inputs = [], []

    def side(ids: str, lengths: str, tag: str) -> str:
        inputs.extend([helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "seq" + tag]),
                       helper.make_tensor_value_info(lengths, TensorProto.INT64, ["batch"])])
        nodes.extend([
            helper.make_node("Transpose", [ids], [f"ids_t{tag}"], perm=[1, 0]),  # (seq, batch)
            helper.make_node("Gather", ["embed", f"ids_t{tag}"], [f"emb{tag}"]),  # (seq, batch, E)
            helper.make_node("Cast", [lengths], [f"lens32{tag}"], to=TensorProto.INT32),
            helper.make_node("LSTM", [f"emb{tag}", "W", "R", "B", f"lens32{tag}"], ["", f"y_h{tag}"],
                             direction="bidirectional", hidden_size=hsz),  # y_h (2, batch, H)
            helper.make_node("Transpose", [f"y_h{tag}"], [f"y_h_t{tag}"], perm=[1, 0, 2]),
            helper.make_node("Reshape", [f"y_h_t{tag}", "flat_shape"], [f"h{tag}"]),  # (batch, 2H): [fwd, bwd]
        ])
        return f"h{tag}"

    h = side("input_ids", "lengths", "")
    if cfg.pair:
        h2 = side("input_ids_b", "lengths_b", "_b")
        nodes.extend([helper.make_node("Mul", [h, h2], ["prod"]), helper.make_node("Sub", [h, h2], ["diff"]),
                      helper.make_node("Abs", ["diff"], ["absdiff"]),
                      helper.make_node("Concat", [h, h2, "prod", "absdiff"], ["feat"], axis=-1)])
        h = "feat"
    nodes.extend([helper.make_node("MatMul", [h, "mlp_w"], ["mlp_mm"]), helper.make_node("Add", ["mlp_mm", "mlp_b"], ["mlp"]),
                  helper.make_node("Relu", ["mlp"], ["mlp_act"]),
                  helper.make_node("MatMul", ["mlp_act", "out_w"], ["out_mm"]),
                  helper.make_node("Add", ["out_mm", "out_b"], ["logits"])])
    graph = helper.make_graph(nodes, "bilstm", inputs,
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", cfg.num_labels])],
                              inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="distillery")
    onnx.checker.check_model(onnx_model)
    return onnx_model

