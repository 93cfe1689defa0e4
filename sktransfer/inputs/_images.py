"""Image sources: numpy arrays, lists of arrays or PIL images, and image files."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ._common import Source, _hash_bytes, _is_pathlike, _is_pil, _type_name, _unwrap_pandas

# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImagePreprocess:
    """Eval-time preprocessing, taken from the weights' metadata.

    ``resize`` is the length of the shorter side after resizing, ``crop`` the
    (height, width) of the centre crop, as in torchvision's
    ``weights.transforms()`` and timm's ``resolve_model_data_config``.
    ``None`` sizes leave the image as it comes; ``mean``/``std`` ``None`` skip
    normalisation. ``channels`` is 3 for RGB backbones (grey is repeated) or
    ``None`` to keep what the input has.
    """

    crop: tuple[int, int] | None = None
    resize: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str = "bilinear"
    channels: int | None = 3

    def with_image_size(self, image_size) -> ImagePreprocess:
        """Override the crop size, keeping the weights' resize/crop ratio."""
        if image_size is None:
            return self
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        ratio = 1.0
        if self.crop is not None and self.resize is not None:
            ratio = self.resize / min(self.crop)
        return ImagePreprocess(
            crop=(h, w),
            # The shorter side is resized to cover the crop's longer side: a (48, 64) crop
            # of a square image needs it 64 px wide at least.
            resize=int(round(max(h, w) * ratio)),
            mean=self.mean,
            std=self.std,
            interpolation=self.interpolation,
            channels=self.channels,
        )

    def __call__(
        self, batch: torch.Tensor, *, resized: bool = False, where: str = "X"
    ) -> torch.Tensor:
        """Float batch (B, C, H, W) in [0, 1], all one size -> model input.

        ``resized=True``: the images went through ``resize_crop`` already (one by one,
        being of different sizes); resizing them again would zoom them in once more.
        ``where`` names the rows in errors (``"X row 3"``).
        """
        grey_to_rgb = self.channels == 3 and batch.shape[1] == 1
        if not grey_to_rgb and self.channels is not None and batch.shape[1] != self.channels:
            raise ValueError(
                f"images have {batch.shape[1]} channels; this backbone expects {self.channels}."
            )
        if not resized:
            batch = self.resize_crop(batch, where=where)
        if grey_to_rgb:  # after resizing: one channel to resize, not three
            batch = batch.expand(-1, 3, -1, -1)
        if self.mean is not None:
            mean = torch.tensor(self.mean, dtype=batch.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=batch.dtype).view(1, -1, 1, 1)
            batch = (batch - mean) / std
        return batch.contiguous()

    def resize_crop(self, batch: torch.Tensor, *, where: str = "X") -> torch.Tensor:
        """Resize the shorter side to ``resize``, then centre-crop to ``crop``.

        Only the part of the image that the crop keeps is resized: a 4 x 40,000 px strip
        resized whole to a 256 px short side would be 2.6 million px long (7.8 GB as
        floats) for a 224 px crop. Without a crop, the resized image is bounded instead.
        """
        h, w = batch.shape[-2:]
        crop_top = crop_left = None
        if self.resize is not None and min(h, w) != self.resize:
            scale = self.resize / min(h, w)
            size = [max(1, int(round(h * scale))), max(1, int(round(w * scale)))]
            if self.crop is not None:
                (y0, y1, size[0], crop_top), (x0, x1, size[1], crop_left) = (
                    _crop_window(n, m, c) for n, m, c in zip((h, w), size, self.crop)
                )
                batch = batch[..., y0:y1, x0:x1]
            elif size[0] * size[1] > _MAX_RESIZED_PIXELS:
                raise ValueError(
                    f"{where}: an image of {h}x{w} px would be resized to {size[0]}x{size[1]} "
                    f"px (more than {_MAX_RESIZED_PIXELS / 1e6:.1f} million); crop it to a "
                    "less extreme shape first, or set image_size to centre-crop it."
                )
            mode = (
                self.interpolation if self.interpolation in ("bilinear", "bicubic") else "nearest"
            )
            kw = {"antialias": True, "align_corners": False} if mode != "nearest" else {}
            batch = F.interpolate(batch, size=tuple(size), mode=mode, **kw)
            if mode == "bicubic":
                batch = batch.clamp_(0.0, 1.0)
        if self.crop is not None:
            ch, cw = self.crop
            h, w = batch.shape[-2:]
            if h < ch or w < cw:
                raise ValueError(
                    f"{where}: image of {h}x{w} px is smaller than the {ch}x{cw} crop; set a "
                    "resize."
                )
            top = (h - ch) // 2 if crop_top is None else crop_top
            left = (w - cw) // 2 if crop_left is None else crop_left
            batch = batch[..., top : top + ch, left : left + cw]
        return batch


