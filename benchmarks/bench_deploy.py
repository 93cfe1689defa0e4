"""Shipping a fitted model: file sizes and load times of joblib, ``sktransfer.save`` and
ONNX, and onnxruntime's inference time against ``predict`` (CPU, same process,
interleaved runs, one thread each), for a fine-tuned EfficientNet-Lite0 and MiniLM;
then pickle and in-memory sizes for every estimator family.

    OMP_NUM_THREADS=1 python benchmarks/bench_deploy.py [--quick]

``--quick`` shrinks the data and the repetitions (a smoke run: the numbers are not the
ones docs/deploy.md reports).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import joblib
import numpy as np
import torch
from sklearn.datasets import load_digits

import sktransfer
from sktransfer import (
    FeatureTransferClassifier,
    FeatureTransferRegressor,
    FineTuneClassifier,
    FineTuneRegressor,
    MultiTaskFineTune,
    PretrainedFeatures,
)


def digits_rgb(n: int, size: int = 32):
    """n real digits, upsampled to size px, as RGB uint8."""
    d = load_digits()
    X = (d.images[:n] * (255 / 16)).round().astype(np.uint8)
    X = np.kron(X, np.ones((size // 8, size // 8), np.uint8))
    return np.repeat(X[..., None], 3, axis=-1), d.target[:n]


TEXTS = [
    "a gripping, beautifully shot film",
    "dull and far too long",
    "the cast is wonderful",
    "a mess from start to finish",
    "funny, warm and clever",
    "i walked out halfway",
    "the best thriller this year",
    "flat jokes and a lazy plot",
]


def tensor_bytes(est) -> int:
    """Bytes of the distinct tensors an estimator holds (parameters and buffers)."""
    seen = {}
    modules = []
    for obj in (est, getattr(est, "features_", None)):
        if obj is None:
            continue
        for name in ("module_",):
            if isinstance(getattr(obj, name, None), torch.nn.Module):
                modules.append(getattr(obj, name))
        bb = obj.__dict__.get("backbone_")
        if bb is not None:
            modules += [m for m in (bb.module, bb.head) if m is not None]
    for m in modules:
        for t in [*m.parameters(), *m.buffers()]:
            seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def reachable_bytes(est) -> int:
    """Bytes of every distinct tensor storage reachable from the estimator: its weights,
    and whatever else it keeps (an optimiser's moments, callbacks' copies)."""
    import types

    seen, storages, stack = set(), {}, [est]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType)):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack += list(obj)
        elif isinstance(obj, torch.optim.Optimizer):
            stack += [obj.state, obj.param_groups]
        elif hasattr(obj, "__dict__"):
            stack += list(vars(obj).values())
    return sum(storages.values())


def timed(fn, reps: int = 1) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def formats(est, X_example, X_infer, folder, reps):
    """(row of sizes and load times, predict vs onnxruntime timing)."""
    import onnxruntime as ort

    paths = {k: os.path.join(folder, f"m.{k}") for k in ("joblib", "skt", "onnx")}
    joblib.dump(est, paths["joblib"])
    sktransfer.save(est, paths["skt"])
    sktransfer.to_onnx(est, X_example, paths["onnx"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    loads = {
        "joblib": lambda: joblib.load(paths["joblib"]),
        "skt": lambda: sktransfer.load(paths["skt"]),
        "onnx": lambda: ort.InferenceSession(
            paths["onnx"], options, providers=["CPUExecutionProvider"]
        ),
    }
    row = {k: (os.path.getsize(p), timed(loads[k], reps)) for k, p in paths.items()}
    session = loads["onnx"]()
    method = est.predict_proba if hasattr(est, "predict_proba") else est.predict
    method(X_infer)  # warm both paths once
    session.run(None, sktransfer.onnx_inputs(est, X_infer))
    t_predict, t_ort, t_ort_in = [], [], []
    for _ in range(reps):  # interleaved: a slow moment of the machine hits both
        t_predict.append(timed(lambda: method(X_infer)))
        inputs = sktransfer.onnx_inputs(est, X_infer)
        t_ort.append(timed(lambda inputs=inputs: session.run(None, inputs)))
        t_ort_in.append(timed(lambda: session.run(None, sktransfer.onnx_inputs(est, X_infer))))
    med = statistics.median
    return row, (med(t_predict), med(t_ort), med(t_ort_in))


def report(name, est, X_example, X_infer, reps):
    with tempfile.TemporaryDirectory() as folder:
        row, (tp, to, toi) = formats(est, X_example, X_infer, folder, reps)
    mb = tensor_bytes(est) / 1e6
    print(f"\n{name}: {mb:.1f} MB of tensors in memory; {len(X_infer)} rows to predict")
    print("| format | file size | load time |")
    print("| --- | --- | --- |")
    for k, label in (("joblib", "joblib (pickle)"), ("skt", "sktransfer.save"), ("onnx", "ONNX")):
        size, t = row[k]
        print(f"| {label} | {size / 1e6:.1f} MB ({size / 1e6 / mb:.2f}x tensors) | {t:.2f} s |")
    print(
        f"predict {tp * 1000:.0f} ms; onnxruntime {to * 1000:.0f} ms (ratio {tp / to:.2f}x), "
        f"with onnx_inputs {toi * 1000:.0f} ms (ratio {tp / toi:.2f}x)"
    )


def family_sizes(X, y, folder):
    """Pickle, safe-file and in-memory sizes of every estimator family on Lite0."""
    Y = np.column_stack([y % 2, y.astype(float)])
    fits = {
        "FineTuneClassifier": lambda: FineTuneClassifier("efficientnet_lite0", max_epochs=1),
        "FineTuneRegressor": lambda: FineTuneRegressor("efficientnet_lite0", max_epochs=1),
        "MultiTaskFineTune": lambda: MultiTaskFineTune(
            "efficientnet_lite0", tasks=["classification", "regression"], max_epochs=1
        ),
        "FeatureTransferClassifier": lambda: FeatureTransferClassifier("efficientnet_lite0"),
        "FeatureTransferRegressor": lambda: FeatureTransferRegressor("efficientnet_lite0"),
        "PretrainedFeatures": lambda: PretrainedFeatures("efficientnet_lite0"),
    }
    print(
        "\n| estimator (Lite0, 64 px) | weights | tensors reachable in memory | joblib "
        "| sktransfer.save |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, make in fits.items():
        est = make().set_params(image_size=64, random_state=0, cache=False)
        target = (
            Y if name == "MultiTaskFineTune" else (y.astype(float) if "Regressor" in name else y)
        )
        est.fit(X, target) if name != "PretrainedFeatures" else est.fit(X)
        mb, reach = tensor_bytes(est) / 1e6, reachable_bytes(est) / 1e6
        jp, sp = os.path.join(folder, "f.joblib"), os.path.join(folder, "f.skt")
        joblib.dump(est, jp)
        sktransfer.save(est, sp)
        js, ss = os.path.getsize(jp) / 1e6, os.path.getsize(sp) / 1e6
        cells = [
            f"{mb:.1f} MB",
            f"{reach:.1f} MB",
            f"{js:.1f} MB ({js / mb:.2f}x)",
            f"{ss:.1f} MB ({ss / mb:.2f}x)",
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n, reps, n_infer = (24, 1, 8) if args.quick else (100, 5, 32)
    X, y = digits_rgb(n + n_infer)
    lite0 = FineTuneClassifier("efficientnet_lite0", max_epochs=1, random_state=0, cache=False)
    lite0.fit(X[:n], y[:n])
    report("FineTuneClassifier('efficientnet_lite0'), 224 px", lite0, X[:2], X[n:], reps)
    texts = (TEXTS * (n // len(TEXTS) + 1))[:n]
    labels = np.arange(n) % 2
    minilm = FineTuneClassifier("all-MiniLM-L6-v2", max_epochs=1, random_state=0, cache=False)
    minilm.fit(texts, labels)
    report("FineTuneClassifier('all-MiniLM-L6-v2')", minilm, texts[:2], texts[:n_infer], reps)
    with tempfile.TemporaryDirectory() as folder:
        family_sizes(X[:n], y[:n], folder)


if __name__ == "__main__":
    main()
