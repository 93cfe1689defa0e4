"""Turn whatever the user holds into batches a backbone can eat.

This is the only module that inspects raw ``X``. Each kind of input becomes a
*source* with ``len()``, ``row_keys()`` (content hashes for the feature cache)
and ``load(indices)`` (a float32 batch). Errors name the offending row or path.
"""

from __future__ import annotations

import hashlib
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _is_pil(obj) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a hard dependency
        return False
    return isinstance(obj, Image.Image)


def _is_pathlike(obj) -> bool:
    return isinstance(obj, (str, os.PathLike))


def _type_name(obj) -> str:
    if _is_pil(obj):
        return "PIL.Image"
    return type(obj).__name__


def _unwrap_pandas(X, *, name: str):
    """A one-column DataFrame or a Series becomes a plain 1-D sequence."""
    cls = type(X).__name__
    module = type(X).__module__
    if not module.startswith("pandas"):
        return X
    if cls == "DataFrame":
        if X.shape[1] != 1:
            raise ValueError(
                f"{name} is a DataFrame with {X.shape[1]} columns; pass a single column "
                "(e.g. df[['photo']]), or route each column through a ColumnTransformer."
            )
        X = X.iloc[:, 0]
    if type(X).__name__ == "Series":
        return X.to_numpy(dtype=object)
    return X


