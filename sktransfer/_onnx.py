"""``to_onnx``: a fitted estimator as one ONNX graph, for serving without Python.

The network goes through torch's TorchScript-based exporter (``dynamo=False``: the
dynamo one needs onnxscript besides), a scikit-learn head through skl2onnx, and the two
are merged into one graph with ``onnx.compose``. The normalisation the estimator applies
to images (and grey → RGB) is in the graph; resizing and centre-cropping are not (the
antialiased resize has no exact ONNX form): the graph takes images already at the crop
size, which ``onnx_inputs`` computes from raw X as ``predict`` would.
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings

import numpy as np
import torch
from torch import nn

_OPSET = 17  # onnxruntime >= 1.13 runs it; skl2onnx's converters target it as well
_EXTRA = "pip install 'sktransfer[export]'"


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"ONNX export needs the optional package {module!r}: {_EXTRA}") from None


def _family(est) -> str:
    from .feature_transfer import FeatureTransferClassifier, FeatureTransferRegressor
    from .features import PretrainedFeatures
    from .finetune import FineTuneClassifier, FineTuneRegressor

    if isinstance(est, (FineTuneClassifier, FineTuneRegressor)):
        return "finetune"
    if isinstance(est, (FeatureTransferClassifier, FeatureTransferRegressor)):
        return "feature_transfer"
    if isinstance(est, PretrainedFeatures):
        return "features"
    raise TypeError(
        f"to_onnx exports FineTuneClassifier, FineTuneRegressor, FeatureTransferClassifier, "
        f"FeatureTransferRegressor and PretrainedFeatures; got a {type(est).__name__}."
    )


def _modality(est) -> str:
    features = est.__dict__.get("features_")
    return features.modality_ if features is not None else est.modality_


def onnx_inputs(estimator, X):
    """What the graph of ``to_onnx(estimator, ...)`` takes for ``X``, as ``predict`` reads it.

    Images: float32 (n, C, crop height, crop width) in [0, 1] — each image resized (its
    shorter side to ``backbone_.preprocess.resize``) and centre-cropped (to
    ``backbone_.preprocess.crop``) as the estimator does, not yet normalised (the graph
    does that). Tables: float32 (n, n_features). Text: the tokenizer's int64 arrays
    (``input_ids``, ``attention_mask``, ...), each text padded to the longest of ``X``
    and truncated at the model's ``max_length``.

    Parameters
    ----------
    estimator : fitted FineTune* or FeatureTransfer* estimator
    X : the raw input ``predict`` takes

    Returns
    -------
    dict of {input name: ndarray}
        Pass it to ``onnxruntime.InferenceSession.run(None, inputs)``.

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from sktransfer import FeatureTransferClassifier, onnx_inputs
    >>> images = np.random.RandomState(0).randint(0, 256, (8, 20, 24, 3), dtype=np.uint8)
    >>> body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    >>> clf = FeatureTransferClassifier(body, image_size=16, random_state=0)
    >>> clf = clf.fit(images, np.arange(8) % 2)
    >>> onnx_inputs(clf, images)["input"].shape
    (8, 3, 16, 16)
    """
    from sklearn.utils.validation import check_is_fitted

    from .inputs import as_source

    _family(estimator)
    check_is_fitted(estimator)
    bb = estimator.backbone_
    modality = _modality(estimator)
    source = as_source(estimator, modality, X, reset=False)
    rows = np.arange(len(source))
    if modality == "image":
        resize_only = dataclasses.replace(bb.preprocess, mean=None, std=None)
        return {"input": source.load(rows, resize_only).numpy().astype(np.float32)}
    if modality == "text":
        tokens = bb.collate(source.load(rows, None))
        return {k: v.numpy().astype(np.int64) for k, v in tokens.items()}
    return {"input": np.asarray(source.X, dtype=np.float32)}


class _Normalise(nn.Module):
    def __init__(self, preprocess, channels: int):
        super().__init__()
        self.rgb = preprocess.channels == 3 and channels == 1
        mean = preprocess.mean if preprocess.mean is not None else (0.0,)
        std = preprocess.std if preprocess.std is not None else (1.0,)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        if self.rgb:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std


class _Graph(nn.Module):
    """Input → (normalise) → network → what ``predict_proba`` / ``predict`` returns."""

    def __init__(self, network, normalise=None, output=None, names=None):
        super().__init__()
        self.network, self.normalise = network, normalise
        self.output, self.names = output, names

    def forward(self, *inputs):
        if self.names is not None:  # text: the tokenizer's arrays, by name
            out = self.network(**dict(zip(self.names, inputs)))
        else:
            x = inputs[0]
            out = self.network(self.normalise(x) if self.normalise is not None else x)
        return self.output(out) if self.output is not None else out


class _Softmax(nn.Module):
    def forward(self, z):
        return torch.softmax(z, dim=1)


class _Multilabel(nn.Module):
    """A multilabel y: each label's sigmoid, and the labels predict gives (logit > 0)."""

    def forward(self, z):
        return (z > 0).to(torch.int64), torch.sigmoid(z)