# A resized side longer than this many crops is cut to what the crop sees before resizing
# (exactly, where the window can fall on the full resize's pixel grid; else from 16 crops
# on, to within a fraction of a pixel); shorter ones are resized whole, as torchvision's
# Resize + CenterCrop do.
_PRECROP_FACTOR = 4
_PRECROP_INEXACT_FACTOR = 16
# Resized images without a crop larger than this are refused (800 MB as 3-channel floats).
_MAX_RESIZED_PIXELS = 64 * 1024**2


def _crop_window(n: int, m: int, c: int) -> tuple[int, int, int, int]:
    """For an axis of ``n`` px resized to ``m`` and centre-cropped to ``c``: the input span
    ``[a, b)`` to resize, its resized length, and the crop's offset in it."""
    top = (m - c) // 2
    if m <= _PRECROP_FACTOR * c:
        return 0, n, m, top
    # Input pixels an output pixel's (antialiased, bicubic) kernel reaches on each side.
    reach = math.ceil(2 * max(1.0, n / m)) + 1
    a = max(0, math.floor(top * n / m) - reach)
    b = min(n, math.ceil((top + c) * n / m) + reach)
    # Every `step` input px are a whole number of output px: a window of whole steps is
    # resized at exactly the full image's scale and on its grid, so the crop is the same.
    step = n // math.gcd(m, n)
    if step <= b - a:
        a, b = a // step * step, min(n, -(-b // step) * step)
        return a, b, (b - a) * m // n, top - a * m // n
    if m <= _PRECROP_INEXACT_FACTOR * c:
        return 0, n, m, top
    length = max(c, int(round((b - a) * m / n)))
    return a, b, length, min(max(0, int(round(top - a * m / n))), length - c)


_ROWS_PER_CHECK = 256  # rows per chunk when locating a bad row (bounds temporaries)


def _channel_axis(shape: tuple, *, prefer_last: bool, name: str) -> int:
    """1 for (N, C, H, W), 3 for (N, H, W, C); ambiguous shapes follow the array's convention."""
    first, last = shape[1] in (1, 3), shape[-1] in (1, 3)
    if first and last:
        # (N, 3, 32, 3) reads both ways: numpy/PIL/skimage store channels last, torch first.
        last, first = "(N, H, W, C)", "(N, C, H, W)"
        read, other, who = (last, first, "numpy") if prefer_last else (first, last, "torch")
        warnings.warn(
            f"images of shape {shape[1:]} could have their channels on axis 1 or axis 3; "
            f"read as {read}, as {who} stores images, not {other}. "
            "If that is wrong, pass "
            + (
                "torch.from_numpy(X): tensors are read channels first."
                if prefer_last
                else "X.numpy(): numpy arrays are read channels last."
            ),
            AmbiguousChannelsWarning,
            stacklevel=4,
        )
        return 3 if prefer_last else 1
    if last:
        return 3
    if first:
        return 1
    raise ValueError(
        f"{name} has shape {shape}: cannot find a channel axis of size 1 or 3. "
        "Images must be (N, H, W) grey, (N, H, W, C) or (N, C, H, W) with C in {1, 3}"
        + ("; drop the alpha channel with X[..., :3]." if shape[-1] == 4 else ".")
    )


class AmbiguousChannelsWarning(UserWarning):
    """An image array whose channel axis could be axis 1 or the last one."""


def _warn_if_binary(X: np.ndarray, *, name: str) -> None:
    """uint8 images whose pixels are all 0 or 1 are masks (or labels), not pictures: read
    as pixels of 0 and 1/255 they are black."""
    if X.dtype != np.uint8 or X[:1].max() > 1 or X.max() > 1:  # most arrays: one row read
        return
    warnings.warn(
        f"{name}: every pixel of these uint8 images is 0 or 1, read as black and almost "
        "black (1/255). If they are masks, scale them: X * 255, or X.astype(np.float32) "
        "(floats are taken in [0, 1]).",
        UserWarning,
        stacklevel=4,
    )


