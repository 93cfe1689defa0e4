"""The feature cache: each row extracted once per process and backbone setting, bounded,
optionally on disk, and never carried by clone or pickle."""

from __future__ import annotations

import os
import pathlib
import pickle
import sys
import threading
import warnings

import numpy as np
import pytest
import torch
from conftest import FLOAT32, RowCounter, TinyCNN
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score

import sktransfer._cache as _cache_module
import sktransfer.backbones as backbones
import sktransfer.backbones._registry as registry
from sktransfer import (
    Backbone,
    FeatureTransferClassifier,
    PretrainedFeatures,
    feature_cache,
    register_backbone,
)
from sktransfer._cache import FeatureCache
from sktransfer.inputs import ImagePreprocess


def test_grid_search_over_3_heads_and_3_folds_extracts_each_row_once(table, row_counter):
    X, y = table
    search = GridSearchCV(
        FeatureTransferClassifier(row_counter()), {"head__C": [0.1, 1.0, 10.0]}, cv=3
    ).fit(X, y)
    assert sum(row_counter.seen) == len(X)
    # 9 fits (one probe row, then 40 rows), 9 scorings (20 rows), the refit on all 60
    lookups = 9 * (1 + 40 + 20) + (1 + 60)
    assert feature_cache.info() | {"rows": None, "bytes": None} == {
        "rows": None,
        "bytes": None,
        "max_bytes": feature_cache.max_bytes,
        "hits": lookups - len(X),
        "misses": len(X),
    }
    assert search.best_params_["head__C"] in (0.1, 1.0, 10.0)


def test_grid_search_on_image_files_decodes_and_runs_each_image_once(
    image_files, image_row_counter
):
    X = image_files["rgb"] * 2  # 12 rows, 6 distinct files
    y = np.arange(12) % 2
    GridSearchCV(
        FeatureTransferClassifier(image_row_counter(), image_size=8),
        {"head__C": [0.1, 1.0, 10.0]},
        cv=3,
    ).fit(X, y)
    assert sum(image_row_counter.seen) == 6


def test_repeated_rows_within_x_are_computed_once(table, row_counter):
    X = np.vstack([table[0][:10]] * 3)
    Z = PretrainedFeatures(row_counter()).fit_transform(X)
    assert sum(row_counter.seen) == 10
    np.testing.assert_array_equal(Z[:10], Z[20:])


def test_equal_content_in_another_array_object_is_a_hit(table, row_counter):
    pf = PretrainedFeatures(row_counter()).fit(table[0])
    pf.transform(table[0])
    pf.transform(table[0].copy())
    assert sum(row_counter.seen) == len(table[0])


def test_cache_false_neither_reads_nor_writes_the_cache(table, row_counter):
    pf = PretrainedFeatures(row_counter(), cache=False).fit(table[0])
    pf.transform(table[0])
    pf.transform(table[0])
    assert feature_cache.info()["rows"] == 0
    assert sum(row_counter.seen) == 1 + 2 * len(table[0])


def _misses(X, **params):
    before = feature_cache.info()["misses"]
    PretrainedFeatures("resnet18", weights=None, cache=True, **params).fit_transform(X)
    return feature_cache.info()["misses"] - before


@pytest.mark.parametrize(
    "change",
    [{"random_state": 1}, {"image_size": 24}, {"pooling": "max"}, {"layer": "layer4"}],
    ids=["weights", "image_size", "pooling", "layer"],
)
def test_anything_that_changes_the_features_changes_the_key(digits, change):
    X = digits[0][:5]
    base = {"random_state": 0, "image_size": 16}
    assert _misses(X, **base) == 5
    assert _misses(X, **base) == 0
    assert _misses(X, **{**base, **change}) == 5


def test_two_layers_with_the_same_weights_get_different_keys(table):
    X = np.random.RandomState(0).rand(4, 16, 16).astype(np.float32)
    a = PretrainedFeatures("resnet18", weights=None, random_state=0, layer="layer3")
    b = PretrainedFeatures("resnet18", weights=None, random_state=0, layer="layer3.1.bn2")
    za, zb = a.fit_transform(X), b.fit_transform(X)
    assert za.shape == zb.shape == (4, 256)
    assert not np.allclose(za, zb)


