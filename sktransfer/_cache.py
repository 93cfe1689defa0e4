"""A memory-bounded cache of extracted features, row by row, shared on disk by processes.

Rows are keyed by content (a hash of the pixels, of a file's path, size and
mtime, or of a string) under a namespace that fingerprints everything that
changes the features: the weights, the architecture and its code, the
preprocessing, the device type and the precision. Because keys are per row, the
k folds of a cross-validation — subsets of one X — share one extraction.

Two levels. In memory: a module global (never an estimator attribute, so
``clone`` and pickling never carry it), one per process, LRU-bounded in bytes,
one lock against threads. On disk: a directory (``cache=True`` uses
``feature_cache.directory``: ``$SKTRANSFER_CACHE_DIR``, else the user's cache
dir) that every process pointing at it shares — the loky workers of
``GridSearchCV(n_jobs=...)``, Dask workers, later sessions. Shards are written
atomically (a temporary file, then a rename), so no reader sees half a file.
Each shard carries a checksum of its keys and features: one changed since it was
written, and any ``.npz`` that is not a shard of ours, is ignored with a warning.
Before extracting, a process claims the rows it will compute (a claim file it
holds locked); another process that needs the same rows meanwhile computes only
the unclaimed ones and then waits for the claims, so each row is extracted once
across workers. A claim whose owner died is released by the OS with its lock.
The directory is bounded too: past ``max_disk_bytes`` the least recently used
shards are deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
import warnings
import zipfile
from collections import OrderedDict

import numpy as np

try:  # POSIX; elsewhere processes do not coordinate and may extract a row twice
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

CACHE_DIR_ENV = "SKTRANSFER_CACHE_DIR"
MAX_DISK_ENV = "SKTRANSFER_CACHE_MAX_DISK_BYTES"
# Only folders named like our namespaces are ever pruned or cleared, whatever else
# the directory holds.
_NAMESPACE = re.compile(r"^[0-9a-f]{32}-")


def default_cache_dir() -> str:
    """``$SKTRANSFER_CACHE_DIR``, else ``$XDG_CACHE_HOME/sktransfer``, else
    ``~/.cache/sktransfer`` (as scikit-learn resolves its data home)."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return os.path.abspath(os.path.expanduser(env))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return os.path.abspath(os.path.join(os.path.expanduser(base), "sktransfer"))


