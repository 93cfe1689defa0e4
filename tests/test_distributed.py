"""strategy="ddp": data-parallel fine-tuning on two real processes (gloo, CPU) vs one."""

import contextlib
import io
import os
import pathlib
import pickle
import re
import socket
import subprocess
import sys

import joblib
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler
from torch import nn

from sktransfer import FineTuneClassifier, FineTuneRegressor

ROOT = pathlib.Path(__file__).resolve().parents[1]

# float32 sums of the two halves of a batch's gradient, added by the all-reduce, are not
# bit-equal to one process's sum over the whole batch: a relative difference of ~1e-7 a
# step, which Adam's normalised steps carry along for the ~300 steps of the default budget
# (measured: below 1e-5 relative on every epoch's loss; 1e-4 leaves room for other BLAS).
RTOL = 1e-4


def wine():
    """178 real wines, 13 measurements, 3 cultivars; 150 to train."""
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    return X[:150], y[:150], X[150:]


def body():
    return nn.Sequential(nn.LazyLinear(16), nn.ReLU())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Each run: (estimator, its parameters, fit's keyword arguments). All in one process
# group, since starting the processes (each imports torch) costs more than the fits.
RUNS = {
    "default": (FineTuneClassifier, {}, {}),
    "early stopping, weighted rows": (
        FineTuneClassifier,
        {"early_stopping": True, "n_iter_no_change": 1, "max_epochs": 40},
        {"sample_weight": np.linspace(0.5, 2.0, 150)},
    ),
    # 13 rows a batch: shares of 7 and 6 rows, and a last batch of 7 (4 and 3).
    "regressor, uneven shares": (FineTuneRegressor, {"batch_size": 13, "max_epochs": 10}, {}),
}


def fit_run(name, **params):
    """Fit ``RUNS[name]`` on the wines (the regressor: alcohol from the 12 other measures)."""
    cls, run_params, fit_kw = RUNS[name]
    X, y, _ = wine()
    if cls is FineTuneRegressor:
        X, y = X[:, 1:], X[:, 0]
    return cls(body(), random_state=0, **run_params, **params).fit(X, y, **fit_kw)


def _fit_in_group(rank, world, port, out):
    """One process of the group: fit as every process of a torchrun script would."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}"
    )
    try:
        fitted = {}
        for name in RUNS:
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                est = fit_run(name, strategy="ddp", verbose=1)
            weights = {k: v.numpy() for k, v in est.module_.state_dict().items()}
            fitted[name] = {"estimator": est, "weights": weights, "printed": printed.getvalue()}
        with open(os.path.join(out, f"rank{rank}.pkl"), "wb") as f:
            pickle.dump(fitted, f)
    finally:
        dist.destroy_process_group()


def train_losses(clf):
    return np.array([h["train_loss"] for h in clf.history_ if h["phase"] == "all"])


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Per run name, what each of two gloo processes fitted (rank 0, rank 1), unpickled
    here, in the test's own process, where no process group exists."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_fit_in_group, args=(2, free_port(), str(out)), nprocs=2)
    ranks = []
    for r in range(2):
        with open(out / f"rank{r}.pkl", "rb") as f:
            ranks.append(pickle.load(f))
    return {name: [rank[name] for rank in ranks] for name in RUNS}


@pytest.fixture(scope="module")
def one_process():
    return {name: fit_run(name) for name in RUNS}


@pytest.mark.slow  # two processes start and import torch: ~40 s here
@pytest.mark.parametrize("run", list(RUNS))
def test_two_processes_follow_the_single_process_loss_curve(two_processes, one_process, run):
    ddp, one = two_processes[run][0]["estimator"], one_process[run]
    assert len(ddp.history_) == len(one.history_)  # early stopping stopped at the same epoch
    np.testing.assert_allclose(train_losses(ddp), train_losses(one), rtol=RTOL)
    assert ddp.probe_loss_ == pytest.approx(one.probe_loss_, rel=1e-6)


@pytest.mark.slow  # two processes start and import torch: ~40 s here
def test_default_budget_is_the_single_process_one(two_processes, one_process):
    ddp, one = two_processes["default"][0]["estimator"], one_process["default"]
    assert ddp.max_epochs_ == one.max_epochs_ == len(train_losses(one)) == 60


@pytest.mark.slow  # two processes start and import torch: ~40 s here
@pytest.mark.parametrize("run", list(RUNS))
def test_every_process_ends_with_the_same_weights(two_processes, run):
    w0, w1 = (r["weights"] for r in two_processes[run])
    assert w0.keys() == w1.keys()
    for k in w0:
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=k)


@pytest.mark.slow  # two processes start and import torch: ~40 s here
def test_every_process_validates_alike(two_processes, one_process):
    e0, e1 = (r["estimator"] for r in two_processes["early stopping, weighted rows"])
    v0 = [h["valid_loss"] for h in e0.history_ if h["phase"] == "all"]
    v1 = [h["valid_loss"] for h in e1.history_ if h["phase"] == "all"]
    one = one_process["early stopping, weighted rows"]
    assert v0 == v1
    assert len(v0) < 40  # it did stop early
    np.testing.assert_allclose(v0, [h["valid_loss"] for h in one.history_[1:]], rtol=RTOL)


@pytest.mark.slow  # two processes start and import torch: ~40 s here
def test_only_process_0_prints_progress(two_processes):
    printed0, printed1 = (r["printed"] for r in two_processes["default"])
    assert "all layers: 60 epochs on 150 rows" in printed0
    assert "train_loss" in printed0  # skorch's epoch table
    assert printed1 == ""


@pytest.mark.slow  # two processes start and import torch: ~40 s here
def test_the_pickled_estimator_predicts_in_a_plain_process(two_processes, one_process):
    X, y, X_new = wine()
    ddp, one = two_processes["default"][0]["estimator"], one_process["default"]
    assert not dist.is_initialized()
    np.testing.assert_allclose(ddp.predict_proba(X_new), one.predict_proba(X_new), atol=1e-4)
    np.testing.assert_array_equal(ddp.predict(X_new), one.predict(X_new))
    assert ddp.score(X, y) > 0.95
    assert type(ddp.net_.module_).__name__ == "TransferModel"  # no DDP wrapper kept
    again = pickle.loads(pickle.dumps(ddp))
    np.testing.assert_array_equal(again.predict_proba(X_new), ddp.predict_proba(X_new))


def test_ddp_outside_a_process_group_says_how_to_start_one():
    X, y, _ = wine()
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node=N"):
        FineTuneClassifier(body(), strategy="ddp").fit(X, y)


def test_ddp_rejects_an_unknown_strategy():
    X, y, _ = wine()
    with pytest.raises(ValueError, match="strategy"):
        FineTuneClassifier(body(), strategy="fsdp").fit(X, y)


def test_ddp_partial_fit_is_refused():
    X, y, _ = wine()
    with pytest.raises(ValueError, match="supports fit only"):
        FineTuneClassifier(body(), strategy="ddp").partial_fit(X, y, classes=[0, 1, 2])


def docs_script() -> str:
    """The DDP script of docs/scaling.md, as a reader would save it."""
    page = (ROOT / "docs" / "scaling.md").read_text()
    section = page[page.index("## Data-parallel fine-tuning (DDP)") :]
    return re.search(r"^```python\n(.*?)^```", section, re.S | re.M).group(1)


@pytest.mark.slow  # two processes start and import torch: ~40 s here
def test_the_documented_torchrun_recipe_runs_on_two_processes(tmp_path):
    (tmp_path / "finetune_ddp.py").write_text(docs_script())
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*cmd, "finetune_ddp.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = joblib.load(tmp_path / "wine_clf.joblib")
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    one = FineTuneClassifier(body(), random_state=0).fit(X, y)
    assert ddp.strategy == "ddp"
    np.testing.assert_allclose(train_losses(ddp), train_losses(one), rtol=RTOL)
    np.testing.assert_array_equal(ddp.predict(X), one.predict(X))