def test_memory_stays_within_max_bytes_and_keeps_the_most_recent_rows(table, row_counter):
    X = table[0]  # 60 rows of 3 float32 features: 12 bytes each
    feature_cache.max_bytes = 20 * 12
    pf = PretrainedFeatures(row_counter()).fit(X)
    pf.transform(X)
    assert feature_cache.info()["rows"] == 20
    assert feature_cache.nbytes <= feature_cache.max_bytes
    row_counter.seen.clear()
    pf.transform(X[40:])  # the 20 most recent rows
    assert row_counter.seen == []
    hits = feature_cache.info()["hits"]
    pf.transform(X[:5])  # evicted from memory: read back from the disk cache, not extracted
    assert row_counter.seen == []
    assert feature_cache.info()["hits"] == hits + 5
    assert feature_cache.info()["rows"] == 20


def test_lowering_max_bytes_evicts_at_once():
    cache = FeatureCache()
    cache.put("ns", [bytes([i]) * 16 for i in range(10)], np.ones((10, 4), np.float32))
    cache.max_bytes = 3 * 16
    assert len(cache) == 3 and cache.nbytes == 48


def test_a_disk_cache_survives_clearing_memory(table, row_counter, tmp_path):
    X = table[0]
    first = PretrainedFeatures(row_counter(), cache=str(tmp_path)).fit_transform(X)
    feature_cache.clear()
    row_counter.seen.clear()
    again = PretrainedFeatures(row_counter(), cache=tmp_path).fit_transform(X)
    assert row_counter.seen == []
    np.testing.assert_array_equal(again, first)
    assert feature_cache.info()["hits"] == len(X) + 1


def test_rows_evicted_from_memory_are_read_back_from_disk(table, row_counter, tmp_path):
    X = table[0]
    feature_cache.max_bytes = 10 * 12
    pf = PretrainedFeatures(row_counter(), cache=str(tmp_path)).fit(X)
    first = pf.transform(X)
    row_counter.seen.clear()
    np.testing.assert_array_equal(pf.transform(X), first)
    assert row_counter.seen == []


def test_a_changed_file_is_extracted_again(tmp_path, image_row_counter):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    pf = PretrainedFeatures(image_row_counter()).fit([str(path)])
    before = pf.transform([str(path)])
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(path)
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse-grained file systems
    after = pf.transform([str(path)])
    assert sum(image_row_counter.seen) == 2
    assert not np.allclose(before, after)