class FeatureCache:
    """LRU over rows, bounded by ``max_bytes`` of feature data in memory and by
    ``max_disk_bytes`` of shards in each directory.

    One instance per process, ``sktransfer.feature_cache``, serves every estimator;
    set its bounds there rather than making another.

    Parameters
    ----------
    max_bytes : int, default=2 GiB
        Bytes of feature data kept in memory; the least recently used rows go first.
        Settable later (``feature_cache.max_bytes = ...``).
    max_disk_bytes : int or None, default=None
        Bytes of shards kept in each cache directory; ``None`` reads
        ``$SKTRANSFER_CACHE_MAX_DISK_BYTES`` (bytes, or a size such as ``10GB``), else
        10 GiB.
    claim_timeout : float, default=600
        Seconds to wait for rows another process is extracting before extracting them
        here (with a warning). A claim whose owner on this machine is suspended (Ctrl+Z)
        is not waited for at all.

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from sktransfer import PretrainedFeatures, feature_cache
    >>> X = np.random.RandomState(0).rand(20, 5)
    >>> features = PretrainedFeatures(nn.Sequential(nn.LazyLinear(8)), random_state=0)
    >>> feature_cache.clear()
    >>> Z = features.fit_transform(X)
    >>> len(feature_cache)  # one cached row per row of X
    20
    >>> hits = feature_cache.hits
    >>> np.array_equal(features.transform(X), Z)
    True
    >>> feature_cache.hits - hits  # every row came from the cache, none was recomputed
    20
    >>> feature_cache.clear()  # empties memory; clear(disk=True) also deletes the shards
    >>> len(feature_cache)
    0
    """

    def __init__(
        self,
        max_bytes: int = 2 * 1024**3,
        max_disk_bytes: int | None = None,
        claim_timeout: float = 600.0,
    ):
        self._rows: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()
        # (directory, namespace) -> shard file names read so far, and key -> shard path.
        self._disk_seen: dict[tuple[str, str], set[str]] = {}
        self._disk_index: dict[tuple[str, str], dict[bytes, str]] = {}
        self._unusable: set[str] = set()
        self._bad_shards: set[str] = set()  # warned about once per process
        self.hits = 0
        self.misses = 0
        self.max_bytes = max_bytes
        if max_disk_bytes is None:
            max_disk_bytes = _disk_bytes_from_env()
        self.max_disk_bytes = max_disk_bytes
        self.claim_timeout = claim_timeout

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        with self._lock:
            self._max_bytes = int(value)
            self._evict()

    @property
    def directory(self) -> str:
        """The shared directory ``cache=True`` uses (see ``default_cache_dir``)."""
        return default_cache_dir()

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self, disk: bool = False) -> None:
        """Empty the memory cache and reset the counters; ``disk=True`` also deletes the
        shards in ``directory`` (only the folders this cache wrote)."""
        with self._lock:
            self._rows.clear()
            self._bytes = 0
            self._disk_seen.clear()
            self._disk_index.clear()
            self._unusable.clear()
            self._bad_shards.clear()
            self.hits = self.misses = 0
            if disk and os.path.isdir(self.directory):
                for name in os.listdir(self.directory):
                    if _NAMESPACE.match(name):
                        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def info(self) -> dict:
        with self._lock:
            return {
                "rows": len(self._rows),
                "bytes": self._bytes,
                "max_bytes": self._max_bytes,
                "hits": self.hits,
                "misses": self.misses,
            }

    def resolve(self, cache) -> str | None:
        """The directory for a ``cache`` parameter: None for memory only. ``True`` is the
        shared default, or memory only (with one warning) where it cannot be written."""
        if cache is True:
            directory = self.directory
            if directory in self._unusable:
                return None
            try:
                os.makedirs(directory, exist_ok=True)
                with tempfile.TemporaryFile(dir=directory):
                    pass
            except OSError as exc:
                self._unusable.add(directory)
                warnings.warn(
                    f"the feature cache directory {directory!r} is not writable ({exc}); "
                    f"features are cached in memory only. Set {CACHE_DIR_ENV} to a writable "
                    "directory to share them between processes.",
                    stacklevel=3,
                )
                return None
            return directory
        return os.fspath(cache)

    def get(self, namespace: str, keys: list[bytes], directory: str | None = None) -> dict:
        """{key: features} of the ``keys`` found in memory or, failing that, on disk."""
        with self._lock:
            found = self._lookup(namespace, keys, directory)
            self.hits += len(found)
            self.misses += len(keys) - len(found)
            return found

    def _lookup(self, namespace, keys, directory) -> dict:
        found = {}
        for k in keys:
            row = self._rows.get((namespace, k))
            if row is not None:
                self._rows.move_to_end((namespace, k))
                found[k] = row
        if directory is not None and len(found) < len(keys):
            found.update(self._read_disk(namespace, [k for k in keys if k not in found], directory))
        return found

    def put(
        self, namespace: str, keys: list[bytes], feats: np.ndarray, directory: str | None = None
    ) -> None:
        with self._lock:
            self._remember(namespace, keys, feats)
        if directory is not None and len(keys):
            try:
                self._write_disk(namespace, directory, keys, feats)
            except OSError as exc:  # a full or read-only disk costs the sharing, not the fit
                if directory not in self._unusable:
                    self._unusable.add(directory)
                    warnings.warn(
                        f"could not write features to the cache directory {directory!r} "
                        f"({exc}); they stay in this process's memory.",
                        stacklevel=3,
                    )

    def fill(self, namespace: str, keys: list[bytes], compute, directory: str | None) -> dict:
        """{key: features} for ``keys`` (all missing from the cache), computed by
        ``compute(keys) -> array`` once across the processes sharing ``directory``."""
        if directory is None or fcntl is None:
            feats = compute(keys)
            self.put(namespace, keys, feats, directory)
            return dict(zip(keys, feats))
        try:
            mine, theirs, claim = _claim(os.path.join(directory, namespace), keys)
        except OSError:  # a file system without locks: each process extracts for itself
            mine, theirs, claim = keys, [], None
        out = {}
        try:
            if mine:
                # The caller looked these rows up before the claim: another process may have
                # written them and dropped its claim in between. Its shard is on disk (written
                # before the release), so read it rather than extract the rows a second time.
                with self._lock:
                    out.update(self._lookup(namespace, mine, directory))
                mine = [k for k in mine if k not in out]
            if mine:
                feats = compute(mine)
                self.put(namespace, mine, feats, directory)
                out.update(zip(mine, feats))
        finally:
            _release(claim)
        if theirs:
            deadline = time.monotonic() + self.claim_timeout
            for path in theirs:
                problem = _wait(path, deadline)
                if problem is not None:
                    warnings.warn(
                        f"another process has claimed some of these rows ({path}) but {problem}"
                        "; this process extracts them itself. (feature_cache.claim_timeout "
                        "sets how long to wait.)",
                        stacklevel=4,
                    )
            rest = [k for k in keys if k not in out]
            with self._lock:
                out.update(self._lookup(namespace, rest, directory))
            # A claim whose owner died (or whose shard was pruned since): compute here.
            lost = [k for k in keys if k not in out]
            if lost:
                feats = compute(lost)
                self.put(namespace, lost, feats, directory)
                out.update(zip(lost, feats))
        return out

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
        key_rows, feats = _keys_array(keys), np.ascontiguousarray(feats, dtype=np.float32)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, keys=key_rows, feats=feats, checksum=_checksum(key_rows, feats))
        path = os.path.join(folder, f"{uuid.uuid4().hex}.npz")
        os.replace(tmp, path)
        with self._lock:
            self._index_shard((directory, namespace), path, keys)
        self._prune(directory, keep=path)

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
                    z = self._load_shard(path, ("keys",))
                    if z is None:  # pruned by another process since the listing, or not ours
                        continue
                    self._index_shard(where, path, [k.tobytes() for k in z["keys"]])
        index = self._disk_index.get(where, {})
        by_shard: dict[str, list[bytes]] = {}
        for k in keys:
            if k in index:
                by_shard.setdefault(index[k], []).append(k)
        found = {}
        for path, wanted in by_shard.items():
            z = self._load_shard(path, ("keys", "feats", "checksum"))
            pos = {} if z is None else {k.tobytes(): i for i, k in enumerate(z["keys"])}
            if z is None or any(k not in pos for k in wanted):
                for k in wanted:  # forget the shard: these rows are misses now
                    index.pop(k, None)
                continue
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used: pruned last
            rows = z["feats"][[pos[k] for k in wanted]]
            self._remember(namespace, wanted, rows)
            found.update(zip(wanted, rows))
        return found

    def _load_shard(self, path, names) -> dict | None:
        """The arrays ``names`` of the shard at ``path``; None (a miss) when it is gone, or
        when it is unreadable, not a shard, or fails its checksum (then with one warning)."""
        if path in self._bad_shards:
            return None
        try:
            z = _load(path, names)
        except FileNotFoundError:  # pruned by another process since the listing
            return None
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
            z, problem = None, f"cannot be read ({exc})"
        else:
            problem = None
            if set(names) - set(z) == {"checksum"}:
                # Written by an older sktransfer: a miss, rewritten with a checksum, and
                # pruned first (never read again), without a warning per old shard.
                self._bad_shards.add(path)
                return None
            if set(names) - set(z):
                missing = ", ".join(sorted(set(names) - set(z)))
                problem = f"is not a feature shard (it has no {missing} array)"
            elif "checksum" in names and not np.array_equal(
                z["checksum"], _checksum(z["keys"], z["feats"])
            ):
                problem = "was changed after it was written (its checksum does not match)"
        if problem is None:
            return z
        self._bad_shards.add(path)
        warnings.warn(
            f"the feature cache file {path!r} {problem}; it is ignored and its rows are "
            "extracted again. Delete it, or clear the cache (feature_cache.clear(disk=True)), "
            "to silence this warning.",
            stacklevel=2,
        )
        return None

    def _prune(self, directory, keep):
        """Delete the least recently used shards until ``directory`` holds at most
        ``max_disk_bytes`` of them; and temporary files a crashed writer left."""
        shards, total, now = [], 0, time.time()
        for ns in os.listdir(directory):
            if not _NAMESPACE.match(ns):
                continue
            with contextlib.suppress(OSError), os.scandir(os.path.join(directory, ns)) as it:
                for entry in it:
                    with contextlib.suppress(OSError):
                        st = entry.stat()
                        if entry.name.endswith(".npz"):
                            shards.append((st.st_mtime, entry.path, st.st_size))
                            total += st.st_size
                        elif entry.name.endswith(".tmp") and now - st.st_mtime > 3600:
                            os.unlink(entry.path)
        if total <= self.max_disk_bytes:
            return
        for _, path, size in sorted(shards):
            if total <= self.max_disk_bytes:
                break
            if path == keep:
                continue
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size


