"""ONNX export: a trained ``Sequential`` as an ONNX graph that computes what ``model.predict`` returns.

The graph has one input ``x`` of shape (batch, n_in) and one output ``y`` of shape (batch, n_out),
both in the model's dtype (float32 or float64), with a dynamic batch dimension. A model with
``preprocessing`` takes raw features: the graph applies the scaler first, in float64 as
``predict`` does, ``(x - shift) / scale``. Without it, ``x`` is taken as the model sees it: a
dataset's ``x`` (float32 in [0, 1]) as it is, but images that carry their scale
(``fn.datasets.Images``, uint8 pixels) already scaled, ``(pixels / 255).astype(np.float32)``. ``y`` is what
``predict`` gives: class probabilities (softmax) for SoftmaxCrossEntropy, probabilities
(sigmoid) for BinaryCrossEntropy, raw outputs for MSE. Dropout is left out, as at inference.

Opset 17 (IR version 8): every operator used here (Gemm, Sigmoid, Tanh, Relu, LeakyRelu, Mul,
Greater, Where, Softmax, Identity, Sub, Concat, Cast, Div) has had its current definition since opset 16 or earlier, so
nothing newer is needed, and opset 17 loads in every onnxruntime since 1.13 and in most other
runtimes, where a newer opset would shut out older ones. onnx and onnxruntime come from the
``onnx`` extra (``pip install onnx onnxruntime``); the core never imports this module.
"""
from __future__ import annotations

import numpy as np

from fastnet._finite import refuse_nonfinite
from fastnet._version import __version__
from fastnet.checkpoint import write_atomic
from fastnet.errors import ConfigError
from fastnet.inputs import as_path
from fastnet.layers import Dense, Dropout, LeakyReLU, ReLU, Sigmoid, Tanh
from fastnet.losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy

OPSET = 17
IR_VERSION = 8  # the IR version that came with opset 17 (onnx 1.12); a newer one would shut out older runtimes
INPUT, OUTPUT = "x", "y"
MAX_BYTES = 2**31 - 2**24  # protobuf serialises at most 2 GB; leave room for the graph around the weights


def _require_onnx():
    """The onnx package, or a one-line ConfigError saying what to install."""
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install onnx onnxruntime") from None
    return onnx


class _Graph:
    """Collects nodes and initializers, all in the model's dtype. Tensors are named after the layer
    being added (``prefix``), as ``get_weights`` names parameters: layers.0.weight, layers.1.relu2, ..."""

    def __init__(self, onnx, dtype: np.dtype):
        self.onnx, self.dtype = onnx, dtype
        self.nodes, self.initializers = [], []
        self.prefix = ""

    def const(self, stem: str, value, dtype=None) -> str:
        """An initializer holding ``value`` in ``dtype`` (default: the model's); returns its name."""
        name = f"{self.prefix}.{stem}"
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype or self.dtype), name))
        return name

    def add(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        """A node ``op(inputs)``; returns the name of its output."""
        out = out or f"{self.prefix}.{op.lower()}{len(self.nodes)}"
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], **attrs))
        return out


# ---- layers: each turns its input tensor's name into its output tensor's name ------------

def _dense(g: _Graph, layer: Dense, x: str) -> str:
    # x (B, in), W (out, in), b (out,) -> x · Wᵀ + b (B, out)
    return g.add("Gemm", [x, g.const("weight", layer.weight), g.const("bias", layer.bias)], transB=1)


def _sigmoid(g: _Graph, layer: Sigmoid, x: str) -> str:
    # a / (1 + exp(-x / b)) = a · sigmoid(x · (1/b)): the kernels multiply by 1/b too, so the rounding matches
    if layer.b != 1:
        x = g.add("Mul", [x, g.const("inv_b", 1.0 / layer.b)])
    y = g.add("Sigmoid", [x])
    return g.add("Mul", [y, g.const("a", layer.a)]) if layer.a != 1 else y


def _leaky_relu(g: _Graph, layer: LeakyReLU, x: str) -> str:
    if g.dtype == np.float32 or float(np.float32(layer.alpha)) == layer.alpha:
        return g.add("LeakyRelu", [x], alpha=layer.alpha)
    # LeakyRelu's alpha is a float32 attribute, which would round this alpha: spell it out in float64
    scaled = g.add("Mul", [x, g.const("alpha", layer.alpha)])
    return g.add("Where", [g.add("Greater", [x, g.const("zero", 0)]), x, scaled])