def _first_bad_row(X: np.ndarray, bad_rows) -> int:
    """Index of the first row for which ``bad_rows(chunk)`` (a boolean per row) is true."""
    for start in range(0, len(X), _ROWS_PER_CHECK):
        bad = bad_rows(X[start : start + _ROWS_PER_CHECK].reshape(-1, *X.shape[1:]))
        if bad.any():
            return start + int(np.argmax(bad))
    raise AssertionError("no bad row found")  # pragma: no cover - callers checked first


def _check_pixel_values(X: np.ndarray, *, name: str) -> None:
    """NaN/inf and range checks: two whole-array reductions, no temporaries; rows are
    located chunk by chunk only when something is wrong."""
    if X.dtype == np.uint8:
        return
    is_float = np.issubdtype(X.dtype, np.floating)
    lo, hi = X.min(), X.max()  # NaN propagates through both
    if is_float and not (np.isfinite(lo) and np.isfinite(hi)):
        row = _first_bad_row(X, lambda c: ~np.isfinite(c).reshape(len(c), -1).all(axis=1))
        raise ValueError(f"{name} contains NaN or infinity at row {row}.")
    limit = 1.0 if is_float else 255
    if lo < 0 or hi > limit:

        def out_of_range(c):
            flat = c.reshape(len(c), -1)
            return (flat.min(axis=1) < 0) | (flat.max(axis=1) > limit)

        row = _first_bad_row(X, out_of_range)
        span = f"[{X[row].min()}, {X[row].max()}]"
        if is_float:
            raise ValueError(
                f"{name}: float images must lie in [0, 1]; row {row} spans {span}. "
                "Divide by 255 (or by the maximum) or pass uint8."
            )
        raise ValueError(f"{name}: integer images must lie in [0, 255]; row {row} spans {span}.")


class ArrayImages(Source):
    """An in-memory image array, read as (N, C, H, W) batch by batch.

    ``channels_last_hint``: how to read a shape such as (N, 3, 32, 3) whose channel
    axis could be either; numpy arrays default to channels last, torch tensors to first.
    """

    def __init__(
        self,
        X: np.ndarray,
        *,
        name: str = "X",
        channels_last_hint: bool = True,
        warn_binary: bool = True,
    ):
        if X.ndim not in (3, 4):
            raise ValueError(
                f"{name} has {X.ndim} dimensions (shape {X.shape}); image arrays must be "
                "(N, H, W) grey, (N, H, W, C) or (N, C, H, W). A 2-D (n_samples, n_features) "
                "table needs a tabular backbone (an nn.Module taking vectors)."
            )
        if X.dtype == np.bool_ or not np.issubdtype(X.dtype, np.number):
            raise TypeError(f"{name} has dtype {X.dtype}; image arrays must be uint8 or float.")
        if np.issubdtype(X.dtype, np.complexfloating):
            raise TypeError(f"{name} is complex; image arrays must be uint8 or float.")
        self.channel_axis = (
            None
            if X.ndim == 3
            else _channel_axis(X.shape, prefer_last=channels_last_hint, name=name)
        )
        _check_pixel_values(X, name=name)
        if warn_binary:
            _warn_if_binary(X, name=name)
        self.name = name
        # Kept in the caller's layout: no whole-array copy; batches are transposed as loaded.
        self.X = X
        self.scale = 1.0 if np.issubdtype(X.dtype, np.floating) else 1.0 / 255.0

    def __len__(self) -> int:
        return len(self.X)

    @property
    def channels(self) -> int:
        return 1 if self.channel_axis is None else self.X.shape[self.channel_axis]

    def sides(self, rows) -> list[tuple[int, int]]:
        """(height, width) of ``rows``: one size for the whole array."""
        hw = self.X.shape[2:4] if self.channel_axis == 1 else self.X.shape[1:3]
        return [tuple(int(v) for v in hw)] * len(rows)

    def _compute_keys(self, rows) -> list[bytes]:
        meta = f"{self.X.dtype}{self.X.shape[1:]}{self.channel_axis}".encode()
        rows = range(len(self.X)) if rows is None else rows
        # hashlib reads contiguous rows through the buffer protocol, without a copy.
        return [_hash_bytes(meta, np.ascontiguousarray(self.X[i])) for i in rows]

    def raw(self, indices) -> torch.Tensor:
        """Rows as a float (B, C, H, W) batch in [0, 1], before resizing or normalising."""
        batch = torch.from_numpy(np.ascontiguousarray(self.X[np.asarray(indices)]))
        if self.channel_axis is None:
            batch = batch[:, None]
        elif self.channel_axis == 3:
            batch = batch.permute(0, 3, 1, 2)
        batch = batch.float()  # X[indices] above is already a copy: no clone needed
        if self.scale != 1.0:
            batch.mul_(self.scale)
        return batch

    def load(self, indices, preprocess: ImagePreprocess) -> torch.Tensor:
        return preprocess(self.raw(indices), where=self.name)


