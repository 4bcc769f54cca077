"""Optimizers and learning-rate schedules.

An optimizer holds its hyperparameters and its state (velocity, moments) as flat
vectors matching the model's flat parameter vector, so one kernel call updates
every layer. It also works on its own, on any flat float array::

    opt = fn.SGD(lr=0.03)
    p = np.array([50.0, 43.0])
    for _ in range(200):
        opt.step(p, 2 * p)        # gradient of x² + y²
"""
from __future__ import annotations

import math
import weakref

import numpy as np

from fastnet._memory import aligned_zeros
from fastnet.errors import ConfigError, ShapeError
from fastnet.inputs import is_number, is_whole
from fastnet.kernels import get_backend


# ---- schedules: the learning rate for an epoch, as base lr × factor(epoch) ----------

class Schedule:
    def factor(self, epoch: int) -> float:
        raise NotImplementedError

    def config(self) -> dict:
        return dict(vars(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"


class StepLR(Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, step_size: int, gamma: float = 0.1):
        if not (is_whole(step_size) and step_size >= 1 and is_number(gamma) and gamma > 0):
            raise ConfigError(f"StepLR needs a whole step_size >= 1 and a finite gamma > 0, "
                              f"got {step_size!r}, {gamma!r}")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def factor(self, epoch):
        return _power(self.gamma, epoch // self.step_size)


class ExponentialLR(Schedule):
    """Multiply the rate by ``gamma`` every epoch."""

    def __init__(self, gamma: float):
        if not (is_number(gamma) and gamma > 0):
            raise ConfigError(f"ExponentialLR needs a finite gamma > 0, got {gamma!r}")
        self.gamma = float(gamma)

    def factor(self, epoch):
        return _power(self.gamma, epoch)


class CosineLR(Schedule):
    """Cosine annealing from the base rate down to ``min_factor``·base over ``t_max`` epochs."""

    def __init__(self, t_max: int, min_factor: float = 0.0):
        if not (is_whole(t_max) and t_max >= 1 and is_number(min_factor) and 0 <= min_factor <= 1):
            raise ConfigError(f"CosineLR needs a whole t_max >= 1 and 0 <= min_factor <= 1, "
                              f"got {t_max!r}, {min_factor!r}")
        self.t_max, self.min_factor = int(t_max), float(min_factor)

    def factor(self, epoch):
        progress = min(epoch, self.t_max) / self.t_max
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


SCHEDULES = {cls.__name__: cls for cls in (StepLR, ExponentialLR, CosineLR)}


def _power(gamma: float, n: int) -> float:
    """gamma ** n, inf where that overflows (a gamma > 1 over many epochs): ``check_lr`` refuses it."""
    try:
        return gamma**n
    except OverflowError:
        return math.inf


# ---- optimizers ---------------------------------------------------------------------

class Optimizer:
    """Base class: subclasses name their state vectors and implement ``_update``."""

    state_names: tuple[str, ...] = ()

    def __init__(self, lr: float, schedule: Schedule | None = None):
        if not (is_number(lr) and lr > 0):
            raise ConfigError(f"learning rate must be a finite number > 0, got {lr!r}")
        if schedule is not None and not isinstance(schedule, Schedule):
            raise ConfigError(f"schedule must be StepLR, ExponentialLR or CosineLR, got {schedule!r}")
        self.lr, self.schedule = float(lr), schedule
        self.steps = 0  # updates applied so far (Adam's bias correction counts them)
        self.state: dict[str, np.ndarray] = {}
        self._owner = None  # weak reference to the model being trained

    def lr_at(self, epoch: int) -> float:
        """The learning rate used during ``epoch`` (0-based)."""
        return self.lr * (self.schedule.factor(epoch) if self.schedule else 1.0)

    def check_lr(self, start: int, stop: int) -> None:
        """ConfigError if an epoch in [start, stop) (0-based) would train at learning rate 0.

        That happens past the end of a CosineLR with min_factor=0, or when a decay underflows.
        A schedule that reaches 0 stays there, so the first such epoch is found by bisection.
        Likewise a rate that grows past the floating-point range (StepLR or ExponentialLR with
        gamma > 1) is refused at the first epoch where it is infinite.
        """
        if stop <= start:
            return
        if math.isinf(self.lr_at(stop - 1)):
            first = self._first_epoch(start, stop, math.isinf)
            raise ConfigError(f"epoch {first + 1} would train at an infinite learning rate: {self.schedule!r} "
                              f"grows {self.lr} past the floating-point range; use a gamma <= 1, or fewer epochs")
        if self.lr_at(stop - 1) != 0:
            return
        lo = self._first_epoch(start, stop, lambda lr: lr == 0)
        fix = "pass fit an optimizer with a new schedule"
        if isinstance(self.schedule, CosineLR):
            fix = f"set optimizer.schedule.t_max = {stop} to stretch it over all {stop} epochs, or {fix}"
        raise ConfigError(f"epoch {lo + 1} would train at learning rate 0: {self.schedule!r} has run its course; "
                          f"{fix}")

    def _first_epoch(self, start: int, stop: int, bad) -> int:
        """The first epoch in [start, stop) whose rate is ``bad``, by bisection: it is bad at ``stop - 1``
        and stays bad once it is."""
        lo, hi = start, stop - 1
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if bad(self.lr_at(mid)) else (mid + 1, hi)
        return lo

    def bind(self, n: int, dtype, owner=None) -> None:
        """Allocate zeroed state for ``n`` parameters, unless state of that size already exists.

        ``owner`` is the model this optimizer trains: one optimizer cannot train two
        models, since they would share its velocity and step count.
        """
        if owner is not None:
            current = self._owner() if self._owner is not None else None
            if current is not None and current is not owner:
                raise ConfigError(f"this {type(self).__name__} already trains another model; give each model "
                                  f"its own optimizer, e.g. {type(self).__name__}(lr={self.lr})")
            self._owner = weakref.ref(owner)
        if all(name in self.state and self.state[name].shape == (n,) and self.state[name].dtype == dtype
               for name in self.state_names):
            return
        self.state = {name: aligned_zeros(n, dtype) for name in self.state_names}
        self.steps = 0

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float | None = None, backend: str = "numba") -> None:
        """Apply one update in place to a flat float array ``params`` given ``grads``."""
        if not (isinstance(params, np.ndarray) and isinstance(grads, np.ndarray)) or params.ndim != 1 \
                or params.shape != grads.shape:
            raise ShapeError("step() needs two flat numpy arrays of one shape: params and grads; "
                             "flatten with .ravel() or use a model's fit()")
        self.bind(params.size, params.dtype)
        self.update(get_backend(backend), params, grads, self.lr if lr is None else lr)

    def update(self, kernels, params, grads, lr) -> None:
        """One update with ``kernels`` (a backend or its ``.raw``); the model calls this per batch."""
        self.steps += 1
        self._update(kernels, params, grads, lr)

    def compile_kernels(self, kernels, dtype) -> None:
        """Compile (or load from the cache) this optimizer's kernel for ``dtype``, on two scratch
        parameters; its own state and step count are left as they were."""
        saved = self.state, self.steps
        self.state, self.steps = {name: np.zeros(2, dtype) for name in self.state_names}, 1
        try:
            self._update(kernels, np.zeros(2, dtype), np.zeros(2, dtype), 0.0)
        finally:
            self.state, self.steps = saved

    def config(self) -> dict:
        cfg = {k: v for k, v in vars(self).items()
               if k not in ("schedule", "steps", "state", "state_names") and not k.startswith("_")}
        if self.schedule is not None:
            cfg["schedule"] = {"kind": type(self.schedule).__name__, **self.schedule.config()}
        return cfg

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum, PyTorch's convention."""

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, nesterov: bool = False,
                 schedule: Schedule | None = None):
        super().__init__(lr, schedule)
        if not (is_number(momentum) and 0 <= momentum < 1):
            raise ConfigError(f"momentum must be a number in [0, 1), got {momentum!r}")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise ConfigError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and momentum == 0:
            raise ConfigError("nesterov=True needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.state_names = ("velocity",) if momentum else ()

    def _update(self, k, params, grads, lr):
        if self.momentum:
            k.sgd_momentum(params, self.state["velocity"], grads, lr, self.momentum, self.nesterov)
        else:
            k.sgd(params, grads, lr)


class Adam(Optimizer):
    """Adam with bias correction."""

    state_names = ("m", "v")

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 schedule: Schedule | None = None):
        super().__init__(lr, schedule)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(is_number(b) and 0 <= b < 1 for b in betas)
                and is_number(eps) and eps > 0):
            raise ConfigError(f"Adam needs two betas in [0, 1) and a finite eps > 0, got betas={betas!r}, eps={eps!r}")
        b1, b2 = betas
        self.betas, self.eps = (float(b1), float(b2)), float(eps)

    def _update(self, k, params, grads, lr):
        b1, b2 = self.betas
        k.adam(params, self.state["m"], self.state["v"], grads, lr, b1, b2, self.eps,
               1.0 - b1**self.steps, 1.0 - b2**self.steps)


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam)}


def optimizer_named(name: str) -> Optimizer:
    """A new optimizer by its Keras name, "sgd" or "adam" (any case): fastnet's SGD() or Adam() with
    fastnet's defaults, as ``optimizer=fn.SGD()`` would give (SGD's rate is 0.1, not Keras's 0.01)."""
    by_name = {kind.lower(): cls for kind, cls in OPTIMIZERS.items()}
    if name.lower() not in by_name:
        raise ConfigError(f"unknown optimizer {name!r}; fastnet has {', '.join(map(repr, by_name))}, "
                          f"or pass one configured, e.g. optimizer=fn.Adam(lr=1e-3)")
    return by_name[name.lower()]()


def optimizer_from_config(kind: str, config: dict) -> Optimizer:
    if kind not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {kind!r}; known: {', '.join(OPTIMIZERS)}")
    config = dict(config)
    schedule = config.pop("schedule", None)
    if "betas" in config:
        config["betas"] = tuple(config["betas"])
    if schedule is not None:
        schedule = dict(schedule)
        config["schedule"] = SCHEDULES[schedule.pop("kind")](**schedule)
    return OPTIMIZERS[kind](**config)
