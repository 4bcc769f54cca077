"""ONNX export: a trained ``Sequential`` as an ONNX graph that computes what ``model.predict`` returns.

The graph has one input ``x`` of shape (batch, n_in) and one output ``y`` of shape (batch, n_out),
both in the model's dtype (float32 or float64), with a dynamic batch dimension. A model of images
(``input_shape`` (channels, height, width), e.g. one starting with Conv2D) takes them flat too, as
``predict`` takes them: rows of channels·height·width values in C order (NCHW), which the graph
reshapes to (batch, channels, height, width) after the scaler (a Reshape node), so one array feeds
both (``x.reshape(len(x), -1)`` of 4-D images). A model with ``preprocessing`` takes raw features:
the graph applies the scaler first, in float64 as ``predict`` does, ``(x - shift) / scale``. Without it,
``x`` is taken as the model sees it: a dataset's ``x`` (float32 in [0, 1]) as it is, but images that carry their scale
(``fn.datasets.Images``, uint8 pixels) already scaled, ``(pixels / 255).astype(np.float32)``. ``y`` is what
``predict`` gives: class probabilities (softmax) for SoftmaxCrossEntropy, probabilities
(sigmoid) for BinaryCrossEntropy, raw outputs for MSE. Dropout is left out, as at inference.

Convolutions and pooling export as Conv, MaxPool and AveragePool (NCHW, no padding for pooling, floor
sizes). onnxruntime's CPU provider runs Conv and AveragePool in float32 only, so a float64 graph spells
those two out in operators it runs in float64, the same sums as the kernels: the K·K strided windows of the
(padded) image as Slice nodes, then a MatMul with the weight laid out as (K·K·C, O) for Conv (im2col),
and a Sum times 1/size² for AveragePool. Its weights are then stored in that layout, not (O, C, K, K).

Opset 17 (IR version 8): every operator used here (Gemm, Conv, MaxPool, AveragePool, Flatten, Reshape, Pad,
Slice, Transpose, MatMul, Add, Sum, Sigmoid, Tanh, Relu, LeakyRelu, Mul, Greater, Where, Softmax, Identity,
Sub, Concat, Cast, Div) has had its current definition since opset 16 or earlier, so
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
from fastnet.layers import AvgPool2D, Conv2D, Dense, Dropout, Flatten, LeakyReLU, MaxPool2D, ReLU, Sigmoid, Tanh
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
        self.shape: tuple = ()  # one sample's shape at the input of the layer being added

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


def _conv(g: _Graph, layer: Conv2D, x: str) -> str:
    # x (B, C, H, W), W (O, C, K, K), b (O,) -> (B, O, H', W'): cross-correlation with zero padding on every side
    k, p, s = layer.kernel_size, layer.padding, layer.stride
    if g.dtype == np.float64:  # onnxruntime runs Conv in float32 only: spell it out (see the module docstring)
        # the K·K windows side by side (B, H', W', K·K·C) times W as (K·K·C, O): im2col, as the kernels do
        cols = g.add("Transpose", [g.add("Concat", _windows(g, x, k, s, p), axis=1)], perm=[0, 2, 3, 1])
        weight = layer.weight.transpose(2, 3, 1, 0).reshape(-1, layer.out_channels)  # rows in (i, j, c) order
        y = g.add("Add", [g.add("MatMul", [cols, g.const("weight", weight)]), g.const("bias", layer.bias)])
        return g.add("Transpose", [y], perm=[0, 3, 1, 2])
    return g.add("Conv", [x, g.const("weight", layer.weight), g.const("bias", layer.bias)], kernel_shape=[k, k],
                 pads=[p, p, p, p], strides=[s, s])


def _max_pool(g: _Graph, layer: MaxPool2D, x: str) -> str:
    # x (B, C, H, W) -> (B, C, H', W'): no padding, the last window that fits (floor, ONNX's default ceil_mode=0)
    return g.add("MaxPool", [x], kernel_shape=[layer.size] * 2, strides=[layer.stride] * 2)


def _avg_pool(g: _Graph, layer: AvgPool2D, x: str) -> str:
    # x (B, C, H, W) -> (B, C, H', W'), as MaxPool: the sum of each window times 1/size², as the kernels do
    if g.dtype == np.float64:  # onnxruntime runs AveragePool in float32 only (see the module docstring)
        return g.add("Mul", [g.add("Sum", _windows(g, x, layer.size, layer.stride, 0)),
                             g.const("inv_area", 1.0 / layer.size ** 2)])
    return g.add("AveragePool", [x], kernel_shape=[layer.size] * 2, strides=[layer.stride] * 2)


def _windows(g: _Graph, x: str, k: int, s: int, p: int) -> list[str]:
    """The K·K strided views of ``x`` (B, C, H, W) zero-padded by ``p``: view (i, j) is (B, C, H', W'), holding
    at (r, c) the element at offset (i, j) of the window at (r, c); in the order i, then j."""
    oh, ow = g.shape[1] + 2 * p - k, g.shape[2] + 2 * p - k  # the last window's corner
    if p:
        x = g.add("Pad", [x, g.const("pads", [0, 0, p, p, 0, 0, p, p], np.int64)])
    axes, steps = g.const("axes", [2, 3], np.int64), g.const("steps", [s, s], np.int64)
    return [g.add("Slice", [x, g.const(f"start{i}.{j}", [i, j], np.int64),
                            g.const(f"end{i}.{j}", [i + oh - oh % s + 1, j + ow - ow % s + 1], np.int64), axes, steps])
            for i in range(k) for j in range(k)]


def _images(g: _Graph, shape: tuple, x: str) -> str:
    # x (B, C·H·W) -> (B, C, H, W); the batch dimension stays dynamic (-1)
    return g.add("Reshape", [x, g.const("shape", [-1, *shape], np.int64)])


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
    Conv2D: _conv,
    MaxPool2D: _max_pool,
    AvgPool2D: _avg_pool,
    Flatten: lambda g, layer, x: g.add("Flatten", [x], axis=1),  # (B, C, H, W) -> (B, C·H·W), C order
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
    if len(model.input_shape) == 3:
        g.prefix = "input"
        x = _images(g, model.input_shape, x)
    g.shape = model.input_shape
    for i, layer in enumerate(model.layers):
        g.prefix = f"layers.{i}"
        x = _lookup(LAYERS, layer)(g, layer, x)
        g.shape = layer.out_shape(g.shape)
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