def test_a_file_rewritten_with_its_mtime_restored_is_extracted_again(tmp_path, image_row_counter):
    """What cp -p, rsync -t and tar -x do: new pixels, same size in bytes, same mtime."""
    import shutil

    from PIL import Image

    path, other = tmp_path / "a.bmp", tmp_path / "b.bmp"  # BMPs of one size: equal bytes
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(other)
    pf = PretrainedFeatures(image_row_counter()).fit([str(path)])
    before = pf.transform([str(path)])
    st = os.stat(path)
    shutil.copyfile(other, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    after = pf.transform([str(path)])
    assert sum(image_row_counter.seen) == 2
    np.testing.assert_allclose(after, PretrainedFeatures(TinyCNN()).fit_transform([str(other)]))
    assert not np.allclose(before, after)


def test_cross_val_score_with_two_processes_matches_one(table):
    X, y = table
    est = FeatureTransferClassifier(RowCounter(), head=LogisticRegression(C=0.5))
    serial = cross_val_score(est, X, y, cv=3)
    parallel = cross_val_score(est, X, y, cv=3, n_jobs=2)
    np.testing.assert_allclose(parallel, serial)


def test_threads_sharing_the_cache_count_every_lookup(table, row_counter):
    X = table[0]
    pf = PretrainedFeatures(row_counter()).fit(X)
    expected = pf.transform(X)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(pf.transform(X))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for Z in results:
        np.testing.assert_array_equal(Z, expected)
    info = feature_cache.info()
    assert info["hits"] + info["misses"] == 1 + len(X) * (1 + 20)
    assert info["misses"] == len(X)


def test_clone_and_pickle_never_carry_the_cache(table):
    X = table[0]
    pf = PretrainedFeatures(RowCounter()).fit(X[:5])
    size = len(pickle.dumps(pf))
    pf.transform(X)
    assert feature_cache.info()["rows"] == len(X)
    assert len(pickle.dumps(pf)) == size
    assert not hasattr(clone(pf), "backbone_")


def test_changing_a_returned_array_does_not_change_the_cache(table):
    pf = PretrainedFeatures(RowCounter()).fit(table[0])
    first = pf.transform(table[0])
    expected = first.copy()
    first[:] = 0
    np.testing.assert_array_equal(pf.transform(table[0]), expected)


@pytest.fixture
def counted_builder(monkeypatch):
    """Registers 'counted': a tiny image backbone whose builder records its calls."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    calls = []

    def build(weights="DEFAULT", layer=None, pooling="avg", random_state=None):
        calls.append((weights, random_state))
        torch.manual_seed(len(calls))  # a different init at every build
        module = backbones.Pooled(TinyCNN(seed=len(calls)), pooling)
        return Backbone(module=module, modality="image", preprocess=ImagePreprocess(), name="c")

    register_backbone("counted", build)
    return calls


def test_a_grid_search_builds_a_named_backbone_once(rgb_images, counted_builder):
    y = np.arange(len(rgb_images)) % 2
    GridSearchCV(FeatureTransferClassifier("counted"), {"head__C": [0.1, 1.0, 10.0]}, cv=3).fit(
        rgb_images, y
    )
    assert counted_builder == [("DEFAULT", None)]


def test_random_init_without_a_seed_builds_a_new_model_at_every_fit(rgb_images, counted_builder):
    pf = PretrainedFeatures("counted", weights=None)
    first = pf.fit_transform(rgb_images[:4])
    second = pf.fit_transform(rgb_images[:4])
    assert len(counted_builder) == 2
    assert not np.allclose(first, second)


def test_a_rewritten_weights_file_is_loaded_again(rgb_images, counted_builder, tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"v1")
    pf = PretrainedFeatures("counted", weights=str(path))
    pf.fit(rgb_images[:2])
    pf.fit(rgb_images[:2])
    path.write_bytes(b"v2!")
    pf.fit(rgb_images[:2])
    assert len(counted_builder) == 2


def test_a_source_model_trained_after_its_features_were_cached_is_not_served_stale(table):
    X = table[0]
    source = PretrainedFeatures(RowCounter()).fit(X)
    before = source.transform(X)
    with torch.no_grad():  # what fine-tuning does to the source's weights
        source.backbone_.module.body.linear.weight.mul_(2.0)
    after = PretrainedFeatures(source).fit_transform(X)
    assert not np.allclose(after, before)
    uncached = PretrainedFeatures(source, cache=False).fit_transform(X)
    np.testing.assert_allclose(after, uncached, **FLOAT32)


# --------------------------------------------------------------------------- on disk, shared


class RowLogger(torch.nn.Module):
    """A seeded tabular backbone that appends ``<pid> <rows>`` to a log file at each forward
    call, so that rows computed in other processes are counted too."""

    def __init__(self, log: str):
        super().__init__()
        self.log = log
        g = torch.Generator().manual_seed(0)
        self.linear = torch.nn.Linear(5, 3)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(3, 5, generator=g))

    def forward(self, x):
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()} {len(x)}\n")
        return self.linear(x)


def _logged(log) -> list[tuple[int, int]]:
    if not os.path.exists(log):
        return []
    with open(log) as fh:
        return [tuple(map(int, line.split())) for line in fh]


def test_the_default_cache_is_on_disk_in_sktransfer_cache_dir(table, row_counter, tmp_path):
    X = table[0]
    first = PretrainedFeatures(row_counter()).fit_transform(X)
    shards = list(pathlib.Path(os.environ["SKTRANSFER_CACHE_DIR"]).glob("*/*.npz"))
    assert feature_cache.directory == os.environ["SKTRANSFER_CACHE_DIR"]
    assert len(shards) >= 1
    feature_cache.clear()  # what a new process (a search worker, a new session) starts with
    row_counter.seen.clear()
    np.testing.assert_array_equal(PretrainedFeatures(row_counter()).fit_transform(X), first)
    assert row_counter.seen == []


def test_cache_false_writes_nothing_to_disk(table, row_counter):
    PretrainedFeatures(row_counter(), cache=False).fit_transform(table[0])
    assert os.listdir(os.environ["SKTRANSFER_CACHE_DIR"]) == []


def test_clear_with_disk_deletes_the_shards(table, row_counter):
    X = table[0]
    PretrainedFeatures(row_counter()).fit_transform(X)
    feature_cache.clear(disk=True)
    row_counter.seen.clear()
    PretrainedFeatures(row_counter()).fit_transform(X)
    assert sum(row_counter.seen) == len(X)  # every row extracted again


def test_an_unwritable_cache_dir_warns_and_keeps_features_in_memory(
    table, row_counter, monkeypatch, tmp_path
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SKTRANSFER_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="not writable.*SKTRANSFER_CACHE_DIR"):
        pf = PretrainedFeatures(row_counter()).fit(table[0])
    pf.transform(table[0])
    row_counter.seen.clear()
    pf.transform(table[0])
    assert row_counter.seen == []


def test_a_parallel_grid_search_extracts_each_row_once_across_processes(table, tmp_path):
    from joblib.externals.loky import get_reusable_executor

    # Fresh workers, started with this test's SKTRANSFER_CACHE_DIR in their environment.
    get_reusable_executor().shutdown(wait=True)
    X, y = table
    log = str(tmp_path / "rows.log")
    grid = {"head__C": [0.1, 1.0, 10.0]}
    parallel = GridSearchCV(FeatureTransferClassifier(RowLogger(log)), grid, cv=3, n_jobs=2)
    parallel.fit(X, y)
    assert sum(rows for _, rows in _logged(log)) == len(X)
    serial = GridSearchCV(FeatureTransferClassifier(RowLogger(log)), grid, cv=3).fit(X, y)
    np.testing.assert_allclose(
        parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"]
    )


def test_a_row_claimed_by_another_worker_is_waited_for_not_extracted_again(tmp_path):
    cache_a, cache_b = FeatureCache(), FeatureCache()  # two processes' memory caches
    keys = [bytes([i]) * 16 for i in range(15)]
    started, go, computed = threading.Event(), threading.Event(), {}

    def compute_a(wanted):
        computed["a"] = wanted
        started.set()
        go.wait(10)
        return np.array([[k[0], 1.0] for k in wanted], np.float32)

    def compute_b(wanted):
        computed["b"] = wanted
        go.set()  # A finishes only once B has computed the rows nobody had claimed
        return np.array([[k[0], 1.0] for k in wanted], np.float32)

    a = threading.Thread(target=lambda: cache_a.fill("ns", keys[:10], compute_a, str(tmp_path)))
    a.start()
    assert started.wait(10)
    got = cache_b.fill("ns", keys[5:], compute_b, str(tmp_path))
    a.join()
    assert computed == {"a": keys[:10], "b": keys[10:]}
    np.testing.assert_array_equal(np.stack([got[k] for k in keys[5:]])[:, 0], np.arange(5, 15))


def test_rows_another_worker_wrote_after_the_lookup_are_read_not_extracted_again(tmp_path):
    # B looked the rows up (a miss); before B claims them, A extracts them, writes its shard
    # and drops its claim. B must read A's shard. (CI extracted 79 of 60 rows this way.)
    keys = [bytes([i]) * 16 for i in range(6)]
    feats = np.arange(12, dtype=np.float32).reshape(6, 2)
    FeatureCache().put("ns", keys[:4], feats[:4], str(tmp_path))  # A, done and released
    computed = []

    def compute_b(wanted):
        computed.append(wanted)
        return feats[[k[0] for k in wanted]]

    got = FeatureCache().fill("ns", keys, compute_b, str(tmp_path))
    assert computed == [keys[4:]]
    np.testing.assert_array_equal(np.stack([got[k] for k in keys]), feats)


def test_a_claim_left_by_a_dead_worker_is_taken_over(tmp_path):
    keys = [bytes([i]) * 16 for i in range(4)]
    folder = tmp_path / "ns"
    folder.mkdir()
    with open(folder / "dead.claim", "wb") as fh:  # written, never locked: its owner died
        np.save(fh, np.frombuffer(b"".join(keys), np.uint8).reshape(4, 16))
    got = FeatureCache().fill("ns", keys, lambda w: np.ones((len(w), 2), np.float32), str(tmp_path))
    assert sorted(got) == keys
    assert not (folder / "dead.claim").exists()


_HOLD_A_CLAIM = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("cache", sys.argv[2])  # numpy only, no torch
cache = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cache)
_claim = cache._claim
keys = [bytes([i]) * 16 for i in range(4)]
mine, theirs, claim = _claim(sys.argv[1], keys)
print(len(mine), flush=True)
time.sleep(120)
"""


@pytest.fixture
def claim_holder(tmp_path):
    """A process that has claimed 4 rows of namespace "ns" and never finishes them."""
    import subprocess

    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_A_CLAIM, str(tmp_path / "ns"), _cache_module.__file__],
        stdout=subprocess.PIPE,
    )
    assert child.stdout.readline().strip() == b"4"
    yield child
    child.kill()
    child.wait()


