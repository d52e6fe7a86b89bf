"""The soft-labels stage output (`data/logits/`): a few large fp16 shards holding exactly the requested
ids, with a manifest naming the teacher fingerprint. It is a pure function of its inputs, so DVC's
caches stay correct; students open it read-only with `Logits`.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from distillery.errors import DistilleryError
from distillery.io import atomic_dir, write_json
from distillery.logits.arrays import column, digest, npz_bytes, open_npz, read_manifest
from distillery.logits.fingerprint import ids_to_u64, teacher_fingerprint
from distillery.logits.store import stored

MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: parts named by the SHA-256 of their bytes, shards checksummed in the manifest


def write_logits(out_dir: str | Path, ids: Sequence[str] | np.ndarray, cols: dict[str, np.ndarray], meta: dict,
                 features: Sequence[str] = (), rows_per_shard: int = 1_000_000, kind: str = "soft-labels") -> None:
    """Write the stage output: a few large shards (rows sorted by key; values fp16, token ids int32) and a manifest.

    `ids`: the example ids (text hashes), or the rows' uint64 keys themselves (a C-MLM teacher's target
    positions: pair key + position). The manifest lists the arrays each shard holds: `logits` (n, width) and one
    entry per requested feature, e.g. {"name": "cls@3", "array": "cls_3", "dim": 384}, {"name": "ids", ...}.
    """
    keys = ids if isinstance(ids, np.ndarray) and ids.dtype == np.uint64 else ids_to_u64(ids)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    cols = {c: stored(v[order]) for c, v in cols.items()}
    with atomic_dir(out_dir, kind) as tmp:
        shards = []
        for k, s in enumerate(range(0, max(len(keys), 1), rows_per_shard)):
            name = f"shard-{k:05d}.npz"
            data = npz_bytes(keys=keys[s:s + rows_per_shard], **{c: v[s:s + rows_per_shard] for c, v in cols.items()})
            (tmp / name).write_bytes(data)
            shards.append({"file": name, "rows": int(len(keys[s:s + rows_per_shard])), "sha256": digest(data)})
        write_json(tmp / MANIFEST, {
            "format": FORMAT_VERSION, "dtype": "float16", **meta, "n_rows": int(len(keys)),
            "features": [{"name": f, "array": column(f), "dim": int(cols[column(f)].shape[1])} for f in features],
            "shards": shards,
        })


def check_shard(z: dict[str, np.ndarray], path: Path, rows) -> None:
    """A shard whose checksum matches can still hold what no teacher writes (made by hand, or by a bug): one key per
    row, every array with a row per key (logits and features 2-D, or per token 3-D), and only finite values."""
    redo = "re-run `distillery soft-labels` (dvc repro -f soft-labels)"
    keys = z["keys"]
    if keys.ndim != 1 or keys.dtype != np.uint64 or (rows is not None and len(keys) != rows):
        raise DistilleryError(f"{path}: keys must be {rows} uint64 ids in one column, found shape {keys.shape} "
                              f"{keys.dtype}; {redo}")
    for name, a in z.items():
        if name == "keys":
            continue
        if a.ndim < 2 or len(a) != len(keys):
            raise DistilleryError(f"{path}: array {name!r} has shape {a.shape}, but the shard holds {len(keys)} keys "
                                  f"and a row of values per key; {redo}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise DistilleryError(f"{path}: array {name!r} holds NaN or infinite values (the teacher's outputs were not "
                                  f"finite, or the file was altered); {redo}")


class Logits:
    """The soft-labels artifact, opened read-only by students."""

    def __init__(self, logits_dir: str | Path) -> None:
        d = Path(logits_dir)
        mpath = d / MANIFEST
        self.manifest = read_manifest(mpath, FORMAT_VERSION, "soft-labels")
        feats = self.manifest.get("features", [])
        if not isinstance(feats, list) or not all(isinstance(f, dict) and isinstance(f.get("array"), str) for f in feats):
            raise DistilleryError(f"{mpath}: features must be a list of {{name, array, dim}}; re-run `distillery soft-labels`")
        names = ["logits"] + [f["array"] for f in self.manifest.get("features", [])]
        keys, cols = [], {c: [] for c in names}
        for sh in self.manifest["shards"]:
            path = d / sh["file"]
            data = path.read_bytes() if path.is_file() else b""
            z = open_npz(data, names) if digest(data) == sh.get("sha256") else None
            if z is None:
                raise DistilleryError(f"{path}: missing or damaged (does not match the checksum in {mpath}); "
                                      "re-run `distillery soft-labels` (dvc repro -f soft-labels)")
            check_shard(z, path, sh.get("rows"))
            keys.append(z["keys"])
            for c in names:
                cols[c].append(z[c])
        self.keys = np.concatenate(keys)
        self.arrays = {c: np.concatenate(v) for c, v in cols.items()}
        self.logits = self.arrays["logits"]
        self.path = d

    def check_teacher(self, teacher_dir: str | Path) -> str:
        """Refuse logits made by another teacher (weights, tokenizer, and the setting the fingerprint covers:
        `max_seq_len` for a classifier's logits, the strided `copies` for a C-MLM teacher's); return the fingerprint."""
        mpath = self.path / MANIFEST
        fp = self.manifest.get("fingerprint")
        here = teacher_fingerprint(teacher_dir, int(self.manifest.get("copies", self.manifest.get("max_seq_len", 0))))
        if fp != here:
            raise DistilleryError(
                f"{mpath}: logits were made by teacher fingerprint {fp}, but the teacher in {teacher_dir} is "
                f"{here}; re-run `distillery soft-labels` with this teacher"
            )
        return here

    def get(self, ids: Sequence[str], what: str, feature: str = "logits") -> np.ndarray:
        """Logits (or a stored feature such as "cls@3") as float32 for `ids`, in order.

        Refuses if any id, or the feature, is missing."""
        if column(feature) not in self.arrays:
            raise DistilleryError(
                f"{self.path / MANIFEST}: no feature {feature!r} stored; add it to soft_labels.features and re-run"
            )
        keys = ids_to_u64(ids)
        pos = np.searchsorted(self.keys, keys)
        pos_c = np.minimum(pos, len(self.keys) - 1)
        ok = self.keys[pos_c] == keys
        if not ok.all():
            missing = [i for i, k in zip(ids, ok) if not k]
            raise DistilleryError(
                f"{self.path / MANIFEST}: no logits for {len(missing)} ids of {what} (e.g. {missing[0]}); "
                "these logits were made for other data: re-run `distillery soft-labels`"
            )
        return self.arrays[column(feature)][pos_c].astype(np.float32)

    def rows(self, ids: Sequence[str], n_rows: np.ndarray, what: str) -> np.ndarray:
        """Row of each example's first row where an example has `n_rows` consecutive ones (a pair's target
        positions, keyed pair key + position); refuses examples (or rows) the artifact lacks."""
        want = ids_to_u64(ids)
        first = np.minimum(np.searchsorted(self.keys, want), max(len(self.keys) - 1, 0))
        last = np.minimum(first + n_rows - 1, len(self.keys) - 1)
        ok = (self.keys[first] == want) & (self.keys[last] == want + (n_rows - 1).astype(np.uint64))
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            raise DistilleryError(f"{self.path / MANIFEST}: no soft labels for {int((~ok).sum())} examples of {what} "
                                  f"(e.g. {ids[bad]}); they were made for other data: re-run the soft-labels stage")
        return first