_DEFAULT_MAX_DISK_BYTES = 10 * 1024**3
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?(?:e\d+)?)\s*(?:([kmgt])(i?)b?|b)?\s*", re.IGNORECASE)


def _disk_bytes_from_env() -> int:
    """``$SKTRANSFER_CACHE_MAX_DISK_BYTES``: bytes, or a size such as ``10GB`` or ``10GiB``.
    A value that is neither warns and keeps the default: a cache setting must not stop
    ``import sktransfer``."""
    text = os.environ.get(MAX_DISK_ENV)
    if text is None or not text.strip():
        return _DEFAULT_MAX_DISK_BYTES
    m = _SIZE.fullmatch(text)
    if m is None:
        warnings.warn(
            f"{MAX_DISK_ENV}={text!r} is not a size; write a number of bytes or a size such "
            "as 10GB or 10GiB. The disk cache keeps its default bound, 10 GiB.",
            stacklevel=2,
        )
        return _DEFAULT_MAX_DISK_BYTES
    number, unit, binary = m.groups()
    power = 0 if not unit else "kmgt".index(unit.lower()) + 1
    return int(float(number) * (1024 if binary else 1000) ** power)


def _keys_array(keys) -> np.ndarray:
    # uint8 rows, not an "S16" array: numpy strips trailing NUL bytes from those.
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1)


