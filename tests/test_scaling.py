"""Scaling out: searches on a real Dask cluster, embedding over a Dask Bag of image files,
and the progress output of long extractions."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import RowCounter
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV
from torch import nn

from sktransfer import FeatureTransferClassifier, FineTuneClassifier, PretrainedFeatures

distributed = pytest.importorskip(
    "distributed", reason="Dask searches need pip install 'sktransfer[dask]'"
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """A real two-process Dask cluster on localhost, with its own feature cache directory."""
    import dask

    cache_dir = str(tmp_path_factory.mktemp("dask-feature-cache"))
    # As docs/scaling.md advises: the nanny's MALLOC_TRIM_THRESHOLD_ slows torch down 4x.
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            env={"SKTRANSFER_CACHE_DIR": cache_dir, "OMP_NUM_THREADS": "1"},
        )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _scores(search):
    return search.cv_results_["mean_test_score"]


def test_a_grid_search_over_feature_transfer_on_a_dask_cluster_equals_the_local_one(client, table):
    X, y = table
    search = GridSearchCV(
        FeatureTransferClassifier(RowCounter()), {"head__C": [0.01, 1.0, 100.0]}, cv=3
    )
    with parallel_backend("dask"), distributed.get_task_stream(client) as tasks:
        on_dask = search.fit(X, y)
    local = GridSearchCV(
        FeatureTransferClassifier(RowCounter()), {"head__C": [0.01, 1.0, 100.0]}, cv=3
    ).fit(X, y)
    assert {t["worker"] for t in tasks.data} <= set(client.scheduler_info()["workers"])
    assert len(tasks.data) >= 1  # the fits ran on the cluster's worker processes
    np.testing.assert_allclose(_scores(on_dask), _scores(local))
    assert on_dask.best_params_ == local.best_params_
    np.testing.assert_array_equal(on_dask.predict(X), local.predict(X))


def test_a_grid_search_over_fine_tuning_on_a_dask_cluster_equals_the_local_one(client, table):
    X, y = table

    def search():
        clf = FineTuneClassifier(
            nn.Sequential(nn.LazyLinear(8), nn.ReLU()), max_epochs=2, random_state=0
        )
        return GridSearchCV(clf, {"lr": [1e-3, 1e-2]}, cv=2)

    with parallel_backend("dask"):
        on_dask = search().fit(X, y)
    local = search().fit(X, y)
    np.testing.assert_allclose(_scores(on_dask), _scores(local), rtol=1e-6)
    np.testing.assert_allclose(on_dask.predict_proba(X), local.predict_proba(X), rtol=1e-5)


def _embed(paths, features):
    return [features.transform(list(paths))]


def test_embedding_a_dask_bag_of_image_files_equals_the_in_process_features(client, image_files):
    import dask.bag as db

    paths = image_files["grey"]  # 40 PNG files
    pf = PretrainedFeatures("efficientnet_lite0", image_size=32).fit(paths[:1])
    bag = db.from_sequence(paths, partition_size=16)
    parts = bag.map_partitions(_embed, client.scatter(pf, broadcast=True)).compute()
    Z = np.concatenate(parts)
    assert [len(p) for p in parts] == [16, 16, 8]
    np.testing.assert_allclose(Z, pf.transform(paths), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- progress


def test_verbose_shows_a_progress_bar_and_the_rows_per_second(table, capsys):
    X = table[0]
    pf = PretrainedFeatures(RowCounter(), batch_size=16, verbose=1).fit(X)
    pf.transform(X)
    err = capsys.readouterr().err
    assert re.search(r"59 rows extracted in [\d.]+ s \([\d.]+ rows/s\); 1 from the cache", err)
    assert "0/59 [" in err  # the tqdm bar, over the 59 rows to extract
    pf.transform(X)
    assert "60 rows, all from the cache" in capsys.readouterr().err


def test_feature_transfer_is_silent_by_default_and_verbose_on_request(table, capsys):
    X, y = table
    FeatureTransferClassifier(RowCounter()).fit(X, y).predict(X)
    assert capsys.readouterr() == ("", "")
    clf = FeatureTransferClassifier(RowCounter(seed=1), verbose=1).fit(X, y)
    assert "rows extracted" in capsys.readouterr().err
    clf.set_params(verbose=0).predict(X)
    assert capsys.readouterr() == ("", "")


# --------------------------------------------------------------------------- GPU check


def test_the_gpu_check_without_cuda_exits_2_and_says_why():
    import os
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    run = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "no CUDA device is available" in run.stderr
    assert "--cpu-dry-run" in run.stderr
