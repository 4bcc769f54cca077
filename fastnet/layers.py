"""Layers: small objects holding a configuration and, once in a model, views of its parameters.

A layer does no arithmetic itself: the model compiles the layer list into kernel
calls (see ``program``), fusing each activation into the Dense or Conv2D layer before it.
Each layer maps the shape of one sample, (width,) or an image (channels, height, width), to
its output's (``out_shape``); every buffer is flat, images in NCHW order.
"""
from __future__ import annotations

import math

import numpy as np

from fastnet.errors import ConfigError
from fastnet.inputs import is_number, is_whole
from fastnet.kernels import ACT
from fastnet.kernels.pool import MAX_WINDOW


class Layer:
    """Base class. ``config()`` returns what ``from_config`` needs to rebuild the layer."""

    def config(self) -> dict:
        return {}

    def out_shape(self, shape: tuple) -> tuple:
        """The shape of one sample's output, (width,) or (channels, height, width), for an input of ``shape``;
        ConfigError when the layer cannot take it."""
        return shape

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class Weighted(Layer):
    """Base of the layers with parameters: a weight and a bias, views into the model's flat vectors
    (``weight``, ``bias``, and their gradients ``dw``, ``db``), drawn by ``initial_weight``."""

    INITS = ("xavier", "he", "normal")

    def _set_training(self, init, l1, l2, activation) -> None:
        """Check and keep what every weighted layer takes: init, penalties, a Keras-style activation."""
        if not isinstance(init, str) or init not in self.INITS:
            raise ConfigError(f"unknown init {init!r}; choose one of {', '.join(self.INITS)}")
        for name, value in (("l1", l1), ("l2", l2)):
            if not (is_number(value) and value >= 0):
                raise ConfigError(f"{type(self).__name__} {name} must be a finite number >= 0, got {value!r}")
        self.init, self.l1, self.l2 = init, float(l1), float(l2)
        self.activation = keras_activation(activation)  # Sequential places it after this layer
        self.weight: np.ndarray | None = None  # a view into the model's parameter vector
        self.bias: np.ndarray | None = None

    @property
    def weight_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def n_params(self) -> int:
        return math.prod(self.weight_shape) + self.weight_shape[0]

    def initial_weight(self, rng: np.random.Generator) -> np.ndarray:
        """Draw the initial weight in float64, so every dtype and backend starts alike.

        Fans as Keras counts them: inputs and outputs per weight times the window (1 for Dense)."""
        shape = self.weight_shape
        window = math.prod(shape[2:])
        fan_in, fan_out = shape[1] * window, shape[0] * window
        if self.init == "xavier":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-limit, limit, shape)
        if self.init == "he":
            return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
        return rng.normal(0.0, 0.01, shape)


