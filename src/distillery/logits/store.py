"""Teacher logits: computed once per distinct text and teacher, stored as fp16 shards + manifest.

Two places hold them:
- the stage output (`data/logits/`): shards assembled for exactly the requested ids, with a
  manifest naming the teacher fingerprint. It is a pure function of its inputs, so DVC's caches
  stay correct.
- a content-addressed store (`.cache/logits/<fingerprint>/part-*.npz`, git-ignored): every text
  this teacher ever labelled. A re-run labels only texts the store has not seen, and a killed
  run resumes from the parts it already wrote (each part is written atomically).
"""

import hashlib
import io
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from distillery.errors import DistilleryError
from distillery.hardware import bf16_supported
from distillery.io import atomic_file, clean_stale, read_json, write_json
from distillery.logits.fast_bert import cls_only_logits, supports_fast_path

MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: parts named by the SHA-256 of their bytes, shards checksummed in the manifest
PART_HASH = 24  # hex digits of a part's SHA-256 in its name
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


def _ids_to_u64(ids: Sequence[str]) -> np.ndarray:
    return np.array([int(i, 16) for i in ids], dtype=np.uint64)


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


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _open_npz(data: bytes, columns: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz held in memory, or None if it is not a readable archive with `columns`."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {c: z[c] for c in ("keys", *columns)}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile):
        return None


class LogitStore:
    """Content-addressed logits (and requested features) of one teacher under
    `root/<fingerprint>/<precision>/`, in parts named by the SHA-256 of their bytes.

    Every part is checked against its name when the store is opened: a part that is empty, cut short,
    not an archive or altered in any way is reported on stderr, removed, and its texts are labelled
    again. A store with features lives in its own sub-folder named by the feature set. `precision`
    ("fp32" or "bf16", what the run really used) is part of the key: bf16 logits never serve an fp32 run.
    """

    def __init__(self, root: str | Path, fingerprint: str, num_labels: int, features: Sequence[str] = (),
                 precision: str = "fp32") -> None:
        self.dir = Path(root) / fingerprint / precision
        self.discarded: list[str] = []
        if features:
            self.dir = self.dir / ("features-" + hashlib.sha1(",".join(sorted(features)).encode()).hexdigest()[:12])
        self.num_labels = num_labels
        self.columns = ["logits"] + [column(f) for f in features]
        self._keys = np.zeros(0, dtype=np.uint64)
        self._cols: dict[str, np.ndarray] = {}
        self._pending_keys: list[np.ndarray] = []
        self._pending_cols: dict[str, list[np.ndarray]] = {}
        self._load()

    def _merge(self, keys: list[np.ndarray], cols: dict[str, list[np.ndarray]]) -> None:
        """Queue new rows; they are concatenated and sorted once, at the next lookup."""
        self._pending_keys.extend(keys)
        for c, parts in cols.items():
            self._pending_cols.setdefault(c, []).extend(parts)

    def _sorted(self) -> None:
        if not self._pending_keys:
            return
        self._keys = np.concatenate([self._keys, *self._pending_keys])
        for c, parts in self._pending_cols.items():
            self._cols[c] = np.concatenate(([self._cols[c]] if c in self._cols else []) + parts)
        self._pending_keys, self._pending_cols = [], {}
        order = np.argsort(self._keys, kind="stable")
        self._keys = self._keys[order]
        self._cols = {c: v[order] for c, v in self._cols.items()}

    def _load(self) -> None:
        keys: list[np.ndarray] = []
        cols: dict[str, list[np.ndarray]] = {c: [] for c in self.columns}
        clean_stale(self.dir)  # parts a killed writer never renamed into place
        for p in sorted(self.dir.glob("part-*.npz")):
            try:
                data = p.read_bytes()
            except FileNotFoundError:  # another process on this store removed it as damaged
                continue
            z = _open_npz(data, self.columns) if p.stem == f"part-{_digest(data)[:PART_HASH]}" else None
            if z is None:
                print(f"warning: {p}: damaged (its contents do not match its checksum); removed, its texts "
                      "will be labelled again", file=sys.stderr)
                p.unlink(missing_ok=True)
                self.discarded.append(str(p))
                continue
            if z["logits"].shape[1] != self.num_labels:
                raise DistilleryError(f"{p}: {z['logits'].shape[1]} logits per row, expected {self.num_labels}; delete {self.dir}")
            keys.append(z["keys"])
            for c in self.columns:
                cols[c].append(z[c])
        self._merge(keys, {c: v for c, v in cols.items() if v})
        self._sorted()
        if "logits" not in self._cols:
            self._cols["logits"] = np.zeros((0, self.num_labels), dtype=np.float16)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, positions) of `keys` in the store."""
        self._sorted()
        if not len(self._keys):
            return np.zeros(len(keys), bool), np.zeros(len(keys), np.int64)
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return self._keys[pos] == keys, pos

    def get(self, keys: np.ndarray, col: str = "logits") -> np.ndarray:
        return self.get_all(keys)[col]

    def get_all(self, keys: np.ndarray) -> dict[str, np.ndarray]:
        """Every stored column for `keys`, in order (one lookup for all of them)."""
        found, pos = self.lookup(keys)
        if not found.all():
            raise KeyError(f"{int((~found).sum())} keys not in the store")
        return {c: self._cols[c][pos] for c in self.columns}

    def add(self, keys: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        """Persist one part atomically, then merge it into memory."""
        self.dir.mkdir(parents=True, exist_ok=True)
        half = {c: v.astype(np.float16) for c, v in cols.items()}
        data = _npz_bytes(keys=keys, **half)
        with atomic_file(self.dir / f"part-{_digest(data)[:PART_HASH]}.npz", "wb") as fh:
            fh.write(data)
        self._merge([keys], {c: [v] for c, v in half.items()})


def length_batches(lengths: np.ndarray, tie: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Batches of equal token length (no padding at all), longest first, ties broken by `tie`;
    each holds about `batch_tokens` tokens, so short texts go in large batches (efficient GEMMs).

    A batch's content depends only on which texts are requested, never on run history, so a
    resumed run computes exactly what an uninterrupted one would.
    """
    order = np.lexsort((tie, -lengths))
    batches = []
    bounds = np.flatnonzero(np.diff(lengths[order])) + 1
    for group in np.split(order, bounds):
        size = max(1, batch_tokens // int(lengths[group[0]]))
        batches.extend(group[s:s + size] for s in range(0, len(group), size))
    return batches


@torch.inference_mode()
def run_teacher(model, tokenizer, texts_a: Sequence[str], texts_b: Sequence[str] | None, max_seq_len: int,
                batch_tokens: int, bf16: bool, on_batch=None, tie: np.ndarray | None = None,
                batches: list[np.ndarray] | None = None, features: Sequence[str] = ()) -> np.ndarray | dict:
    """Logits for every text, in length-bucketed batches with no padding.

    Tokenises everything in one fast-tokenizer call. `on_batch(indices, columns)` runs after each
    batch (used to checkpoint into the store). Returns float32 logits in input order, or, when
    `features` are asked for, a dict {"logits": ..., "cls_3": ...}.
    """
    n = len(texts_a)
    feats = parse_features(features, model.config.num_hidden_layers)
    out = {"logits": np.zeros((n, model.config.num_labels), dtype=np.float32)}
    for name in features:
        out[column(name)] = np.zeros((n, model.config.hidden_size), dtype=np.float32)
    if n == 0:
        return out if features else out["logits"]
    enc = tokenizer(list(texts_a), list(texts_b) if texts_b is not None else None,
                    truncation=True, max_length=max_seq_len)
    ids = enc["input_ids"]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
    if batches is None:
        batches = length_batches(lengths, np.arange(n) if tie is None else tie, batch_tokens)
    device = next(model.parameters()).device
    use_bf16 = bf16 and bf16_supported(device.type)
    extra = [k for k in ("token_type_ids",) if k in enc]
    fast = not feats and supports_fast_path(model)  # exact; skips the last layer's non-[CLS] work
    bar = tqdm(total=n, desc="soft-labels", unit="text", smoothing=0.05, mininterval=2)
    for idx in batches:
        batch = {"input_ids": torch.tensor([ids[i] for i in idx], device=device)}  # (bs, len): one length per batch
        for k in extra:
            batch[k] = torch.tensor([enc[k][i] for i in idx], device=device)
        # no attention_mask: every row of a batch has the same length, so nothing is masked (and SDPA
        # takes its unmasked path)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            if fast:
                logits = cls_only_logits(model, batch["input_ids"], batch.get("token_type_ids"))
            else:
                res = model(**batch, output_hidden_states=bool(feats))
                logits = res.logits
                for (_, layer), name in zip(feats, features):
                    out[column(name)][idx] = res.hidden_states[layer][:, 0].float().cpu().numpy()  # (bs, hidden)
        out["logits"][idx] = logits.float().cpu().numpy()  # (bs, num_labels)
        if on_batch is not None:
            on_batch(idx, {c: v[idx] for c, v in out.items()})
        bar.update(len(idx))
    bar.close()
    return out if features else out["logits"]


def write_logits(out_dir: str | Path, ids: Sequence[str], cols: dict[str, np.ndarray], meta: dict,
                 features: Sequence[str] = (), rows_per_shard: int = 1_000_000) -> None:
    """Write the stage output: a few large fp16 shards (ids sorted) and a manifest.

    The manifest lists the arrays each shard holds: `logits` (n, num_labels) and one entry per
    requested feature, e.g. {"name": "cls@3", "array": "cls_3", "dim": 384}.
    """
    from distillery.io import atomic_dir

    keys = _ids_to_u64(ids)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    cols = {c: v[order].astype(np.float16) for c, v in cols.items()}
    with atomic_dir(out_dir) as tmp:
        shards = []
        for k, s in enumerate(range(0, max(len(keys), 1), rows_per_shard)):
            name = f"shard-{k:05d}.npz"
            data = _npz_bytes(keys=keys[s:s + rows_per_shard], **{c: v[s:s + rows_per_shard] for c, v in cols.items()})
            (tmp / name).write_bytes(data)
            shards.append({"file": name, "rows": int(len(keys[s:s + rows_per_shard])), "sha256": _digest(data)})
        write_json(tmp / MANIFEST, {
            "format": FORMAT_VERSION, **meta, "dtype": "float16", "n_rows": int(len(keys)),
            "features": [{"name": f, "array": column(f), "dim": int(cols[column(f)].shape[1])} for f in features],
            "shards": shards,
        })


class Logits:
    """The soft-labels artifact, opened read-only by students."""

    def __init__(self, logits_dir: str | Path) -> None:
        d = Path(logits_dir)
        mpath = d / MANIFEST
        if not mpath.is_file():
            raise DistilleryError(f"{mpath}: missing; run `distillery soft-labels` (or dvc repro) first")
        self.manifest = read_json(mpath)
        if self.manifest.get("format") != FORMAT_VERSION:
            raise DistilleryError(f"{mpath}: format {self.manifest.get('format')}, this version reads "
                                  f"{FORMAT_VERSION}; re-run `distillery soft-labels` (dvc repro -f soft-labels)")
        names = ["logits"] + [f["array"] for f in self.manifest.get("features", [])]
        keys, cols = [], {c: [] for c in names}
        for sh in self.manifest["shards"]:
            path = d / sh["file"]
            data = path.read_bytes() if path.is_file() else b""
            z = _open_npz(data, names) if _digest(data) == sh.get("sha256") else None
            if z is None:
                raise DistilleryError(f"{path}: missing or damaged (does not match the checksum in {mpath}); "
                                      "re-run `distillery soft-labels` (dvc repro -f soft-labels)")
            keys.append(z["keys"])
            for c in names:
                cols[c].append(z[c])
        self.keys = np.concatenate(keys)
        self.arrays = {c: np.concatenate(v) for c, v in cols.items()}
        self.logits = self.arrays["logits"]
        self.path = d

    def check_teacher(self, teacher_dir: str | Path) -> str:
        """Refuse logits made by another teacher (weights, tokenizer or max_seq_len); return the fingerprint."""
        mpath = self.path / MANIFEST
        fp = self.manifest.get("fingerprint")
        here = teacher_fingerprint(teacher_dir, int(self.manifest.get("max_seq_len", 0)))
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
        keys = _ids_to_u64(ids)
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


def label_texts(model, tokenizer, ids: Sequence[str], texts_a: Sequence[str], texts_b: Sequence[str] | None,
                store: LogitStore, max_seq_len: int, batch_tokens: int, bf16: bool,
                checkpoint_every: int = 4096, rank: int = 0, world_size: int = 1,
                features: Sequence[str] = ()) -> dict:
    """Make sure the store holds logits for every id; label only the missing ones.

    With world_size > 1 this process takes every world_size-th batch of the same deterministic plan.
    """
    keys = _ids_to_u64(ids)
    found, _ = store.lookup(keys)
    todo = np.flatnonzero(~found)
    batches = None
    if world_size > 1:
        enc = tokenizer([texts_a[i] for i in todo], [texts_b[i] for i in todo] if texts_b is not None else None,
                        truncation=True, max_length=max_seq_len)["input_ids"]
        lengths = np.fromiter((len(x) for x in enc), dtype=np.int64, count=len(todo))
        batches = length_batches(lengths, keys[todo], batch_tokens)[rank::world_size]
    pending_k: list[np.ndarray] = []
    pending_c: list[dict[str, np.ndarray]] = []

    def flush() -> None:
        if pending_k:
            store.add(np.concatenate(pending_k), {c: np.concatenate([p[c] for p in pending_c]) for c in pending_c[0]})
            pending_k.clear()
            pending_c.clear()

    def on_batch(idx: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        pending_k.append(keys[todo[idx]])
        pending_c.append(cols)
        if sum(len(k) for k in pending_k) >= checkpoint_every:
            flush()

    t0 = time.perf_counter()
    run_teacher(model, tokenizer, [texts_a[i] for i in todo],
                [texts_b[i] for i in todo] if texts_b is not None else None,
                max_seq_len, batch_tokens, bf16, on_batch=on_batch, tie=keys[todo], batches=batches,
                features=features)
    flush()
    secs = time.perf_counter() - t0
    mine = len(todo) if batches is None else int(sum(len(b) for b in batches))
    return {"labelled": int(len(todo)), "reused": int(found.sum()), "teacher_seconds": round(secs, 2),
            "texts_per_second": round(mine / secs, 1) if mine and secs > 0 else 0.0}
