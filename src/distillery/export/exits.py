"""Export of a model with early exits (FastBERT): one ONNX graph for the embeddings and one per layer
with its exit, driven by the small numpy loop of `students/exits.py`, which ships beside them as
`fastbert_runtime.py`. Each layer runs only on the rows still in play, so the speed-up survives export.

Files: `embeddings.onnx` (input_ids [, token_type_ids] -> hidden), `layer{i}.onnx` (hidden,
attention_mask -> hidden_out, logits), and with `quantize` the same as `.int8.onnx`.
"""

import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distillery.export.runtime import quantize_int8
from distillery.students import exits
from distillery.students.base import dynamo_onnx

RUNTIME_FILE = "fastbert_runtime.py"


class _Embeddings(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.embed({"input_ids": input_ids, "token_type_ids": token_type_ids,
                                 "attention_mask": None})[0]  # (bs, n, d)


class _LayerExit(nn.Module):
    def __init__(self, model, i: int) -> None:
        super().__init__()
        self.model, self.i = model, i

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        return self.model.layer(self.i, hidden, attention_mask)  # (bs, n, d), (bs, C)


def graph_names(n_layers: int) -> list[str]:
    return ["embeddings"] + [f"layer{i}" for i in range(1, n_layers + 1)]


def export_exits(model, example: dict, folder: Path, opset: int, quantize: bool) -> list[Path]:
    """Write the graphs (and int8 twins) and the runtime loop into `folder`; returns the files."""
    model.eval()
    model.hf.set_attn_implementation("eager")  # plain ops: the fused kernel's mask shortcuts are data-dependent
    max_seq = model.hf.config.max_position_embeddings
    with torch.no_grad():
        emb_inputs = {k: example[k] for k in ("input_ids", "token_type_ids") if k in example}
        dynamo_onnx(_Embeddings(model), emb_inputs, ["hidden"], folder / "embeddings.onnx", opset, max_seq)
        h, mask = model.embed(example)
        for i in range(1, model.n_layers + 1):
            dynamo_onnx(_LayerExit(model, i), {"hidden": h, "attention_mask": mask}, ["hidden_out", "logits"],
                        folder / f"layer{i}.onnx", opset, max_seq)
            h = model.layer(i, h, mask)[0]
    written = [folder / f"{name}.onnx" for name in graph_names(model.n_layers)]
    if quantize:
        for path in list(written):
            quantize_int8(path, path.with_suffix(".int8.onnx"))
            written.append(path.with_suffix(".int8.onnx"))
    shutil.copyfile(exits.__file__, folder / RUNTIME_FILE)
    return written


def onnx_predictor(folder: Path, speed: float, int8: bool = False, threads: int = 0):
    """batch (tensors or arrays) -> logits of the exported model with early exits at `speed`."""
    runner = exits.OnnxRunner(folder, int8=int8, threads=threads)

    def run(batch: dict) -> np.ndarray:
        arrays = {k: np.asarray(v) for k, v in batch.items()}
        n = len(arrays["input_ids"])
        return exits.adaptive_predict(runner, [(np.arange(n), arrays)], n, speed)[0]
    return run