class Dense(Weighted):
    """Fully connected layer ``y = x · Wᵀ + b`` with W of shape (out, in), as in torch.nn.Linear.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths. ``Dense(n_out)``, as in Keras, leaves the input width to the model:
        the previous layer's width, or for the first Dense the data's, at the first ``fit``
        (or ``predict``, ``evaluate``, ``loss_and_grad``, ``model.build(n_in)``).
    init : {"xavier", "he", "normal"}
        Xavier/Glorot uniform, He normal (for ReLU), or N(0, 0.01²). Biases start at 0.
    l1, l2 : float
        Penalty strengths: the loss gains ``l1·Σ|W| + l2/2·ΣW²`` (biases are not penalised).
    activation : str or Activation, optional
        Keras's names with Keras's meaning: "relu", "sigmoid", "tanh", "leaky_relu" (slope 0.2, as
        Keras's) or "linear" (none). The model puts the activation layer after this one, so it is
        the same model as ``Dense(...), ReLU()`` written out.
    input_shape : (n_in,), optional
        Keras's way to give the first layer's input width: ``Dense(64, input_shape=(784,))`` is ``Dense(784, 64)``.
    """

    def __init__(self, n_in: int | None = None, n_out: int | None = None, init: str = "xavier", l1: float = 0.0,
                 l2: float = 0.0, activation=None, input_shape=None):
        if n_out is None:  # Dense(n_out): the input width comes from the model
            n_in, n_out = _width_of(input_shape), n_in
        elif input_shape is not None:
            raise ConfigError("give Dense's input width once: Dense(n_in, n_out) or Dense(n_out, input_shape=(n_in,))")
        if n_out is None:
            raise ConfigError("Dense needs its output width, e.g. Dense(64) or Dense(784, 64)")
        if isinstance(n_out, str):
            raise ConfigError(f"Dense n_out must be a positive integer, got {n_out!r}; "
                              f"name an activation as Dense(..., activation={n_out!r})")
        for name, value in (("n_in", n_in), ("n_out", n_out)):
            if value is not None and (not is_whole(value) or value < 1):
                raise ConfigError(f"Dense {name} must be a positive integer, got {value!r}")
        self.n_in = None if n_in is None else int(n_in)
        self.n_out = int(n_out)
        self._set_training(init, l1, l2, activation)

    def config(self) -> dict:
        return {"n_in": self.n_in, "n_out": self.n_out, "init": self.init, "l1": self.l1, "l2": self.l2}

    def out_shape(self, shape: tuple) -> tuple:
        if len(shape) != 1:
            raise ConfigError(f"{self!r} takes flat inputs but the layer before it gives images of shape {shape}; "
                              f"put Flatten() before it")
        return (self.n_out,)

    @property
    def weight_shape(self) -> tuple[int, int]:
        return (self.n_out, self.n_in)