class _SeparateImages(Source):
    """Images of possibly different sizes, decoded one by one. A batch of one size is
    stacked and resized at once; mixed sizes are resized one by one instead."""

    items: list
    name: str = "X"

    def __len__(self) -> int:
        return len(self.items)

    def _decode(self, i: int):
        raise NotImplementedError

    def sides(self, rows) -> list[tuple[int, int]]:
        """(height, width) of ``rows``, each decoded (subclasses read headers only)."""
        return [tuple(self._tensor(int(i)).shape[-2:]) for i in rows]

    def _where(self, i: int) -> str:
        return f"{self.name} row {i}"

    def _tensor(self, i: int) -> torch.Tensor:
        """Row ``i`` as a float (1, C, H, W) tensor in [0, 1]."""
        arr = np.array(self._decode(i))
        t = torch.from_numpy(arr).float()
        if arr.dtype == np.uint8:  # float ("F") images are in [0, 1] already
            t.div_(255.0)
        return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]

    def load(self, indices, preprocess: ImagePreprocess) -> torch.Tensor:
        out, rows = [], [int(i) for i in indices]
        for i in rows:
            t = self._tensor(i)
            if preprocess.channels == 3 and t.shape[1] == 1:
                t = t.expand(-1, 3, -1, -1)
            out.append(t)
        # An image's model input must not depend on its batch neighbours: one size is
        # resized as a batch, mixed sizes one by one, and either way exactly once.
        mixed = len({t.shape for t in out}) > 1
        if mixed:
            out = [preprocess.resize_crop(t, where=self._where(i)) for i, t in zip(rows, out)]
        for what, of in (
            ("channels", lambda t: t.shape[1]),
            ("sizes", lambda t: tuple(t.shape[-2:])),
        ):
            first = of(out[0])
            odd = next((r for r, t in zip(rows, out) if of(t) != first), None)
            if odd is not None:
                fix = (
                    "set image_size so that all are resized to one size."
                    if what == "sizes"
                    else ("convert them to one mode (e.g. img.convert('RGB')).")
                )
                raise ValueError(
                    f"{self.name}: images of different {what} in one batch: row {rows[0]} has "
                    f"{first}, row {odd} has {of(out[rows.index(odd)])}; {fix}"
                )
        return preprocess(torch.cat(out), resized=mixed, where=self._where(rows[0]))


