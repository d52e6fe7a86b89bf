"""Label a file with one model in one runtime: streamed in chunks, each chunk in length-sorted batches (the batcher and
predictor `evaluate` scores with), written to a scratch file that becomes the output only when every row is done.

The output may replace a file only where that file is an earlier `predict` output, unchanged: each output has a
record beside it (`.<name>.predict.json`: the model, the runtime, the rows and the file's SHA-256), and a file
without one, or whose bytes no longer match it, is refused before any work."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from distillery.errors import DistilleryError
from distillery.evaluate.predict import predict
from distillery.inference.files import OUT_COLUMNS, Writer, chunks, out_format, source
from distillery.inference.model import Labeller, open_model
from distillery.io import atomic_file, check_file_target, file_sha256, read_json, write_json


def record_path(out: Path) -> Path:
    return out.parent / f".{out.name}.predict.json"


def claim_prediction(out: Path, inputs: Path) -> Path:
    """`--out` may be a new file, or an earlier predict output whose bytes still match its record."""
    out = check_file_target(out, "--out")
    if out.exists() and inputs.exists() and out.resolve() == inputs.resolve():
        raise DistilleryError(f"--out {out}: is the input file; write the predictions to another file")
    if not out.exists() and not out.is_symlink():
        return out
    rec = record_path(out)
    if not out.is_file():
        raise DistilleryError(f"--out {out}: exists and is not a regular file; choose another path")
    try:
        ok = rec.is_file() and read_json(rec).get("sha256") == file_sha256(out)
    except (DistilleryError, AttributeError, OSError):
        ok = False
    if not ok:
        raise DistilleryError(f"--out {out}: exists and is not an unchanged `distillery predict` output (no matching "
                              f"{rec.name} beside it); delete it or choose another --out (nothing was written)")
    return out


def _check_pair(model: Labeller, src) -> None:
    if model.pair and src.pair is None:
        raise DistilleryError(f"--model: {model.name} reads text pairs; name the second text's column with "
                              "--text-pair-column")
    if model.pair is False and src.pair is not None:
        raise DistilleryError(f"--text-pair-column {src.pair}: {model.name} reads one text a row; leave the option out")


def outputs(model: Labeller, logits: np.ndarray) -> dict[str, list]:
    """The prediction columns: the label's name and its probability, or (regression) the score."""
    if model.label_names is None:
        return {OUT_COLUMNS[0]: [round(float(v), 6) for v in logits[:, 0]]}
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    best = probs.argmax(axis=1)
    return {OUT_COLUMNS[0]: [model.label_names[i] for i in best],
            OUT_COLUMNS[1]: [round(float(p), 6) for p in probs[np.arange(len(best)), best]]}


def predict_file(model_dir: str | Path, runtime: str, inputs: str | Path, out: str | Path, text: str = "text",
                 pair: str | None = None, fmt: str | None = None, delimiter: str | None = None,
                 out_fmt: str | None = None, batch_size: int = 64, chunk_rows: int = 8192, threads: int = 0) -> dict:
    """Label every row of `inputs` with the model in `model_dir`; the rows and their predictions go to `out`.
    Returns what was done (rows, seconds, rows per second, the label counts)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    src = source(Path(inputs), fmt, delimiter, text, pair)
    out = claim_prediction(Path(out), src.path)
    ofmt = out_format(out, out_fmt, src.fmt)
    model = open_model(model_dir, runtime, threads)
    _check_pair(model, src)
    n_out = 1 if model.label_names is None else len(model.label_names)
    counts: dict[str, int] = {}
    rows, t0 = 0, time.perf_counter()
    same_sep = src.delimiter if ofmt == src.fmt else None
    with atomic_file(out, "wb" if ofmt == "parquet" else "w") as fh, \
            tqdm(desc=f"predict {model.name} ({runtime})", unit=" rows", unit_scale=True, mininterval=1) as bar:
        writer = Writer(fh, ofmt, same_sep)
        for chunk in chunks(src, chunk_rows):
            frame = pd.DataFrame({"text_a": chunk.text_a, "text_b": chunk.text_b or [""] * len(chunk.text_a)})
            logits = predict(model.collate, model.run, frame, n_out, chunk.text_b is not None, batch_size)
            cols = outputs(model, logits)
            writer.write(chunk, cols, src.path)
            if model.label_names is not None:
                for name in cols[OUT_COLUMNS[0]]:
                    counts[name] = counts.get(name, 0) + 1
            rows += len(frame)
            bar.update(len(frame))
        writer.close()
    seconds = time.perf_counter() - t0
    summary = {"written_by": "distillery predict", "model": str(model_dir), "student": model.name, "runtime": runtime,
               "input": str(src.path), "rows": rows, "seconds": round(seconds, 2),
               "rows_per_s": round(rows / seconds, 1) if seconds else None, "labels": counts}
    write_json(record_path(out), {**summary, "sha256": file_sha256(out)})
    return summary