def _fill_in_a_thread(cache, keys, directory):
    """``cache.fill`` in a thread, joined with a bound: a wait without end fails the test
    instead of hanging it."""
    out, caught = {}, []

    def run():
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            out.update(
                cache.fill("ns", keys, lambda k: np.ones((len(k), 2), np.float32), directory)
            )
        caught.extend(w)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "still waiting for the claim after 60 s"
    return out, [str(w.message) for w in caught]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/stat")
def test_a_claim_whose_owner_is_suspended_is_not_waited_for(tmp_path, claim_holder):
    import signal

    os.kill(claim_holder.pid, signal.SIGSTOP)  # what Ctrl+Z does
    try:
        keys = [bytes([i]) * 16 for i in range(4)]
        got, messages = _fill_in_a_thread(FeatureCache(), keys, str(tmp_path))
    finally:
        os.kill(claim_holder.pid, signal.SIGCONT)
    assert sorted(got) == keys
    assert any("that process is suspended" in m for m in messages), messages


def test_a_claim_not_finished_within_claim_timeout_is_extracted_here(tmp_path, claim_holder):
    keys = [bytes([i]) * 16 for i in range(4)]
    got, messages = _fill_in_a_thread(FeatureCache(claim_timeout=0.5), keys, str(tmp_path))
    assert sorted(got) == keys
    assert any("has not finished them in time" in m for m in messages), messages