def _to_rgb_or_grey(img, *, where: str = "X"):
    """``img`` as an "L", "RGB" or "F" (float, checked to lie in [0, 1]) PIL image."""
    # Palette, CMYK, 16-bit and alpha images become RGB or grey; alpha is discarded, as
    # torchvision.io.read_image(mode=RGB) does.
    if img.mode in ("L", "RGB"):
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        from PIL import Image

        arr = np.asarray(img)
        # 16-bit images span 0..65535 (a 16-bit PNG reads as "I" in some Pillow versions);
        # other integer and float images follow the rules of numpy images, never scaled by
        # their own maximum (that would make a picture and its half-bright copy one image).
        if img.mode.startswith("I;16") or (img.mode == "I" and img.format == "PNG"):
            arr = np.clip(arr / 65535.0, 0, 1)
        else:
            is_float, lo, hi = img.mode == "F", arr.min(), arr.max()
            limit = 1 if is_float else 255
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ValueError(f"{where}: a mode 'F' PIL image contains NaN or infinity.")
            if lo < 0 or hi > limit:
                raise ValueError(
                    f"{where}: a mode {img.mode!r} PIL image spans [{lo}, {hi}]; "
                    f"{'float' if is_float else 'integer'} images must lie in [0, {limit}]. "
                    + (
                        "Scale it to [0, 1] yourself (dividing by a fixed maximum, the same "
                        "for every image), or convert it to 8 bits."
                        if is_float
                        else "Convert it to 8 bits (mode 'L') or to floats in [0, 1] (mode 'F')."
                    )
                )
            if is_float:
                return img
            arr = arr / 255.0
        return Image.fromarray((arr * 255).round().astype(np.uint8))
    if img.mode in ("1", "LA", "La"):
        return img.convert("L")
    return img.convert("RGB")


class PILImages(_SeparateImages):
    def __init__(self, items: Sequence, *, name: str = "X"):
        self.items = list(items)
        self.name = name

    def _compute_keys(self, rows) -> list[bytes]:
        items = self.items if rows is None else [self.items[i] for i in rows]
        return [_hash_bytes(f"{im.mode}{im.size}".encode(), im.tobytes()) for im in items]

    def _decode(self, i):
        return _to_rgb_or_grey(self.items[i], where=self._where(i))

    def sides(self, rows) -> list[tuple[int, int]]:
        return [self.items[int(i)].size[::-1] for i in rows]


class ArrayListImages(_SeparateImages):
    """A list of numpy images of different sizes: each row checked and read like an image
    array of its own, resized one by one (as PIL images of different sizes are)."""

    def __init__(self, items: Sequence, *, name: str = "X"):
        self.name = name
        self.items = []
        for i, a in enumerate(items):
            if np.ndim(a) not in (2, 3):
                raise ValueError(
                    f"{name} row {i} has shape {np.shape(a)}; each image must be (H, W) grey, "
                    "(H, W, C) or (C, H, W)."
                )
            self.items.append(
                ArrayImages(np.asarray(a)[None], name=f"{name} row {i}", warn_binary=False)
            )
        if all(im.X.dtype == np.uint8 and im.X.max() <= 1 for im in self.items):
            _warn_if_binary(np.zeros(1, np.uint8), name=name)

    def _compute_keys(self, rows) -> list[bytes]:
        rows = range(len(self.items)) if rows is None else rows
        return [self.items[int(i)].row_keys()[0] for i in rows]

    def _tensor(self, i: int) -> torch.Tensor:
        return self.items[i].raw([0])

    def sides(self, rows) -> list[tuple[int, int]]:
        return [self.items[int(i)].sides([0])[0] for i in rows]


