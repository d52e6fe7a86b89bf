"""How teacher outputs sit in files: named arrays in .npz archives, checked by SHA-256."""

import hashlib
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from distillery.errors import DistilleryError
from distillery.io import read_json

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


def read_manifest(mpath: Path, version, stage: str) -> dict:
    """A shard manifest, checked before any shard is opened: a mapping, the `format` this version writes (the
    same type too: "2" is not 2), and a non-empty list of shards each naming a plain file and its checksum."""
    redo = f"re-run `distillery {stage}`"
    if not mpath.is_file():
        raise DistilleryError(f"{mpath}: missing; run `distillery {stage}` (or dvc repro) first")
    m = read_json(mpath)
    if not isinstance(m, dict):
        raise DistilleryError(f"{mpath}: not a manifest (a JSON object with format and shards); {redo}")
    if type(m.get("format")) is not type(version) or m.get("format") != version:
        raise DistilleryError(f"{mpath}: format {m.get('format')!r}, but this version reads {version!r}; {redo}")
    shards = m.get("shards")
    if not isinstance(shards, list) or not shards:
        raise DistilleryError(f"{mpath}: {'no shards listed' if not shards else 'shards must be a list'}; {redo}")
    for i, sh in enumerate(shards):
        ok = isinstance(sh, dict) and isinstance(sh.get("file"), str) and isinstance(sh.get("sha256"), str)
        if not ok or Path(sh["file"]).name != sh["file"] or sh["file"] in ("", ".", ".."):
            raise DistilleryError(f"{mpath}: shards[{i}] must name a file in this folder and its sha256; {redo}")
    return m