def test_the_disk_cache_stays_within_max_disk_bytes(tmp_path):
    cache = FeatureCache(max_disk_bytes=6000)
    ns = "0" * 32 + "-cpu-auto"
    for i in range(10):
        keys = [bytes([i, j]) * 8 for j in range(10)]
        cache.put(ns, keys, np.full((10, 32), i, np.float32), str(tmp_path))
    sizes = [p.stat().st_size for p in tmp_path.glob("*/*.npz")]
    assert 0 < sum(sizes) <= 6000
    assert len(sizes) < 10
    fresh = FeatureCache()  # the newest shard survives and reads back
    got = fresh.get(ns, [bytes([9, 0]) * 8], str(tmp_path))
    np.testing.assert_array_equal(got[bytes([9, 0]) * 8], np.full(32, 9, np.float32))


def _net_class(factor: str):
    """A module class named ``Net`` whose forward multiplies by ``factor``: the same
    name, weights and repr, other code — as after editing a class between sessions."""
    namespace = {"__name__": "user_code", "nn": torch.nn}
    exec(
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.linear = nn.Linear(5, 3)\n"
        "    def forward(self, x):\n"
        f"        return self.linear(x) * {factor}\n",
        namespace,
    )
    return namespace["Net"]


def _shards():
    return sorted(pathlib.Path(os.environ["SKTRANSFER_CACHE_DIR"]).glob("*/*.npz"))