class Conv2D(Weighted):
    """2-D convolution over NCHW images, as torch.nn.Conv2d: weight (out_channels, in_channels, k, k), bias
    (out_channels,), ``y[o] = b[o] + Σ_c w[o, c] ⋆ x[c]`` (cross-correlation) with zero padding.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input image and feature maps of the output.
    kernel_size : int or (k, k)
        The square window.
    stride : int
        Steps between windows.
    padding : int, "valid" or "same"
        Zeros added on every side; "valid" is 0, "same" keeps the image size (stride 1, odd kernel).
    init, l1, l2, activation
        As for Dense (the fans count the window: Keras's Glorot and He for convolutions).
    input_shape : (channels, height, width), optional
        The image of the first layer, when the data are flat rows (n, C·H·W); 4-D data (n, C, H, W)
        give it themselves.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: int = 1, padding=0,
                 init: str = "xavier", l1: float = 0.0, l2: float = 0.0, activation=None, input_shape=None):
        if isinstance(kernel_size, (tuple, list)):
            if len(kernel_size) != 2 or kernel_size[0] != kernel_size[1]:
                raise ConfigError(f"Conv2D takes square kernels, e.g. kernel_size=3 or (3, 3), got {kernel_size!r}")
            kernel_size = kernel_size[0]
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("kernel_size", kernel_size), ("stride", stride)):
            if not is_whole(value) or value < 1:
                raise ConfigError(f"Conv2D {name} must be a positive integer, got {value!r}")
        if padding == "valid":
            padding = 0
        elif padding == "same":
            if stride != 1 or kernel_size % 2 == 0:
                raise ConfigError(f"Conv2D padding='same' needs stride 1 and an odd kernel, got stride {stride} "
                                  f"and kernel {kernel_size}; give padding as a number")
            padding = (kernel_size - 1) // 2
        if not is_whole(padding) or not 0 <= padding < kernel_size:
            raise ConfigError(f"Conv2D padding must be 'valid', 'same' or a whole number from 0 to kernel_size - 1 "
                              f"({kernel_size - 1}), got {padding!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), int(padding)
        self.input_shape = None if input_shape is None else _image_of(input_shape, "Conv2D")
        self._set_training(init, l1, l2, activation)

    def config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "kernel_size": self.kernel_size,
                "stride": self.stride, "padding": self.padding, "init": self.init, "l1": self.l1, "l2": self.l2,
                "input_shape": None if self.input_shape is None else list(self.input_shape)}

    def out_shape(self, shape: tuple) -> tuple:
        channels, height, width = _image_in(self, shape)
        if channels != self.in_channels:
            raise ConfigError(f"{self!r} takes {self.in_channels} channels but gets images of shape {shape}")
        k, s, p = self.kernel_size, self.stride, self.padding
        out = ((height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1)
        if height + 2 * p < k or width + 2 * p < k:
            raise ConfigError(f"{self!r}: a {k}x{k} kernel does not fit images of shape {shape}; use a smaller "
                              f"kernel or more padding")
        return (self.out_channels, *out)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        k = self.kernel_size
        return (self.out_channels, self.in_channels, k, k)


class Pool2D(Layer):
    """Base of the pooling layers: a size x size window moved by ``stride`` (default: size), no padding."""

    def __init__(self, size: int = 2, stride: int | None = None):
        if isinstance(size, (tuple, list)) and len(size) == 2 and size[0] == size[1]:
            size = size[0]
        stride = size if stride is None else stride
        for name, value in (("size", size), ("stride", stride)):
            if not is_whole(value) or value < 1:
                raise ConfigError(f"{type(self).__name__} {name} must be a positive integer, got {value!r}")
        if size > MAX_WINDOW:
            raise ConfigError(f"{type(self).__name__} windows are at most {MAX_WINDOW}x{MAX_WINDOW}, got {size}")
        self.size, self.stride = int(size), int(stride)

    def config(self) -> dict:
        return {"size": self.size, "stride": self.stride}

    def out_shape(self, shape: tuple) -> tuple:
        channels, height, width = _image_in(self, shape)
        if height < self.size or width < self.size:
            raise ConfigError(f"{self!r}: a {self.size}x{self.size} window does not fit images of shape {shape}")
        return (channels, (height - self.size) // self.stride + 1, (width - self.size) // self.stride + 1)


class MaxPool2D(Pool2D):
    """The maximum of each window, as torch.nn.MaxPool2d(size, stride); its place is kept for the backward."""


class AvgPool2D(Pool2D):
    """The mean of each window, as torch.nn.AvgPool2d(size, stride)."""


class Flatten(Layer):
    """Images (C, H, W) as flat rows of C·H·W values in C order, as torch.nn.Flatten; no arithmetic."""

    def out_shape(self, shape: tuple) -> tuple:
        return (math.prod(shape),)


class Activation(Layer):
    """Base of the element-wise activations; ``act`` is the kernel code with its two constants."""

    name = "identity"

    @property
    def act(self) -> tuple[int, float, float]:
        return ACT[self.name], 0.0, 0.0


class Sigmoid(Activation):
    """The generalised logistic ``a / (1 + exp(-x / b))``; a = b = 1 is the standard sigmoid."""

    name = "sigmoid"

    def __init__(self, a: float = 1.0, b: float = 1.0):
        if not (is_number(a) and is_number(b) and a > 0 and b > 0):
            raise ConfigError(f"Sigmoid needs finite a > 0 and b > 0, got a={a!r}, b={b!r}")
        self.a, self.b = float(a), float(b)

    def config(self) -> dict:
        return {"a": self.a, "b": self.b}

    @property
    def act(self):
        return ACT["sigmoid"], self.a, 1.0 / self.b  # the kernels take 1/b: a multiply, not a divide


class Tanh(Activation):
    """Hyperbolic tangent."""

    name = "tanh"


class ReLU(Activation):
    """max(x, 0)."""

    name = "relu"


class LeakyReLU(Activation):
    """x for x > 0, alpha·x otherwise."""

    name = "leaky_relu"

    def __init__(self, alpha: float = 0.01):
        if not (is_number(alpha) and alpha >= 0):
            raise ConfigError(f"LeakyReLU alpha must be a finite number >= 0, got {alpha!r}")
        self.alpha = float(alpha)

    def config(self) -> dict:
        return {"alpha": self.alpha}

    @property
    def act(self):
        return ACT["leaky_relu"], self.alpha, 0.0


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability p and scale the rest by 1/(1-p).

    ``evaluate`` and ``predict`` skip it, so inference is deterministic.
    """

    def __init__(self, p: float = 0.5):
        if not (is_number(p) and 0 <= p < 1):
            raise ConfigError(f"Dropout p must be in [0, 1), got {p!r}")
        self.p = float(p)

    def config(self) -> dict:
        return {"p": self.p}