def _hash_bytes(*chunks: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for c in chunks:
        h.update(c)
    return h.digest()


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
            resize=int(round(min(h, w) * ratio)),
            mean=self.mean,
            std=self.std,
            interpolation=self.interpolation,
            channels=self.channels,
        )

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Float batch (B, C, H, W) in [0, 1], all one size -> model input."""
        if self.channels == 3 and batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        elif self.channels is not None and batch.shape[1] != self.channels:
            raise ValueError(
                f"images have {batch.shape[1]} channels; this backbone expects {self.channels}."
            )
        batch = self.resize_crop(batch)
        if self.mean is not None:
            mean = torch.tensor(self.mean, dtype=batch.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=batch.dtype).view(1, -1, 1, 1)
            batch = (batch - mean) / std
        return batch.contiguous()

    def resize_crop(self, batch: torch.Tensor) -> torch.Tensor:
        h, w = batch.shape[-2:]
        if self.resize is not None and min(h, w) != self.resize:
            scale = self.resize / min(h, w)
            size = (max(1, int(round(h * scale))), max(1, int(round(w * scale))))
            mode = self.interpolation if self.interpolation in ("bilinear", "bicubic") else "nearest"
            kw = {"antialias": True, "align_corners": False} if mode != "nearest" else {}
            batch = F.interpolate(batch, size=size, mode=mode, **kw)
            if mode == "bicubic":
                batch = batch.clamp_(0.0, 1.0)
        if self.crop is not None:
            ch, cw = self.crop
            h, w = batch.shape[-2:]
            if h < ch or w < cw:
                raise ValueError(
                    f"image of {h}x{w} px is smaller than the {ch}x{cw} crop; set a resize."
                )
            top, left = (h - ch) // 2, (w - cw) // 2
            batch = batch[..., top : top + ch, left : left + cw]
        return batch


class ArrayImages:
    """An in-memory (N, C, H, W) view of a numpy image array."""

    def __init__(self, X: np.ndarray, *, name: str = "X"):
        if X.ndim == 3:
            X = X[:, None, :, :]
        elif X.ndim == 4:
            if X.shape[-1] in (1, 3) and X.shape[1] not in (1, 3):
                X = X.transpose(0, 3, 1, 2)
            elif X.shape[1] in (1, 3):
                pass
            else:
                raise ValueError(
                    f"{name} has shape {X.shape}: cannot find a channel axis of size 1 or 3. "
                    "Images must be (N, H, W) grey, (N, H, W, C) or (N, C, H, W) with C in {1, 3}"
                    + ("; drop the alpha channel with X[..., :3]." if X.shape[-1] == 4 else ".")
                )
        else:
            raise ValueError(
                f"{name} has {X.ndim} dimensions (shape {X.shape}); image arrays must be "
                "(N, H, W) grey, (N, H, W, C) or (N, C, H, W). A 2-D (n_samples, n_features) "
                "table needs a tabular backbone (an nn.Module taking vectors)."
            )
        if X.dtype == np.bool_ or not np.issubdtype(X.dtype, np.number):
            raise TypeError(f"{name} has dtype {X.dtype}; image arrays must be uint8 or float.")
        if np.issubdtype(X.dtype, np.complexfloating):
            raise TypeError(f"{name} is complex; image arrays must be uint8 or float.")
        if np.issubdtype(X.dtype, np.floating):
            bad = ~np.isfinite(X).reshape(len(X), -1).all(axis=1)
            if bad.any():
                raise ValueError(f"{name} contains NaN or infinity at row {int(np.argmax(bad))}.")
            self.scale = 1.0
            limit = 1.0
        else:
            self.scale = 1.0 / 255.0
            limit = 255
        flat = X.reshape(len(X), -1)
        out = (flat.min(axis=1) < 0) | (flat.max(axis=1) > limit)
        if out.any():
            row = int(np.argmax(out))
            kind = "float images must lie in [0, 1]" if limit == 1.0 else "integer images must lie in [0, 255]"
            raise ValueError(
                f"{name}: {kind}; row {row} spans [{flat[row].min()}, {flat[row].max()}]. "
                + ("Divide by 255 (or by the maximum) or pass uint8." if limit == 1.0 else "")
            )
        self.X = X

    def __len__(self) -> int:
        return len(self.X)

    @property
    def channels(self) -> int:
        return self.X.shape[1]

    def row_keys(self) -> list[bytes]:
        meta = f"{self.X.dtype}{self.X.shape[1:]}".encode()
        return [_hash_bytes(meta, np.ascontiguousarray(r).tobytes()) for r in self.X]

    def load(self, indices, preprocess: ImagePreprocess) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(self.X[indices])).float()
        if self.scale != 1.0:
            batch.mul_(self.scale)
        return preprocess(batch)


class _SeparateImages:
    """Images of possibly different sizes, decoded and resized one by one."""

    items: list

    def __len__(self) -> int:
        return len(self.items)

    def _decode(self, i: int):
        raise NotImplementedError

    def load(self, indices, preprocess: ImagePreprocess) -> torch.Tensor:
        out = []
        for i in indices:
            img = self._decode(int(i))
            arr = np.asarray(img)
            t = torch.from_numpy(arr.copy()).float().div_(255.0)
            t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
            out.append(preprocess.resize_crop(t) if preprocess.resize or preprocess.crop else t)
        sizes = {tuple(t.shape[-2:]) for t in out}
        if len(sizes) > 1:
            raise ValueError(
                f"images in this batch have different sizes {sorted(sizes)}; set image_size so "
                "they can be resized to one size."
            )
        batch = torch.cat(out)
        return preprocess(batch)


def _to_rgb_or_grey(img):
    # Palette, CMYK, 16-bit and alpha images become RGB; alpha is discarded, as
    # torchvision.io.read_image(mode=RGB) does.
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in ("I;16", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        from PIL import Image

        hi = arr.max() or 1.0
        return Image.fromarray((arr / hi * 255).astype(np.uint8), mode="L")
    return img.convert("RGB")


class PILImages(_SeparateImages):
    def __init__(self, items: Sequence):
        self.items = list(items)

    def row_keys(self) -> list[bytes]:
        return [_hash_bytes(f"{im.mode}{im.size}".encode(), im.tobytes()) for im in self.items]

    def _decode(self, i):
        return _to_rgb_or_grey(self.items[i])


class PathImages(_SeparateImages):
    """Image files, decoded lazily batch by batch; never all held in memory."""

    def __init__(self, items: Sequence, *, name: str = "X"):
        self.items = [os.fspath(p) for p in items]
        for i, p in enumerate(self.items):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{name} row {i}: image file not found: {p!r}")

    def row_keys(self) -> list[bytes]:
        keys = []
        for p in self.items:
            st = os.stat(p)
            keys.append(_hash_bytes(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}".encode()))
        return keys

    def _decode(self, i):
        from PIL import Image, UnidentifiedImageError

        path = self.items[i]
        try:
            with Image.open(path) as img:
                img.load()
                return _to_rgb_or_grey(img)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ValueError(f"row {i}: cannot read image file {path!r}: {exc}") from None


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
                f"{name} row {i} is a {_type_name(obj)}; expected image file paths, PIL images "
                "or numpy arrays."
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
    if isinstance(X, (ArrayImages, PILImages, PathImages)):
        return X
    if _is_pil(X) or _is_pathlike(X):
        raise TypeError(f"{name} is a single image; pass a list of images (e.g. [{name}]).")
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if isinstance(X, np.ndarray) and X.dtype != object and X.dtype.kind not in "US":
        if len(X) == 0:
            raise ValueError(f"{name} is empty: 0 images were given.")
        return ArrayImages(X, name=name)
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
        return PILImages(X)
    if kind == "path":
        return PathImages(X, name=name)
    shapes = {np.shape(a) for a in X}
    if len(shapes) > 1:
        raise ValueError(f"{name} is a list of arrays of different shapes {sorted(shapes)[:3]}.")
    return ArrayImages(np.stack(X), name=name)


# --------------------------------------------------------------------------- tables


class TabularRows:
    """A validated 2-D float table (sklearn's ``check_array`` has already run)."""

    def __init__(self, X: np.ndarray):
        self.X = np.asarray(X, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.X)

    def row_keys(self) -> list[bytes]:
        meta = f"f32{self.X.shape[1]}".encode()
        return [_hash_bytes(meta, r.tobytes()) for r in self.X]

    def load(self, indices, preprocess=None) -> torch.Tensor:
        return torch.from_numpy(self.X[indices])


# --------------------------------------------------------------------------- text


class TextRows:
    """A list of strings for text backbones; tokenised by the backbone, batch by batch."""

    def __init__(self, items: Sequence[str]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def row_keys(self) -> list[bytes]:
        return [_hash_bytes(b"text", s.encode("utf-8", "surrogatepass")) for s in self.items]

    def load(self, indices, preprocess=None) -> list[str]:
        return [self.items[int(i)] for i in indices]


def as_text(X, *, name: str = "X", missing: str = "raise") -> TextRows:
    """The text source for ``X``: strings only; ``missing="empty"`` maps None/NaN to ''."""
    X = _unwrap_pandas(X, name=name)
    if isinstance(X, str):
        raise TypeError(f"{name} is a single string; pass a list of strings (e.g. [{name}]).")
    if isinstance(X, np.ndarray):
        if X.ndim != 1:
            raise ValueError(f"{name} has shape {X.shape}; text input must be 1-D (one string a row).")
        X = X.tolist()
    if not isinstance(X, Sequence):
        raise TypeError(f"{name} is a {type(X).__name__}; expected a list/array/Series of strings.")
    if len(X) == 0:
        raise ValueError(f"{name} is empty: 0 texts were given.")
    out = []
    for i, s in enumerate(X):
        is_missing = s is None or (isinstance(s, numbers.Real) and s != s)
        if is_missing:
            if missing == "empty":
                out.append("")
                continue
            raise ValueError(
                f"{name} row {i} is missing ({s!r}); fill it, or pass missing='empty' to embed "
                "it as an empty string."
            )
        if not isinstance(s, str):
            raise TypeError(f"{name} row {i} is a {type(s).__name__} ({s!r:.40}); expected a string.")
        out.append(s)
    return TextRows(out)


def looks_like_images(X) -> bool:
    """True when ``X`` holds images (>= 3-D numeric arrays, PIL images, paths)."""
    if type(X).__name__ == "DataFrame" and X.shape[1] != 1:
        return False
    X = _unwrap_pandas(X, name="X")
    if isinstance(X, torch.Tensor):
        return X.ndim >= 3
    if isinstance(X, np.ndarray) and X.dtype != object and X.dtype.kind not in "US":
        return X.ndim >= 3
    if isinstance(X, (list, tuple, np.ndarray)) and len(X) > 0:
        first = X[0]
        if _is_pil(first):
            return True
        if isinstance(first, np.ndarray):
            return first.ndim >= 2
        if _is_pathlike(first):
            return str(first).lower().endswith(_IMAGE_SUFFIXES)
    return False