def test_a_shard_changed_after_it_was_written_is_ignored_with_a_warning(table, row_counter):
    X = table[0]
    first = PretrainedFeatures(row_counter()).fit_transform(X)
    for shard in _shards():
        with np.load(shard) as z:
            arrays = {k: z[k] for k in z.files}
        np.savez(shard, **{**arrays, "feats": np.zeros_like(arrays["feats"])})
    feature_cache.clear()  # a new process, reading the disk cache
    row_counter.seen.clear()
    with pytest.warns(UserWarning, match="was changed after it was written"):
        again = PretrainedFeatures(row_counter()).fit_transform(X)
    assert sum(row_counter.seen) >= len(X)  # extracted again, not served the zeros
    np.testing.assert_allclose(again, first, **FLOAT32)


def test_a_stray_npz_in_a_cache_folder_is_ignored_with_a_warning(table, row_counter):
    X = table[0]
    first = PretrainedFeatures(row_counter()).fit_transform(X)
    np.savez(_shards()[0].parent / "notes.npz", scores=np.arange(3))
    feature_cache.clear()
    row_counter.seen.clear()
    with pytest.warns(UserWarning, match=r"notes.npz' is not a feature shard"):
        again = PretrainedFeatures(row_counter()).fit_transform(X)
    assert row_counter.seen == []  # the real shards still serve every row
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(PretrainedFeatures(row_counter()).fit_transform(X), first)


def test_a_module_whose_forward_code_changed_is_not_served_old_features(table):
    X = table[0]
    torch.manual_seed(0)
    old = _net_class("2.0")()
    new = _net_class("3.0")()
    new.load_state_dict(old.state_dict())
    z_old = PretrainedFeatures(old).fit_transform(X)
    feature_cache.clear()  # a new session: only the disk cache remains
    z_new = PretrainedFeatures(new).fit_transform(X)
    np.testing.assert_allclose(z_new, 1.5 * z_old, rtol=1e-5)


def test_a_cache_directory_the_user_names_but_cannot_be_written_is_an_error_up_front(
    table, row_counter, tmp_path
):
    """An explicit ``cache=path`` is a request: failing to honour it is an error before any
    row is embedded, not a warning (``cache=True``'s default folder warns instead)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for where in (blocker, blocker / "sub"):
        with pytest.raises(ValueError, match="is not a writable directory"):
            PretrainedFeatures(row_counter(), cache=str(where)).fit_transform(table[0])
    assert row_counter.seen == []


@pytest.mark.parametrize(
    "value, expected", [("10GB", 10**10), ("10GiB", 10 * 1024**3), ("123", 123)]
)
def test_the_disk_bound_reads_a_size_with_units_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("SKTRANSFER_CACHE_MAX_DISK_BYTES", value)
    assert FeatureCache().max_disk_bytes == expected


def test_an_unreadable_disk_bound_in_the_environment_warns_naming_it(monkeypatch):
    """It is read when sktransfer is imported: a typo must not make the import fail."""
    monkeypatch.setenv("SKTRANSFER_CACHE_MAX_DISK_BYTES", "ten gigs")
    with pytest.warns(
        UserWarning, match="SKTRANSFER_CACHE_MAX_DISK_BYTES='ten gigs' is not a size"
    ):
        cache = FeatureCache()
    assert cache.max_disk_bytes == 10 * 1024**3
