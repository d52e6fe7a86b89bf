"""Which teacher made a set of logits, and which text a row belongs to."""

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from distillery.errors import DistilleryError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def teacher_fingerprint(teacher_dir: str | Path, max_seq_len: int) -> str:
    """SHA-256 over the teacher's weights, its tokenizer files and max_seq_len (first 20 hex)."""
    d = Path(teacher_dir)
    weights = sorted(d.glob("*.safetensors")) + sorted(d.glob("pytorch_model*.bin"))
    if not weights:
        raise DistilleryError(f"{d}: no model weights (*.safetensors); run the teacher stage first")
    h = hashlib.sha256()
    for p in weights + [d / n for n in TOKENIZER_FILES if (d / n).is_file()] + [d / "config.json"]:
        h.update(p.name.encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    h.update(f"max_seq_len={max_seq_len}".encode())
    return h.hexdigest()[:20]



def ids_to_u64(ids: Sequence[str]) -> np.ndarray:
    """Example ids (hex text hashes) as the uint64 keys that shards and parts are sorted by."""
    return np.array([int(i, 16) for i in ids], dtype=np.uint64)


