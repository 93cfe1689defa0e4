"""Does the transferability score pick the model that fine-tunes best? Measured on real data.

Candidates: the packaged EfficientNet-Lite0/1/2 (ImageNet) at two depths each and
Lite0 randomly initialised. Each is scored with LogME and H-score on frozen features of
the training images (``rank_backbones``), then actually fine-tuned and scored on held-out
images. Reports both rankings and Kendall's tau between score and fine-tuned accuracy,
and the time of LogME at N = 10,000, D = 2,048 next to one fine-tuning epoch.

    python benchmarks/bench_selection.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy.stats import kendalltau

from sktransfer import FineTuneClassifier, PretrainedFeatures, logme_score, rank_backbones
from sktransfer.demo import balanced_sample, load_images


def candidates(image_size):
    common = {"image_size": image_size}
    return {
        "lite0": PretrainedFeatures("efficientnet_lite0", **common),
        "lite1": PretrainedFeatures("efficientnet_lite1", **common),
        "lite2": PretrainedFeatures("efficientnet_lite2", **common),
        "lite0 up to blocks.4": PretrainedFeatures(
            "efficientnet_lite0", layer="blocks.4", **common
        ),
        "lite1 up to blocks.4": PretrainedFeatures(
            "efficientnet_lite1", layer="blocks.4", **common
        ),
        "lite0 random init": PretrainedFeatures(
            "efficientnet_lite0", weights=None, random_state=0, **common
        ),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(0)
    name, images, labels = load_images(rng)
    k = len(np.unique(labels))
    n_train = 100 if args.quick else 300
    train = balanced_sample(labels, n_train // k, rng)
    test = balanced_sample(labels, 50, rng, exclude=train)
    cands = candidates(args.image_size)

    tables = {
        m: rank_backbones(images[train], labels[train], cands, metric=m)
        for m in ("logme", "hscore")
    }
    acc = {}
    for cname, pf in cands.items():
        t = time.perf_counter()
        p = pf.get_params()
        clf = FineTuneClassifier(
            p["backbone"],
            weights=p["weights"],
            layer=p["layer"],
            image_size=args.image_size,
            max_epochs=args.epochs,
            random_state=0,
        )
        acc[cname] = (
            clf.fit(images[train], labels[train]).score(images[test], labels[test]),
            time.perf_counter() - t,
        )
        print(f"fine-tuned {cname}: {acc[cname][0]:.3f} ({acc[cname][1]:.0f} s)", flush=True)

    print(f"\n{name}: {len(train)} training images, {len(test)} held-out, {args.image_size} px")
    print(f"{'candidate':<24}{'LogME':>10}{'H-score':>10}{'fine-tuned acc':>16}")
    logme = dict(zip(tables["logme"].names, tables["logme"].scores))
    hs = dict(zip(tables["hscore"].names, tables["hscore"].scores))
    for cname in tables["logme"].names:
        print(f"{cname:<24}{logme[cname]:>10.3f}{hs[cname]:>10.2f}{acc[cname][0]:>16.3f}")
    names = list(cands)
    for metric, col in (("LogME", logme), ("H-score", hs)):
        tau, p = kendalltau([col[c] for c in names], [acc[c][0] for c in names])
        print(
            f"Kendall tau ({metric} vs fine-tuned accuracy) over {len(names)} candidates: "
            f"{tau:.2f} (p = {p:.2f})"
        )
    print(
        f"pretrained lite0 ranks above random-init lite0 by LogME: "
        f"{logme['lite0'] > logme['lite0 random init']}"
    )

    F = np.random.default_rng(0).normal(size=(10_000, 2_048))
    y = np.random.default_rng(1).integers(0, 10, 10_000)
    t = time.perf_counter()
    logme_score(F, y)
    t_logme = time.perf_counter() - t
    epoch = [h["dur"] for h in clf.history_ if h["phase"] == "all"]
    print(
        f"\nLogME at N=10,000, D=2,048: {t_logme:.2f} s (goal < 2 s); one fine-tuning epoch of "
        f"the last candidate on {len(train)} images: {np.median(epoch):.1f} s "
        f"(~{np.median(epoch) * 10_000 / len(train):.0f} s scaled to 10,000 images)"
    )


if __name__ == "__main__":
    main()