class PathImages(_SeparateImages):
    """Image files, decoded lazily batch by batch; never all held in memory."""

    def __init__(self, items: Sequence, *, name: str = "X"):
        self.items = [os.fspath(p) for p in items]
        self.name = name
        for i, p in enumerate(self.items):
            if os.path.isdir(p):
                raise ValueError(
                    f"{name} row {i}: {p!r} is a directory, not an image file; pass the paths "
                    f"of the images in it (e.g. sorted(glob.glob(os.path.join({p!r}, '*.png'))))."
                )
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{name} row {i}: image file not found: {p!r}")

    def _compute_keys(self, rows) -> list[bytes]:
        keys = []
        for p in self.items if rows is None else [self.items[i] for i in rows]:
            # mtime alone misses a file rewritten with its mtime restored (cp -p, rsync -t,
            # tar -x); the ctime cannot be set back and the inode changes on a replace. Not
            # st_dev: machines mounting one NFS share number it differently, and share keys.
            st = os.stat(p)
            stamp = f"{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"
            keys.append(_hash_bytes(f"{os.path.abspath(p)}|{stamp}".encode()))
        return keys

    def _where(self, i: int) -> str:
        return f"{self.name} row {i} ({self.items[i]!r})"

    def sides(self, rows) -> list[tuple[int, int]]:
        from PIL import Image

        out = []
        for i in rows:
            try:
                with Image.open(self.items[int(i)]) as img:  # the header only
                    out.append(img.size[::-1])
            except Exception:  # the file's own error comes with its row when it is decoded
                out.append(tuple(self._tensor(int(i)).shape[-2:]))
        return out

    def _decode(self, i):
        from PIL import Image, ImageOps, UnidentifiedImageError

        path = self.items[i]
        try:
            with Image.open(path) as img:
                img.load()
                # A phone photo stores its pixels as the sensor saw them and the way to
                # hold it in its EXIF orientation tag: read it upright, as viewers show it.
                upright = ImageOps.exif_transpose(img)
                upright.format = img.format
        except Image.DecompressionBombError as exc:
            raise ValueError(
                f"{self.name} row {i}: image file {path!r} is too large to decode safely: {exc} "
                "Downsize the file, or, if you trust it, raise PIL.Image.MAX_IMAGE_PIXELS."
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ValueError(
                f"{self.name} row {i}: cannot read image file {path!r}: {exc}"
            ) from None
        return _to_rgb_or_grey(upright, where=self._where(i))


def short_side(source, sample: int = 32) -> int | None:
    """The largest shorter side (px) among up to ``sample`` rows spread over an image
    source, or None for a source of anything else (text, tables, features)."""
    while hasattr(source, "source") and hasattr(source, "rows"):  # a Subset
        source = source.source
    if not hasattr(source, "sides") or len(source) == 0:
        return None
    rows = np.unique(np.linspace(0, len(source) - 1, num=min(sample, len(source))).astype(int))
    return max(min(hw) for hw in source.sides(rows))


def _check_uniform_elements(items: Sequence, *, name: str) -> str:
    """'pil', 'path', 'array' or 'str' for a non-empty sequence of one kind, else a TypeError."""

    def kind(obj):
        if _is_pil(obj):
            return "pil"
        if _is_pathlike(obj):
            return "path"
        if isinstance(obj, np.ndarray):
            return "array"
        return None

    first = kind(items[0])
    for i, obj in enumerate(items):
        k = kind(obj)
        if k is None:
            raise TypeError(
                f"{name} row {i} is a {_type_name(obj)} ({obj!r:.40}); expected image file "
                "paths, PIL images or numpy arrays."
            )
        if k != first:
            raise TypeError(
                f"{name} mixes element types: row 0 is a {_type_name(items[0])}, row {i} is a "
                f"{_type_name(obj)}. Pass one kind of image."
            )
    return first


def as_images(X, *, name: str = "X"):
    """The image source for ``X``, or a clear ``ValueError``/``TypeError``."""
    X = _unwrap_pandas(X, name=name)
    if isinstance(X, (ArrayImages, PILImages, PathImages, ArrayListImages)):
        return X
    if _is_pil(X) or _is_pathlike(X):
        raise TypeError(f"{name} is a single image; pass a list of images (e.g. [{name}]).")
    channels_last = True
    if isinstance(X, torch.Tensor):
        channels_last = False  # torch's own layout is (N, C, H, W)
        X = X.detach().cpu()
        X = (X.float() if X.is_floating_point() and X.dtype != torch.float64 else X).numpy()
    if isinstance(X, np.ndarray) and X.dtype != object and X.dtype.kind not in "US":
        if len(X) == 0:
            raise ValueError(f"{name} is empty: 0 images were given.")
        return ArrayImages(X, name=name, channels_last_hint=channels_last)
    if isinstance(X, np.ndarray):
        if X.ndim != 1:
            raise ValueError(f"{name} is an object array of shape {X.shape}; expected 1-D.")
        X = X.tolist()
    if not isinstance(X, Sequence) or isinstance(X, (str, bytes)):
        raise TypeError(
            f"{name} is a {type(X).__name__}; expected a numpy image array, a list of PIL images "
            "or of image file paths, or a pandas Series/one-column DataFrame of paths."
        )
    if len(X) == 0:
        raise ValueError(f"{name} is empty: 0 images were given.")
    kind = _check_uniform_elements(X, name=name)
    if kind == "pil":
        return PILImages(X, name=name)
    if kind == "path":
        return PathImages(X, name=name)
    if len({np.shape(a) for a in X}) > 1:
        return ArrayListImages(X, name=name)
    return ArrayImages(np.stack(X), name=name)