def _checksum(keys: np.ndarray, feats: np.ndarray) -> np.ndarray:
    h = hashlib.blake2b(digest_size=16)
    for a in (keys, feats):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).data)
    return np.frombuffer(h.digest(), dtype=np.uint8)


def _load(path, names) -> dict:
    """Those of the arrays ``names`` that the ``.npz`` at ``path`` holds."""
    z = np.load(path, allow_pickle=False)
    if not isinstance(z, np.lib.npyio.NpzFile):  # a lone .npy array named .npz
        return {}
    with z:
        return {n: z[n] for n in names if n in z.files}


def _claim(folder, keys):
    """Under the folder's lock: the claim files of live processes that cover some of
    ``keys``, and a new claim (an open, locked file) on the rest."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "claims.lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        taken: dict[bytes, str] = {}
        for name in os.listdir(folder):
            if not name.endswith(".claim"):
                continue
            path = os.path.join(folder, name)
            try:
                fh = open(path, "rb")  # noqa: SIM115 - the lock lives as long as the handle
            except OSError:
                continue
            with fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:  # its owner is computing these rows now
                    for k in np.load(fh, allow_pickle=False):
                        taken[k.tobytes()] = path
                    continue
            with contextlib.suppress(OSError):  # nobody holds it: a dead owner's claim
                os.unlink(path)
        mine = [k for k in keys if k not in taken]
        theirs = sorted({taken[k] for k in keys if k in taken})
        claim = None
        if mine:
            # Named by its owner, so that a waiter can tell a suspended owner on this host.
            path = os.path.join(folder, f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex}.claim")
            claim = open(path, "w+b")  # noqa: SIM115
            fcntl.flock(claim, fcntl.LOCK_EX)
            np.save(claim, _keys_array(mine))
            claim.flush()
    return mine, theirs, claim


def _release(claim) -> None:
    if claim is not None:
        with contextlib.suppress(OSError):
            os.unlink(claim.name)
        claim.close()  # closing drops the lock: waiters wake up


_HOST = hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()


def _wait(path, deadline: float) -> str | None:
    """Wait until the process holding the claim at ``path`` releases it, or ``deadline``
    (``time.monotonic()``) passes; None when released, else what went wrong."""
    try:
        fh = open(path, "rb")  # noqa: SIM115
    except OSError:  # already released
        return None
    pause = 0.01
    with fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return None
            except BlockingIOError:
                pass
            if _owner_is_stopped(os.path.basename(path)):
                return "that process is suspended (stopped, as by Ctrl+Z)"
            if time.monotonic() >= deadline:
                return "has not finished them in time"
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 1.0)


def _owner_is_stopped(name: str) -> bool:
    """Whether the claim ``<host>-<pid>-<id>.claim`` belongs to a process on this host
    that is stopped (state T in /proc/<pid>/stat); False when that cannot be told."""
    host, _, rest = name.partition("-")
    pid = rest.partition("-")[0]
    if host != _HOST or not pid.isdigit():
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("T", "t")


feature_cache = FeatureCache()
