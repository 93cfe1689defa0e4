"""channels_last against torch's default layout (NCHW) on the CPU, for the packaged
convolutional bodies: extraction (eval + inference_mode) and one training step (forward,
backward, AdamW; BatchNorm in eval as the default recipe keeps it).

Both layouts run the same module on the same batch in this one process, interleaved
(NCHW, NHWC, NCHW, NHWC, ...), so a shared machine's load falls on both alike; the table
gives the median seconds of each and their ratio (NCHW / NHWC: above 1 means
channels_last is faster). What sktransfer does on the CPU is the last column:
``sktransfer._device.use_channels_last`` (``SKTRANSFER_CHANNELS_LAST=0`` or ``1`` overrides).

    OMP_NUM_THREADS=1 python benchmarks/bench_memory_format.py [--quick] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch

from sktransfer._device import use_channels_last
from sktransfer.backbones import resolve_backbone


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def case(name: str, size: int, batch: int, repeats: int) -> dict:
    bb = resolve_backbone(name)
    x = torch.rand(batch, 3, size, size)
    runs = {}
    for layout in ("nchw", "nhwc"):
        fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
        infer = copy.deepcopy(bb.module).eval().to(memory_format=fmt)
        train = copy.deepcopy(bb.module).to(memory_format=fmt)
        train.train()
        for m in train.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        opt = torch.optim.AdamW(train.parameters(), lr=1e-5)
        xi = x.contiguous(memory_format=fmt)

        def extract(m=infer, xi=xi):
            with torch.inference_mode():
                m(xi)

        def step(m=train, xi=xi, opt=opt):
            out = m(xi)
            opt.zero_grad()
            out.float().pow(2).mean().backward()
            opt.step()

        runs[layout] = {"extract": extract, "step": step}
    result = {"body": name, "size": size, "batch": batch}
    for what in ("extract", "step"):
        for layout in runs:  # warm-up: the first call of a layout picks its kernels
            runs[layout][what]()
        times = {"nchw": [], "nhwc": []}
        for _ in range(repeats):
            for layout in ("nchw", "nhwc"):
                times[layout] += timed(runs[layout][what], 1)
        a, b = statistics.median(times["nchw"]), statistics.median(times["nhwc"])
        result[what] = (a, b, a / b)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one body, one size, 2 repeats")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 160, 224])
    ap.add_argument("--bodies", nargs="+", default=["efficientnet_lite0", "efficientnet_lite2"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.quick:
        args.threads, args.sizes, args.bodies, args.repeats = [1], [32], args.bodies[:1], 2
        args.batch = 4
    print(
        f"torch {torch.__version__}, {platform.machine()}, "
        f"sktransfer's CPU choice: channels_last={use_channels_last(torch.device('cpu'), True)}"
    )
    print(
        "\n| body | px | threads | extract NCHW s | extract NHWC s | ratio | "
        "train step NCHW s | train step NHWC s | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.bodies:
            for size in args.sizes:
                r = case(name, size, args.batch, args.repeats)
                e, s = r["extract"], r["step"]
                print(
                    f"| {name} | {size} | {threads} | {e[0]:.3f} | {e[1]:.3f} | {e[2]:.2f}x | "
                    f"{s[0]:.3f} | {s[1]:.3f} | {s[2]:.2f}x |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
