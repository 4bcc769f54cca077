"""Compare backpropagation with finite differences, on a float64 copy of a model."""
from __future__ import annotations

import numpy as np

from fastnet import inputs
from fastnet._finite import refuse_nonfinite
from fastnet.checkpoint import copy_model
from fastnet.errors import ConfigError, InputError
from fastnet.model import Sequential
from fastnet.progress import Progress


def gradcheck(model, x, y, eps: float = 1e-4, max_params: int | None = 2000, seed: int = 0,
              progress: bool = True) -> float:
    """Maximum relative error between backprop's gradient and central finite differences.

    The check runs on a float64 copy of ``model`` (same layers, weights and backend);
    dropout masks are drawn once and held fixed, so the loss is a deterministic
    function of the weights. The objective is the training loss: data loss plus
    L1/L2 penalties. Each parameter's derivative is a Richardson-extrapolated central
    difference, ``fd = (4 D(h/2) - D(h)) / 3`` with ``D(h) = (L(w+h) - L(w-h)) / 2h``,
    and its error is ``|g - fd| / max(|g| + |fd|, 1e-8)``.

    Why Richardson: a plain central difference has truncation error ~h² and rounding
    error ~1e-16·L/h, so its best is ~1e-11 absolute at h ≈ 1e-5, which is a relative
    error above 1e-6 for gradients below ~1e-5 (common behind a saturated sigmoid).
    The extrapolation cancels the h² term, leaving ~h⁴, so a larger h (1e-4) keeps the
    rounding error ~1e-12 while truncation stays negligible.

    Parameters
    ----------
    eps : float
        The step h. At a ReLU kink (a pre-activation within h of 0) the finite
        difference is not a derivative and the error will be large.
    max_params : int >= 1 or None
        Check at most this many parameters, chosen at random (with ``seed``);
        None checks all of them.
    progress : bool
        Say on stderr when the float64 kernels are being compiled, as fit does.

    Returns NaN when a gradient or a finite difference is NaN or Inf (inputs so large that the
    loss overflows, say): a check never reports success on NaN. A model with a NaN or Inf
    parameter is refused with ConfigError.
    """
    if not isinstance(model, Sequential):
        raise ConfigError(f"gradcheck needs a fastnet Sequential model, got {type(model).__name__}")
    if not (inputs.is_number(eps) and eps > 0):
        raise ConfigError(f"gradcheck eps must be a finite number > 0, got {eps!r}")
    if max_params is not None and not (inputs.is_whole(max_params) and max_params >= 1):
        raise ConfigError(f"gradcheck max_params must be a whole number >= 1 or None, got {max_params!r}")
    if not (inputs.is_whole(seed) and seed >= 0):
        raise ConfigError(f"gradcheck seed must be a whole number >= 0, got {seed!r}")
    model._build_for(x)  # a first Dense(n_out) takes its width from x, as in fit
    refuse_nonfinite(model, "gradcheck the model")
    twin = copy_model(model, dtype="float64")
    twin.optimizer = None  # the check never updates: no optimizer kernels to compile
    x, divisor = inputs.check_x(inputs.flat_images(x, twin.input_shape), twin.n_in, twin.dtype)  # 4-D images as fit takes them
    y = inputs.check_y(y, len(x), twin.n_out, twin.loss, twin.dtype)
    if len(x) == 0:
        raise InputError("x is empty: gradcheck needs at least one sample")
    Progress(enabled=progress).compiling(lambda: twin.compile_kernels(x.dtype))
    masks = twin.dropout_rng.bit_generator.state

    def loss():  # the same dropout masks every time, so the loss is a function of the weights alone
        twin.dropout_rng.bit_generator.state = masks
        return twin.loss_and_grad(x, y)

    loss()
    analytic = twin.grads.copy()
    which = np.arange(twin.n_params)
    if max_params is not None and twin.n_params > max_params:
        which = np.sort(np.random.default_rng(seed).choice(twin.n_params, max_params, replace=False))
    errors = np.empty(len(which))
    for k, i in enumerate(which):
        keep = twin.params[i]

        def central(h):
            twin.params[i] = keep + h
            up = loss()
            twin.params[i] = keep - h
            down = loss()
            twin.params[i] = keep
            return (up - down) / (2 * h)

        numeric = (4 * central(eps / 2) - central(eps)) / 3
        errors[k] = abs(analytic[i] - numeric) / max(abs(analytic[i]) + abs(numeric), 1e-8)
    return float(errors.max())  # NaN if any is: a check never passes on NaN