LAYERS = {cls.__name__: cls for cls in (Dense, Conv2D, MaxPool2D, AvgPool2D, Flatten, Sigmoid, Tanh, ReLU, LeakyReLU,
                                         Dropout)}
ACTIVATIONS = {cls.name: cls for cls in (Sigmoid, Tanh, ReLU, LeakyReLU)}


def layer_from_config(kind: str, config: dict) -> Layer:
    """Rebuild a layer saved with ``config()``; ConfigError for an unknown kind."""
    if kind not in LAYERS:
        raise ConfigError(f"unknown layer {kind!r}; known layers: {', '.join(LAYERS)}")
    return LAYERS[kind](**config)


def activation(name: str, **kwargs) -> Activation:
    """An activation layer by name: sigmoid, tanh, relu or leaky_relu (also 'leaky-relu')."""
    key = name.replace("-", "_").lower()
    if key not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[key](**kwargs)


def _image_of(input_shape, who: str) -> tuple[int, int, int]:
    """``input_shape`` checked as (channels, height, width) of positive whole numbers."""
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
            and all(is_whole(v) and v >= 1 for v in input_shape)):
        raise ConfigError(f"{who} takes input_shape=(channels, height, width), e.g. (1, 28, 28), got {input_shape!r}")
    return tuple(int(v) for v in input_shape)


def _image_in(layer: Layer, shape: tuple) -> tuple:
    if len(shape) != 3:
        raise ConfigError(f"{layer!r} takes images (channels, height, width) but gets flat inputs of shape {shape}; "
                          f"give the first layer input_shape=(channels, height, width), or pass x as "
                          f"(n, channels, height, width)")
    return shape


def _width_of(input_shape) -> int | None:
    """The input width in Keras's ``input_shape=(n_in,)``; None for None."""
    if input_shape is None:
        return None
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 1):
        raise ConfigError(f"Dense takes input_shape=(n_in,), one sample's flat width, got {input_shape!r}; "
                          f"flatten images with x.reshape(len(x), -1)")
    return input_shape[0]


KERAS_ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "leaky_relu": lambda: LeakyReLU(alpha=0.2)}


def keras_activation(name) -> Activation | None:
    """The layer ``Dense(activation=name)`` adds: None for None or "linear", else a new activation
    layer for Keras's name of it (with Keras's meaning: "leaky_relu" has slope 0.2), or the given one."""
    if name is None or isinstance(name, Activation):
        return name
    known = "linear, " + ", ".join(KERAS_ACTIVATIONS)
    if not isinstance(name, str):
        raise ConfigError(f"activation must be a name ({known}) or an activation layer, got {name!r}")
    key = name.lower()
    if key == "softmax":
        raise ConfigError("fastnet has no softmax layer: SoftmaxCrossEntropy applies softmax itself and "
                          "predict gives the probabilities; leave activation off the last Dense")
    if key == "linear":
        return None
    if key not in KERAS_ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; choose one of {known}")
    return KERAS_ACTIVATIONS[key]()


def with_activations(layers) -> list:
    """``layers`` with each ``Dense(activation=...)``'s activation layer put right after it."""
    out = []
    for layer in layers:
        out.append(layer)
        if isinstance(layer, Weighted) and layer.activation is not None:
            out.append(layer.activation)
    return out
