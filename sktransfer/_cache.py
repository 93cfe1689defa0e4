"""A process-wide, memory-bounded cache of extracted features, row by row.

Rows are keyed by content (a hash of the pixels, of a file's path, size and
mtime, or of a string) under a namespace that fingerprints everything that
changes the features: the weights, the architecture, the preprocessing, the
device type and the precision. Because keys are per row, the k folds of a
cross-validation — subsets of one X — share one extraction. The cache is a
module global, never an estimator attribute, so ``clone`` and pickling never
carry it; each joblib worker process has its own, and one lock guards it
against threads. An optional directory makes it persistent: shards are written
atomically, so parallel workers never read half a file, and rows evicted from
memory are read back from their shard.
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
        self._rows: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()
        # (directory, namespace) -> shard file names read so far, and key -> shard path.
        self._disk_seen: dict[tuple[str, str], set[str]] = {}
        self._disk_index: dict[tuple[str, str], dict[bytes, str]] = {}
        self.hits = 0
        self.misses = 0
        self.max_bytes = max_bytes

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        with self._lock:
            self._max_bytes = int(value)
            self._evict()

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        """Empty the memory cache and reset the counters (disk shards stay)."""
        with self._lock:
            self._rows.clear()
            self._bytes = 0
            self._disk_seen.clear()
            self._disk_index.clear()
            self.hits = self.misses = 0

    def info(self) -> dict:
        with self._lock:
            return {
                "rows": len(self._rows),
                "bytes": self._bytes,
                "max_bytes": self._max_bytes,
                "hits": self.hits,
                "misses": self.misses,
            }

    def get(self, namespace: str, keys: list[bytes], directory: str | None = None) -> dict:
        """{key: features} of the ``keys`` found in memory or, failing that, on disk."""
        with self._lock:
            found = {}
            for k in keys:
                row = self._rows.get((namespace, k))
                if row is not None:
                    self._rows.move_to_end((namespace, k))
                    found[k] = row
            if directory is not None and len(found) < len(keys):
                found.update(
                    self._read_disk(namespace, [k for k in keys if k not in found], directory)
                )
            self.hits += len(found)
            self.misses += len(keys) - len(found)
            return found

    def put(
        self, namespace: str, keys: list[bytes], feats: np.ndarray, directory: str | None = None
    ) -> None:
        with self._lock:
            self._remember(namespace, keys, feats)
        if directory is not None and len(keys):
            self._write_disk(namespace, directory, keys, feats)

    def _remember(self, namespace, keys, feats):
        for k, row in zip(keys, feats):
            key = (namespace, k)
            if key in self._rows:
                continue
            row = row.copy()  # own the memory: a view would pin the whole batch
            self._rows[key] = row
            self._bytes += row.nbytes
        self._evict()

    def _evict(self):
        while self._bytes > self._max_bytes and self._rows:
            _, old = self._rows.popitem(last=False)
            self._bytes -= old.nbytes

    def _write_disk(self, namespace, directory, keys, feats):
        folder = os.path.join(directory, namespace)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            # uint8 rows, not an "S16" array: numpy strips trailing NUL bytes from those.
            keys_u8 = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1)
            np.savez(fh, keys=keys_u8, feats=np.asarray(feats, dtype=np.float32))
        path = os.path.join(folder, f"{uuid.uuid4().hex}.npz")
        os.replace(tmp, path)
        with self._lock:
            self._index_shard((directory, namespace), path, keys)

    def _index_shard(self, where, path, keys):
        self._disk_seen.setdefault(where, set()).add(os.path.basename(path))
        index = self._disk_index.setdefault(where, {})
        for k in keys:
            index.setdefault(k, path)

    def _read_disk(self, namespace, keys, directory) -> dict:
        where = (directory, namespace)
        folder = os.path.join(directory, namespace)
        if os.path.isdir(folder):
            seen = self._disk_seen.setdefault(where, set())
            for name in sorted(os.listdir(folder)):
                if name.endswith(".npz") and name not in seen:
                    path = os.path.join(folder, name)
                    with np.load(path, allow_pickle=False) as z:  # reads the keys only
                        self._index_shard(where, path, [k.tobytes() for k in z["keys"]])
        index = self._disk_index.get(where, {})
        by_shard: dict[str, list[bytes]] = {}
        for k in keys:
            if k in index:
                by_shard.setdefault(index[k], []).append(k)
        found = {}
        for path, wanted in by_shard.items():
            with np.load(path, allow_pickle=False) as z:
                pos = {k.tobytes(): i for i, k in enumerate(z["keys"])}
                feats = z["feats"]
            rows = feats[[pos[k] for k in wanted]]
            self._remember(namespace, wanted, rows)
            found.update(zip(wanted, rows))
        return found


feature_cache = FeatureCache()