def _scaler(g: _Graph, scaler, x: str) -> str:
    # (x - shift) / scale in float64, as Scaler.transform computes it, then back to the model's dtype
    if scaler.kind == "none":
        return x
    to = {np.float32: g.onnx.TensorProto.FLOAT, np.float64: g.onnx.TensorProto.DOUBLE}
    wide = x if g.dtype == np.float64 else g.add("Cast", [x], to=to[np.float64])
    if scaler.shift.any():
        wide = g.add("Sub", [wide, g.const("shift", scaler.shift, np.float64)])
    wide = g.add("Div", [wide, g.const("scale", scaler.scale, np.float64)])
    return wide if g.dtype == np.float64 else g.add("Cast", [wide], to=to[g.dtype.type])


def _elementwise(op: str):
    return lambda g, layer, x: g.add(op, [x])


LAYERS = {  # layer type -> its nodes
    Dense: _dense,
    Sigmoid: _sigmoid,
    Tanh: _elementwise("Tanh"),
    ReLU: _elementwise("Relu"),
    LeakyReLU: _leaky_relu,
    Dropout: lambda g, layer, x: x,  # inference: dropout does nothing
}

OUTPUTS = {  # loss type -> what turns the last layer's outputs into predict's result
    SoftmaxCrossEntropy: "Softmax",  # along the last axis, the default since opset 13
    BinaryCrossEntropy: "Sigmoid",
    MSE: "Identity",
}


def _lookup(table: dict, part):
    """The table entry for a layer or loss; ConfigError for a type fastnet does not know how to export."""
    if type(part) not in table:
        raise ConfigError(f"cannot export {part!r} to ONNX: only {', '.join(t.__name__ for t in table)} export")
    return table[type(part)]


def to_model_proto(model, both_classes: bool = False):
    """The ONNX ModelProto of ``model``, checked with ``onnx.checker``.

    ``both_classes``: for one sigmoid output p (a binary classifier), give (1 - p, p) instead, as
    scikit-learn's ``predict_proba`` does.
    """
    onnx = _require_onnx()
    refuse_nonfinite(model, "export the model to ONNX")
    if model.params.nbytes > MAX_BYTES:
        raise ConfigError(f"the model's {model.params.nbytes:,} bytes of parameters do not fit in one ONNX file, "
                          f"which protobuf limits to 2 GB; export a smaller model")
    g = _Graph(onnx, model.dtype)
    x = INPUT
    if model.preprocessing is not None:
        g.prefix = "preprocessing"
        x = _scaler(g, model.preprocessing, x)
    for i, layer in enumerate(model.layers):
        g.prefix = f"layers.{i}"
        x = _lookup(LAYERS, layer)(g, layer, x)
    g.prefix = "output"
    n_out = model.n_out
    if both_classes and isinstance(model.loss, BinaryCrossEntropy) and n_out == 1:
        p = g.add("Sigmoid", [x])
        g.add("Concat", [g.add("Sub", [g.const("one", 1), p]), p], out=OUTPUT, axis=1)
        n_out = 2
    else:
        g.add(_lookup(OUTPUTS, model.loss), [x], out=OUTPUT)
    elem = {np.float32: onnx.TensorProto.FLOAT, np.float64: onnx.TensorProto.DOUBLE}[model.dtype.type]
    graph = onnx.helper.make_graph(
        g.nodes, "fastnet", [onnx.helper.make_tensor_value_info(INPUT, elem, ["batch", model.n_in])],
        [onnx.helper.make_tensor_value_info(OUTPUT, elem, ["batch", n_out])], initializer=g.initializers,
        doc_string=repr(model))
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   ir_version=IR_VERSION, producer_name="fastnet",
                                   producer_version=__version__)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, path, both_classes: bool = False) -> None:
    """Write ``model`` as an ONNX file at ``path``, atomically (see the module docstring for the graph)."""
    path = as_path(path, "to_onnx")
    write_atomic(path, to_model_proto(model, both_classes).SerializeToString())
