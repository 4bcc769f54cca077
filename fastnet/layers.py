"""Layers: small objects holding a configuration and, once in a model, views of its parameters.

A layer does no arithmetic itself: the model compiles the layer list into kernel
calls (see ``program``), fusing each activation into the Dense layer before it.
"""
from __future__ import annotations

import math

import numpy as np

from fastnet.errors import ConfigError
from fastnet.inputs import is_number, is_whole
from fastnet.kernels import ACT


class Layer:
    """Base class. ``config()`` returns what ``from_config`` needs to rebuild the layer."""

    def config(self) -> dict:
        return {}

    def out_width(self, in_width: int) -> int:
        return in_width

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class Dense(Layer):
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

    INITS = ("xavier", "he", "normal")

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
        if not isinstance(init, str) or init not in self.INITS:
            raise ConfigError(f"unknown init {init!r}; choose one of {', '.join(self.INITS)}")
        for name, value in (("l1", l1), ("l2", l2)):
            if not (is_number(value) and value >= 0):
                raise ConfigError(f"Dense {name} must be a finite number >= 0, got {value!r}")
        self.n_in = None if n_in is None else int(n_in)
        self.n_out, self.init = int(n_out), init
        self.l1, self.l2 = float(l1), float(l2)
        self.activation = keras_activation(activation)  # Sequential places it after this layer
        self.weight: np.ndarray | None = None  # (out, in) view into the model's parameter vector
        self.bias: np.ndarray | None = None  # (out,)

    def config(self) -> dict:
        return {"n_in": self.n_in, "n_out": self.n_out, "init": self.init, "l1": self.l1, "l2": self.l2}

    def out_width(self, in_width: int) -> int:
        return self.n_out

    @property
    def n_params(self) -> int:
        return self.n_out * self.n_in + self.n_out

    def initial_weight(self, rng: np.random.Generator) -> np.ndarray:
        """Draw the initial (out, in) weight in float64, so every dtype and backend starts alike."""
        shape = (self.n_out, self.n_in)
        if self.init == "xavier":
            limit = math.sqrt(6.0 / (self.n_in + self.n_out))
            return rng.uniform(-limit, limit, shape)
        if self.init == "he":
            return rng.normal(0.0, math.sqrt(2.0 / self.n_in), shape)
        return rng.normal(0.0, 0.01, shape)


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


LAYERS = {cls.__name__: cls for cls in (Dense, Sigmoid, Tanh, ReLU, LeakyReLU, Dropout)}
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
        if isinstance(layer, Dense) and layer.activation is not None:
            out.append(layer.activation)
    return out
