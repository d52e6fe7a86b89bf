"""The content-addressed store of teacher outputs (`.cache/logits/<fingerprint>/...`, git-ignored):
every text this teacher ever labelled. A re-run labels only texts the store has not seen, and a
killed run resumes from the parts it already wrote (each part is written atomically). The stage
output that students read is `artifact.py`.
"""

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from distillery.errors import DistilleryError
from distillery.io import atomic_file, clean_stale
from distillery.logits.arrays import PART_HASH, column, digest, npz_bytes, open_npz


ORIGIN = "origin"  # the array in each part naming the store key (fingerprint/precision/features) it was made under


def stored(v: np.ndarray) -> np.ndarray:
    """How a column is kept: token ids as int32, every value (logits, features) as float16."""
    return v.astype(np.int32) if np.issubdtype(v.dtype, np.integer) else v.astype(np.float16)


class LogitStore:
    """Content-addressed logits (and requested features) of one teacher under
    `root/<fingerprint>/<precision>/`, in parts named by the SHA-256 of their bytes. A row is a text (a
    classifier's logits, `width` = its labels) or a target position (a C-MLM teacher's top-k logits, `width` = k,
    with the feature `ids`: their token ids).

    Every part is checked against its name when the store is opened: a part that is empty, cut short,
    not an archive or altered in any way is reported on stderr, removed, and its texts are labelled
    again. A store with features lives in its own sub-folder named by the feature set. `precision`
    ("fp32" or "bf16", what the run really used) is part of the key: bf16 logits never serve an fp32 run.
    """

    def __init__(self, root: str | Path, fingerprint: str, width: int, features: Sequence[str] = (),
                 precision: str = "fp32") -> None:
        self.dir = Path(root) / fingerprint / precision
        self.discarded: list[str] = []
        if features:
            self.dir = self.dir / ("features-" + hashlib.sha1(",".join(sorted(features)).encode()).hexdigest()[:12])
        # every part carries the key it was made under and is checked against it on read: a part copied in from
        # another teacher's (or precision's, or feature set's) store is never served
        self.origin = f"{fingerprint}/{precision}/{','.join(sorted(features))}"
        self.width = width
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
            named = p.stem == f"part-{digest(data)[:PART_HASH]}"
            z = open_npz(data, [*self.columns, ORIGIN]) if named else None
            made = bytes(z[ORIGIN]).decode("utf-8", "replace") if z is not None else None
            if z is None and named and open_npz(data, self.columns) is not None:
                self._discard(p, "carries no teacher fingerprint (an older distillery wrote it)")
            elif made is not None and made != self.origin:
                self._discard(p, f"made by teacher fingerprint {made.split('/')[0]}, not this store's "
                                 f"{self.origin.split('/')[0]}")
            elif z is None:
                self._discard(p, "damaged (its contents do not match its checksum)")
            else:
                if z["logits"].shape[1] != self.width:
                    raise DistilleryError(f"{p}: {z['logits'].shape[1]} logits per row, expected {self.width}; "
                                          f"delete {self.dir}")
                keys.append(z["keys"])
                for c in self.columns:
                    cols[c].append(z[c])
        self._merge(keys, {c: v for c, v in cols.items() if v})
        self._sorted()
        if "logits" not in self._cols:
            self._cols["logits"] = np.zeros((0, self.width), dtype=np.float16)

    def _discard(self, part: Path, why: str) -> None:
        """A part that must not be served: named on stderr, removed, its texts labelled again."""
        print(f"warning: {part}: {why}; removed, its texts will be labelled again", file=sys.stderr)
        part.unlink(missing_ok=True)
        self.discarded.append(str(part))

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

    def origin_array(self) -> dict[str, np.ndarray]:
        """The array every part carries: the store key it was made under, checked when the part is read."""
        return {ORIGIN: np.frombuffer(self.origin.encode(), dtype=np.uint8)}

    def add(self, keys: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        """Persist one part atomically, then merge it into memory."""
        self.dir.mkdir(parents=True, exist_ok=True)
        half = {c: stored(v) for c, v in cols.items()}
        data = npz_bytes(keys=keys, **half, **self.origin_array())
        with atomic_file(self.dir / f"part-{digest(data)[:PART_HASH]}.npz", "wb") as fh:
            fh.write(data)
        self._merge([keys], {c: [v] for c, v in half.items()})


