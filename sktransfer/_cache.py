"""A process-wide, memory-bounded cache of extracted features, row by row.

Rows are keyed by content (a hash of the pixels, of a file's path, size and
mtime, or of a string) under a namespace that fingerprints everything that
changes the features: the weights, the architecture, the preprocessing, the
device type and the precision. Because keys are per row, the k folds of a
cross-validation — subsets of one X — share one extraction. The cache is a
module global, never an estimator attribute, so ``clone`` and pickling never
carry it; each joblib worker process has its own. An optional directory makes
it persistent; shards are written atomically, so parallel workers never read
half a file.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections import OrderedDict

import numpy as np


class FeatureCache:
    """LRU over rows, bounded by ``max_bytes`` of feature data."""

    def __init__(self, max_bytes: int = 2 * 1024**3):
        self.max_bytes = int(max_bytes)
        self._rows: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._disk_seen: dict[str, set[str]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._bytes = 0
            self._disk_seen.clear()
            self.hits = self.misses = 0

    def info(self) -> dict:
        return {"rows": len(self), "bytes": self._bytes, "max_bytes": self.max_bytes,
                "hits": self.hits, "misses": self.misses}

    def get(self, namespace: str, keys: list[bytes], directory: str | None = None):
        """(features of the rows found or None, indices of the rows not found)."""
        if directory is not None:
            self._load_disk(namespace, directory)
        found: dict[int, np.ndarray] = {}
        with self._lock:
            for i, k in enumerate(keys):
                row = self._rows.get((namespace, k))
                if row is not None:
                    self._rows.move_to_end((namespace, k))
                    found[i] = row
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        missing = [i for i in range(len(keys)) if i not in found]
        return found, missing

    def put(self, namespace: str, keys: list[bytes], feats: np.ndarray, directory: str | None = None):
        with self._lock:
            for k, row in zip(keys, feats):
                key = (namespace, k)
                if key in self._rows:
                    continue
                row = row.copy()  # own the memory: a view would pin the whole batch
                self._rows[key] = row
                self._bytes += row.nbytes
            while self._bytes > self.max_bytes and self._rows:
                _, old = self._rows.popitem(last=False)
                self._bytes -= old.nbytes
        if directory is not None and len(keys):
            self._write_disk(namespace, directory, keys, feats)

    def _write_disk(self, namespace, directory, keys, feats):
        folder = os.path.join(directory, namespace)
        os.makedirs(folder, exist_ok=True)
        name = f"{uuid.uuid4().hex}.npz"
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            # uint8 rows, not an "S16" array: numpy strips trailing NUL bytes from those.
            keys_u8 = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1)
            np.savez(fh, keys=keys_u8, feats=feats)
        os.replace(tmp, os.path.join(folder, name))
        self._disk_seen.setdefault(namespace, set()).add(name)

    def _load_disk(self, namespace, directory):
        folder = os.path.join(directory, namespace)
        if not os.path.isdir(folder):
            return
        seen = self._disk_seen.setdefault(namespace, set())
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".npz") or name in seen:
                continue
            seen.add(name)
            with np.load(os.path.join(folder, name)) as z:
                self.put(namespace, [k.tobytes() for k in z["keys"]], z["feats"])


feature_cache = FeatureCache()
