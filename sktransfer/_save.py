"""``save`` / ``load``: a fitted estimator in a file that runs no code when loaded.

The file is a zip archive of two members: ``sktransfer.json`` (the format and its
version, the package versions that wrote it, every estimator's parameters and fitted
state as plain JSON) and ``tensors.safetensors`` (every weight and numeric array).
Loading reads JSON and safetensors only: no pickle, no ``torch.load``. The classes a file
may name are an explicit list (the sktransfer estimators, a few scikit-learn heads and
preprocessors, plain ``torch.nn`` layers); the networks are rebuilt from the
estimator's own parameters (a registered backbone by name, with ``weights=None``, so no
pretrained file is read) and the saved weights loaded into them.
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import platform
import zipfile

import numpy as np
import torch
from torch.nn.parameter import UninitializedTensorMixin

from ._save_modules import ModuleRefused, decode_module, encode_module
from ._save_types import (
    ESTIMATORS,
    JOBLIB_HINT,
    UnsavableError,
    sklearn_class,
    sklearn_name,
)

FORMAT = "sktransfer-safe"
FORMAT_VERSION = 1
_JSON, _TENSORS = "sktransfer.json", "tensors.safetensors"


def _safetensors(part: str):
    try:
        return importlib.import_module(f"safetensors.{part}")
    except ImportError:
        raise ImportError(
            "sktransfer.save and load need the package 'safetensors': "
            "pip install 'sktransfer[export]'"
        ) from None


def _versions() -> dict:
    import sklearn

    import sktransfer

    out = {
        "sktransfer": sktransfer.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "torch": torch.__version__,
    }
    for mod in ("skorch", "safetensors", "timm", "transformers"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except ImportError:
            pass
    return out


# --------------------------------------------------------------------------- writing


class _Writer:
    """Turns values into JSON, collecting arrays and state dicts into one tensor dict."""

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}
        self.n_estimators = 0

    def refuse(self, where: str, why: str):
        raise UnsavableError(f"sktransfer.save cannot store {where}: {why}. {JOBLIB_HINT}")

    def array(self, a: np.ndarray) -> str:
        key = f"arrays.{len(self.tensors)}"
        a = np.ascontiguousarray(a)
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        self.tensors[key] = torch.from_numpy(a.copy())
        return key

    def state(self, prefix: str, module: torch.nn.Module) -> dict:
        """Store ``module``'s state dict under ``prefix``; a tensor tied under several
        names (a branched body's shared layers) is stored once, the others are aliases."""
        seen, aliases, lazy = {}, {}, []
        for name, t in module.state_dict(keep_vars=False).items():
            if isinstance(t, UninitializedTensorMixin):
                lazy.append(name)  # a lazy layer never run (a spec): nothing to store
                continue
            ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
            if ident in seen and t.numel():
                aliases[name] = seen[ident]
                continue
            seen[ident] = name
            self.tensors[prefix + name] = t.detach().to("cpu", copy=True).contiguous()
        return {"prefix": prefix, "aliases": aliases, "lazy": lazy}

    def value(self, v, where: str):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, np.generic):
            if v.dtype.kind not in "biufUS":
                self.refuse(where, f"a numpy scalar of dtype {v.dtype}")
            return {"$scalar": v.dtype.str, "v": v.item() if v.dtype.kind != "S" else v.decode()}
        if isinstance(v, (int, float)):
            return v
        if isinstance(v, np.ndarray):
            if v.dtype.kind in "biuf":
                return {"$array": self.array(v)}
            if v.dtype.kind in "UO":
                items = [self.value(x, f"{where}[{i}]") for i, x in enumerate(v.ravel().tolist())]
                return {"$items": v.dtype.str, "shape": list(v.shape), "items": items}
            self.refuse(where, f"an array of dtype {v.dtype}")
        if isinstance(v, list):
            return [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, tuple):
            return {"$tuple": [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, dict):
            return {
                "$dict": [
                    [self.value(k, f"{where} key"), self.value(x, f"{where}[{k!r}]")]
                    for k, x in v.items()
                ]
            }
        if isinstance(v, torch.device):
            return {"$device": str(v)}
        if isinstance(v, np.dtype) and v.kind in "biufUSO":
            return {"$dtype": v.str}
        if isinstance(v, os.PathLike):
            return {"$path": os.fspath(v)}
        if isinstance(v, np.random.RandomState):
            return {"$random_state": self.value(v.get_state(), where)}
        from .inputs import ImagePreprocess

        if isinstance(v, ImagePreprocess):
            fields = ("crop", "resize", "mean", "std", "interpolation", "channels")
            return {"$preprocess": {f: self.value(getattr(v, f), where) for f in fields}}
        if type(v).__name__ in ESTIMATORS and type(v).__module__ == ESTIMATORS[type(v).__name__]:
            return {"$estimator": _encode_estimator(v, self, where)}
        if isinstance(v, torch.nn.Module):
            try:
                arch = encode_module(v, where)
            except ModuleRefused as exc:
                self.refuse(where, str(exc))
            self.n_estimators += 1
            return {"$module": arch, "state": self.state(f"m{self.n_estimators}.", v)}
        name = sklearn_name(v)
        if name is not None:
            state = [[k, self.value(x, f"{where}.{k}")] for k, x in v.__getstate__().items()]
            return {"$sklearn": name, "state": {"$dict": state}}
        kind = f"{type(v).__module__}.{type(v).__qualname__}"
        if hasattr(v, "fit") and hasattr(v, "get_params"):
            self.refuse(
                where,
                f"a {kind}, which is not on the safe format's list of trusted scikit-learn "
                "classes (sktransfer.trusted_types())",
            )
        self.refuse(where, f"a {kind} object ({v!r:.60}), which JSON cannot describe")


def _encode_estimator(est, w: _Writer, where: str) -> dict:
    name = type(est).__name__
    w.n_estimators += 1
    prefix = f"e{w.n_estimators}."
    params = est.get_params(deep=False)
    out = {
        "class": name,
        "params": {k: w.value(v, f"{name}({k}=...)") for k, v in params.items()},
    }
    skip = set(params) | {"_fitted_spec", "module_", "net_", "backbone_", "features_"}
    out["state"] = {k: w.value(v, f"{name}.{k}") for k, v in est.__dict__.items() if k not in skip}
    finetune = "net_" in est.__dict__
    if "backbone_" in est.__dict__:
        features = est.__dict__.get("features_")
        if features is not None and features.backbone_ is est.backbone_:
            out["features"] = _encode_estimator(features, w, f"{name}.features_")
        else:
            out["backbone"] = _encode_backbone(est, w, prefix, store_module=not finetune)
    if finetune:
        model = est.module_
        out["module"] = w.state(prefix + "module.", model)
        out["keep_eval"] = list(model.keep_eval)
        out["batchnorm_eval"] = bool(model.batchnorm_eval)
        out["history"] = w.value([dict(row) for row in est.net_.history], f"{name}.net_.history")
    return out


def _encode_backbone(est, w: _Writer, prefix: str, store_module: bool) -> dict:
    bb = est.backbone_
    name = type(est).__name__
    out = {
        "name": bb.name,
        "modality": bb.modality,
        "preprocess": w.value(bb.preprocess, f"{name}.backbone_.preprocess"),
        "dim": bb.dim,
        "fingerprint": bb.fingerprint,
        "native_size": bb.native_size,
        "head": None if bb.head is None else w.state(prefix + "source_head.", bb.head),
    }
    if isinstance(est.backbone, torch.nn.Module):
        try:
            out["architecture"] = encode_module(bb.module, f"{name}.backbone_.module")
        except ModuleRefused as exc:
            w.refuse(f"{name}(backbone=...)", f"{exc}")
    if store_module:
        out["module"] = w.state(prefix + "backbone.", bb.module)
    return out


def save(estimator, path) -> None:
    """Write ``estimator`` to ``path`` in a format that runs no code when loaded.

    Tensors go to safetensors, the parameters and fitted state to JSON, with the
    format's version and the versions of the packages that wrote it. What cannot be
    described without code (a backbone given as a custom ``nn.Module`` class, a head
    outside ``trusted_types()``, a callable parameter) is refused with an error naming
    it; such a model can still be pickled with joblib.

    Parameters
    ----------
    estimator : FineTuneClassifier, FineTuneRegressor, MultiTaskFineTune, \
FeatureTransferClassifier, FeatureTransferRegressor, PretrainedFeatures or an adaptation \
wrapper (CORAL, ImportanceWeighting, SourceWeighted, TrAdaBoost*, AdaBN, TENT, SHOT)
        Fitted or not; what it wraps must be savable too.
    path : str or path-like
        The file to write (a zip archive; ``.skt`` by convention).

    See Also
    --------
    load : read it back.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from torch import nn
    >>> import sktransfer
    >>> X = np.random.RandomState(0).randn(40, 4)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> clf = sktransfer.FeatureTransferClassifier(nn.Sequential(nn.Linear(4, 8)), random_state=0)
    >>> clf = clf.fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.skt")
    >>> sktransfer.save(clf, path)
    >>> loaded = sktransfer.load(path)
    >>> bool((loaded.predict_proba(X) == clf.predict_proba(X)).all())
    True
    """
    save_tensors = _safetensors("torch").save
    name = type(estimator).__name__
    w = _Writer()
    if ESTIMATORS.get(name) == type(estimator).__module__:
        encoded = _encode_estimator(estimator, w, name)
    elif (sklearn_name(estimator) or "").startswith("sktransfer.adaptation."):
        encoded = w.value(estimator, name)
    else:
        raise UnsavableError(
            f"sktransfer.save takes one of {', '.join(ESTIMATORS)} or an adaptation "
            f"wrapper of sktransfer.adaptation; got a "
            f"{type(estimator).__module__}.{type(estimator).__qualname__}. {JOBLIB_HINT}"
        )
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": _versions(),
        "estimator": encoded,
    }
    text = json.dumps(doc, separators=(",", ":"), allow_nan=True)
    blob = save_tensors(w.tensors, metadata={"format": FORMAT})
    with zipfile.ZipFile(os.fspath(path), "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(_JSON, text)
        zf.writestr(_TENSORS, blob)


# --------------------------------------------------------------------------- reading


class _Reader:
    def __init__(self, tensors: dict):
        self.tensors = tensors

    def state(self, ref: dict) -> dict:
        prefix = ref["prefix"]
        out = {k[len(prefix) :]: t for k, t in self.tensors.items() if k.startswith(prefix)}
        for alias, name in ref["aliases"].items():
            out[alias] = out[name]
        return out

    def load_into(self, module: torch.nn.Module, ref: dict, where: str) -> None:
        lazy = set(ref.get("lazy", ()))
        try:
            result = module.load_state_dict(self.state(ref), strict=not lazy)
            problem = result.unexpected_keys or sorted(set(result.missing_keys) - lazy)
            if problem:
                raise RuntimeError(f"missing or unexpected weights {problem[:5]}")
        except RuntimeError as exc:
            raise ValueError(
                f"the file's weights of {where} do not fit the network rebuilt from its "
                f"parameters: {' '.join(str(exc).split())[:300]}"
            ) from None

    def value(self, v, where: str):
        if not isinstance(v, (dict, list)):
            return v
        if isinstance(v, list):
            return [self.value(x, where) for x in v]
        if "$array" in v:
            return self.tensors[v["$array"]].numpy().copy()
        if "$scalar" in v:
            return np.array(v["v"], dtype=np.dtype(v["$scalar"]))[()]
        if "$items" in v:
            items = [self.value(x, where) for x in v["items"]]
            dtype = np.dtype(v["$items"])
            if dtype.kind == "O":
                out = np.empty(len(items), dtype=object)
                out[:] = items
            else:
                out = np.array(items, dtype=dtype)
            return out.reshape(v["shape"])
        if "$tuple" in v:
            return tuple(self.value(x, where) for x in v["$tuple"])
        if "$dict" in v:
            return {_hashable(self.value(k, where)): self.value(x, where) for k, x in v["$dict"]}
        if "$device" in v:
            return torch.device(v["$device"])
        if "$dtype" in v:
            return np.dtype(v["$dtype"])
        if "$path" in v:
            return pathlib.Path(v["$path"])
        if "$random_state" in v:
            rng = np.random.RandomState()
            rng.set_state(self.value(v["$random_state"], where))
            return rng
        if "$preprocess" in v:
            from .inputs import ImagePreprocess

            return ImagePreprocess(**{k: self.value(x, where) for k, x in v["$preprocess"].items()})
        if "$estimator" in v:
            return _decode_estimator(v["$estimator"], self)
        if "$module" in v:
            module = decode_module(v["$module"], where)
            self.load_into(module, v["state"], where)
            return module
        if "$sklearn" in v:
            cls = sklearn_class(v["$sklearn"], where)
            obj = cls.__new__(cls)
            obj.__setstate__(self.value(v["state"], v["$sklearn"]))
            return obj
        raise ValueError(f"the file's {where} holds an entry this version cannot read: {v!r:.80}")


def _hashable(k):
    return k.item() if isinstance(k, np.ndarray) and k.ndim == 0 else k


def _estimator_class(name: str):
    if name not in ESTIMATORS:
        raise ValueError(
            f"the file names the estimator class {name!r}, which sktransfer.load does not "
            f"load (it loads {', '.join(ESTIMATORS)})."
        )
    return getattr(importlib.import_module(ESTIMATORS[name]), name)


def _decode_estimator(doc: dict, r: _Reader):
    name = doc["class"]
    cls = _estimator_class(name)
    params = {k: r.value(v, f"{name}({k}=...)") for k, v in doc["params"].items()}
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise ValueError(
            f"the file's {name} has parameters {unknown} that this version's {name} does "
            "not take: it was written by another version of sktransfer."
        )
    est = cls(**params)
    for k, v in doc["state"].items():
        setattr(est, k, r.value(v, f"{name}.{k}"))
    device = est.__dict__.get("device_")
    if isinstance(device, torch.device) and device.type == "cuda" and not torch.cuda.is_available():
        est.device_ = torch.device("cpu")  # a GPU-fitted model on a CPU-only machine
    if "features" in doc:
        est.features_ = _decode_estimator(doc["features"], r)
        est.backbone_ = est.features_.backbone_
    elif "backbone" in doc:
        est.backbone_ = _decode_backbone(est, doc["backbone"], r)
    if "module" in doc:
        _decode_finetune(est, doc, r)
    return est


def _decode_backbone(est, doc: dict, r: _Reader):
    from .backbones import Backbone, resolve_backbone

    name = type(est).__name__
    if "architecture" in doc:
        bb = Backbone(
            module=decode_module(doc["architecture"], f"{name}.backbone_.module"),
            modality=doc["modality"],
            preprocess=None,
            name=doc["name"],
        )
    else:
        # weights=None: the architecture alone, initialised at random and overwritten by
        # the saved weights next; no pretrained file is read.
        bb = resolve_backbone(
            est.backbone,
            weights=None,
            layer=est.layer,
            pooling=est.pooling,
            random_state=0,
            image_size=est.image_size,
            max_length=est.max_length,
        )
    bb.modality = doc["modality"]
    bb.preprocess = r.value(doc["preprocess"], f"{name}.backbone_.preprocess")
    bb.dim, bb.native_size = doc["dim"], doc["native_size"]
    if doc["head"] is None:
        bb.head = None
    elif bb.head is not None:
        r.load_into(bb.head, doc["head"], f"{name}.backbone_.head")
    if "module" in doc:
        r.load_into(bb.module, doc["module"], f"{name}.backbone_.module")
    bb.module.eval()
    bb.fingerprint = doc["fingerprint"]
    return bb


def _decode_finetune(est, doc: dict, r: _Reader) -> None:
    from skorch.history import History

    from .training import TransferModel, drop_training_state, first_branch, make_net

    name = type(est).__name__
    bb = est.backbone_
    model = TransferModel(est._make_body(bb), est._make_head(bb.dim))
    r.load_into(model, doc["module"], f"{name}.module_")
    bb.module = first_branch(model.body)
    est._fitted_spec = est.backbone
    est.module_ = model
    net = make_net(est._plan(None, epochs=1), model, tasks=est._tasks(), max_epochs=1)
    net.initialize()
    drop_training_state(net)
    net.history = History(r.value(doc["history"], f"{name}.net_.history"))
    model.keep_eval = tuple(doc["keep_eval"])
    model.batchnorm_eval = doc["batchnorm_eval"]
    model.to(est.device_).eval()
    est.net_ = net


def load(path):
    """Read an estimator written by ``save``; runs no code from the file.

    Networks are rebuilt from the estimator's parameters (a registered backbone by its
    name, without reading its pretrained weights; a ``torch.nn`` body from its layers)
    and the saved weights loaded into them, on the CPU unless the estimator was fitted
    on a GPU and one is available.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    estimator

    See Also
    --------
    save

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> import sktransfer
    >>> X = np.random.RandomState(0).randn(30, 4)
    >>> reg = sktransfer.FeatureTransferRegressor(nn.Sequential(nn.Linear(4, 3)), random_state=0)
    >>> reg = reg.fit(X, X[:, 0])
    >>> sktransfer.save(reg, "model.skt")
    >>> loaded = sktransfer.load("model.skt")
    >>> bool(np.array_equal(loaded.predict(X), reg.predict(X)))
    True
    """
    load_tensors = _safetensors("torch").load
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if not {_JSON, _TENSORS} <= names:
                raise ValueError(
                    f"{path} is a zip archive but not an sktransfer.save file (it lacks "
                    f"{sorted({_JSON, _TENSORS} - names)})."
                )
            doc = json.loads(zf.read(_JSON))
            blob = zf.read(_TENSORS)
    except zipfile.BadZipFile:
        raise ValueError(
            f"{path} is not an sktransfer.save file (not a zip archive); a joblib or pickle "
            "file loads with joblib.load, which runs code: only for files you trust."
        ) from None
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not an sktransfer.save file (format {doc.get('format')!r}).")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        wrote = doc.get("versions", {}).get("sktransfer", "?")
        raise ValueError(
            f"{path} is in format version {version} (written by sktransfer {wrote}); this "
            f"sktransfer reads versions up to {FORMAT_VERSION}: upgrade sktransfer."
        )
    reader, top = _Reader(load_tensors(blob)), doc["estimator"]
    if "class" in top:
        return _decode_estimator(top, reader)
    return reader.value(top, "estimator")


def read_versions(path) -> dict:
    """The package versions a saved file was written with."""
    with zipfile.ZipFile(os.fspath(path)) as zf:
        return json.loads(zf.read(_JSON))["versions"]