class _Destandardise(nn.Module):
    def __init__(self, mean, scale, one_d: bool):
        super().__init__()
        self.register_buffer("mean", torch.tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(np.asarray(scale), dtype=torch.float32))
        self.one_d = one_d

    def forward(self, z):
        out = z * self.scale + self.mean
        return out[:, 0] if self.one_d else out


def _text_body(module):
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.module = module

        def forward(self, **tokens):
            return self.module(tokens)

    return Tokens()


def _export(graph: nn.Module, example: dict, outputs: list[str]) -> bytes:
    names = list(example)
    args = tuple(torch.from_numpy(example[n]) for n in names)
    axes = {n: {0: "batch"} for n in names}
    if "input_ids" in example:
        axes = {n: {0: "batch", 1: "tokens"} for n in names}
    axes.update({o: {0: "batch"} for o in outputs})
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter announces its retirement on every call
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        # its tracer warns where transformers' code branches on a shape; the branches
        # it freezes are those of padded batches, which is what the graph takes
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # position ids and masks index with non-negative indices only
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            graph.eval(),
            args,
            buf,
            dynamo=False,
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=_OPSET,
            do_constant_folding=True,
        )
    return buf.getvalue()


def _network(modality: str, bb, head: nn.Module | None):
    """The torch part: the body (and a FineTune's head), on the CPU, in eval mode."""
    import copy

    from .training import TransferModel

    body = copy.deepcopy(bb.module).cpu().float().eval()
    if head is not None:
        body = TransferModel(body, copy.deepcopy(head).cpu().float()).eval()
    if modality == "text":
        return _text_body(body)
    return body


def _add_label(model, classes, probabilities: str = "probabilities"):
    """Append ArgMax → Gather(classes) as the ``label`` output, as skl2onnx's are."""
    from onnx import TensorProto, helper, numpy_helper

    classes = np.asarray(classes)
    if classes.dtype.kind in "iub":
        values, elem = classes.astype(np.int64), TensorProto.INT64
    else:
        values, elem = classes.astype(str).astype(object), TensorProto.STRING
    g = model.graph
    g.initializer.append(numpy_helper.from_array(values, name="classes"))
    g.node.append(helper.make_node("ArgMax", [probabilities], ["argmax"], axis=1, keepdims=0))
    g.node.append(helper.make_node("Gather", ["classes", "argmax"], ["label"], axis=0))
    g.output.insert(0, helper.make_tensor_value_info("label", elem, ["batch"]))
    return model


