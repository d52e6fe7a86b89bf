"""How teacher outputs sit in files: named arrays in .npz archives, checked by SHA-256."""

import hashlib
import io
import zipfile
from collections.abc import Sequence

import numpy as np

from distillery.errors import DistilleryError

PART_HASH = 24  # hex digits of a part's SHA-256 in its name

# Teacher features beyond logits, for losses on hidden states: "cls@L" is the [CLS] vector of
# hidden_states[L] (0 = embeddings, num_layers = last layer), the input of PKD's patient loss.
FEATURE_KINDS = ("cls",)


def parse_features(names: Sequence[str], num_layers: int | None = None) -> list[tuple[str, int]]:
    out = []
    for name in names:
        kind, _, layer = name.partition("@")
        if kind not in FEATURE_KINDS or not layer.isdigit() or (num_layers is not None and int(layer) > num_layers):
            top = num_layers if num_layers is not None else "L"
            raise DistilleryError(f"param soft_labels.features: {name!r} is not one of cls@0 .. cls@{top}")
        out.append((kind, int(layer)))
    return out


def column(name: str) -> str:
    """The array name of a feature inside shards and parts ("cls@3" -> "cls_3")."""
    return "logits" if name == "logits" else name.replace("@", "_")


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """An uncompressed .npz (what np.savez writes) with a fixed member date, so that the same arrays give
    the same bytes on every run: a re-written artifact whose content did not change keeps its hash, and
    DVC does not re-run the stages that read it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(a), allow_pickle=False)
    return buf.getvalue()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_npz(data: bytes, columns: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz held in memory, or None if it is not a readable archive with `columns`."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {c: z[c] for c in ("keys", *columns)}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile):
        return None