def _flatten_output(model, name: str):
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    for node in g.node:
        node.output[:] = [f"{name}_2d" if o == name else o for o in node.output]
    g.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat_shape"))
    g.node.append(helper.make_node("Reshape", [f"{name}_2d", "flat_shape"], [name]))
    kept = [o for o in g.output if o.name != name]
    del g.output[:]
    g.output.extend([*kept, helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch"])])
    return model


def _head_model(head, n_features: int):
    skl2onnx = _require("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier

    options = {}

    def walk(obj):
        if is_classifier(obj):
            options[id(obj)] = {"zipmap": False}
        for step in getattr(obj, "steps", []):
            walk(step[1])

    walk(head)
    try:
        return skl2onnx.convert_sklearn(
            head,
            initial_types=[("features", FloatTensorType([None, n_features]))],
            options=options,
            target_opset={"": _OPSET, "ai.onnx.ml": 3},
        )
    except Exception as exc:  # skl2onnx raises many kinds for an unsupported model
        raise ValueError(
            f"to_onnx cannot convert the head {type(head).__name__} with skl2onnx: {exc}. "
            "Linear models (LogisticRegression, Ridge, ...) and trees convert."
        ) from None


def to_onnx(estimator, X_example, path) -> str:
    """Write a fitted estimator as one ONNX graph; returns ``path``.

    The graph computes what ``predict_proba`` and ``predict`` do (classifiers: outputs
    ``label`` and ``probabilities``; regressors: ``variable``; ``PretrainedFeatures``:
    ``features``, what ``transform`` returns) from the arrays that
    ``onnx_inputs(estimator, X)`` returns: images resized and centre-cropped, float32
    NCHW in [0, 1] (the graph normalises them), tables as float32, text as the
    tokenizer's int64 ``input_ids`` / ``attention_mask`` (dynamic batch and length).

    Parameters
    ----------
    estimator : fitted FineTuneClassifier (a 1-D or multilabel y), FineTuneRegressor (one
        or several targets), FeatureTransferClassifier or FeatureTransferRegressor (a
        head skl2onnx converts: linear models, trees, pipelines of them) or
        PretrainedFeatures
    X_example : a few rows of the input ``predict`` takes (traces the network)
    path : str or path-like

    Returns
    -------
    str

    See Also
    --------
    onnx_inputs : the arrays the graph takes, from raw X.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime
    >>> from torch import nn
    >>> from sktransfer import FineTuneClassifier, onnx_inputs, to_onnx
    >>> X = np.random.RandomState(0).randn(40, 4).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> clf = FineTuneClassifier(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), max_epochs=2,
    ...                          random_state=0).fit(X, y)
    >>> path = to_onnx(clf, X[:2], "model.onnx")
    >>> session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    >>> label, proba = session.run(None, onnx_inputs(clf, X))
    >>> bool(np.abs(proba - clf.predict_proba(X)).max() < 1e-4)
    True
    >>> bool((label == clf.predict(X)).all())
    True
    """
    onnx = _require("onnx")
    family = _family(estimator)
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    example = onnx_inputs(estimator, X_example)
    bb, modality = estimator.backbone_, _modality(estimator)
    normalise = None
    if modality == "image":
        normalise = _Normalise(bb.preprocess, example["input"].shape[1])
    names = list(example) if modality == "text" else None
    classifier = hasattr(estimator, "classes_")
    if family == "finetune":
        kind = getattr(estimator, "_y_kind", "single")
        if classifier and kind == "multioutput":
            raise ValueError(
                "to_onnx exports a FineTuneClassifier fitted on a 1-D or multilabel y; this "
                "one was fitted on a multioutput y (one softmax per column)."
            )
        outs = ["probabilities"] if classifier else ["variable"]
        if kind == "multilabel":
            output, outs = _Multilabel(), ["label", "probabilities"]
        elif classifier:
            output = _Softmax()
        else:
            output = _Destandardise(estimator.y_mean_, estimator.y_scale_, estimator._y_1d)
        network = _network(modality, bb, estimator.module_.head)
        graph = _Graph(network, normalise, output, names)
        model = onnx.load_from_string(_export(graph, example, outs))
        if kind == "single" and classifier:
            model = _add_label(model, estimator.classes_)
    else:
        graph = _Graph(_network(modality, bb, None), normalise, None, names)
        model = net = onnx.load_from_string(_export(graph, example, ["features"]))
    if family == "feature_transfer":
        head = _head_model(estimator.head_, estimator.n_features_out_)
        ir = min(net.ir_version, head.ir_version)
        net.ir_version = head.ir_version = ir
        net = onnx.compose.add_prefix(net, "net_", rename_inputs=False, rename_outputs=False)
        head = onnx.compose.add_prefix(head, "head_", rename_inputs=False, rename_outputs=False)
        model = onnx.compose.merge_models(net, head, io_map=[("features", "features")])
        if not classifier and np.ndim(estimator.predict(X_example)) == 1:
            model = _flatten_output(model, "variable")  # skl2onnx gives (n, 1) for a 1-D y
    model.doc_string = (
        f"sktransfer {type(estimator).__name__} ({bb.name}); inputs as "
        "sktransfer.onnx_inputs(estimator, X) returns them"
    )
    onnx.checker.check_model(model)
    path = os.fspath(path)
    onnx.save(model, path)
    return path
