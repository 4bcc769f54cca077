"""Save and load models as safetensors: tensors for weights (and optimizer state), JSON metadata for the rest.

Tensors:  layers.<i>.weight (out, in), layers.<i>.bias (out,), optimizer.<state> (n_params,)
Metadata: "fastnet" -> JSON with the format version, layers, loss, dtype, backend, seed,
          history, optimizer configuration and step count, and the random generators'
          states, so a resumed run continues exactly as an uninterrupted one.
No pickle anywhere; the file is written to a temporary name and moved into place.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from fastnet.callbacks import History
from fastnet.checkpoint_schema import read_checked
from fastnet.errors import CheckpointError, ConfigError
from fastnet.kernels import get_backend
from fastnet.layers import layer_from_config
from fastnet.losses import LOSSES
from fastnet.optimizers import optimizer_from_config

FORMAT = 1


def describe(model, include_optimizer: bool = True) -> tuple[dict, dict]:
    """Everything needed to rebuild ``model``: (JSON-able metadata, named tensors)."""
    tensors = model.get_weights()
    meta = {
        "format": FORMAT,
        "layers": [{"kind": type(layer).__name__, "config": layer.config()} for layer in model.layers],
        "loss": type(model.loss).__name__,
        "dtype": str(model.dtype),
        "backend": model.backend,
        "seed": model.seed,
        "history": model.history.records,
        "rng": {"shuffle": model.shuffle_rng.bit_generator.state, "dropout": model.dropout_rng.bit_generator.state},
        "optimizer": None,
    }
    opt = model.optimizer
    if include_optimizer and opt is not None:
        meta["optimizer"] = {"kind": type(opt).__name__, "config": opt.config(), "steps": opt.steps}
        tensors.update({f"optimizer.{name}": state for name, state in opt.state.items()})
    return meta, tensors


def rebuild(meta: dict, tensors: dict, backend: str | None = None, dtype: str | None = None):
    """The inverse of ``describe``; ``backend`` and ``dtype`` override the saved ones."""
    from fastnet.model import Sequential

    layers = [layer_from_config(entry["kind"], entry["config"]) for entry in meta["layers"]]
    model = Sequential(*layers, loss=LOSSES[meta["loss"]](), backend=backend or meta["backend"],
                       dtype=dtype or meta["dtype"], seed=meta["seed"])
    model.set_weights({k: v for k, v in tensors.items() if k.startswith("layers.")})
    model.history = History(meta["history"])
    model.shuffle_rng.bit_generator.state = meta["rng"]["shuffle"]
    model.dropout_rng.bit_generator.state = meta["rng"]["dropout"]
    if meta["optimizer"] is not None:
        spec = meta["optimizer"]
        opt = optimizer_from_config(spec["kind"], spec["config"])
        opt.bind(model.params.size, model.dtype, owner=model)
        for name in opt.state_names:
            opt.state[name][...] = tensors[f"optimizer.{name}"]
        opt.steps = spec["steps"]
        model.optimizer = opt
    return model


def copy_model(model, dtype: str | None = None):
    """An independent copy of ``model`` (weights, optimizer, generators), optionally in another dtype."""
    return rebuild(*describe(model), dtype=dtype)


def save(model, path, include_optimizer: bool = True) -> None:
    """Write ``model`` to ``path`` atomically: an interrupted save leaves any previous file intact."""
    meta, tensors = describe(model, include_optimizer)
    write_atomic(Path(path), st_save(tensors, metadata={"fastnet": json.dumps(meta)}))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then ``os.replace`` it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its 0600 mode would make every saved model private; this honours the umask.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load(path, backend: str | None = None):
    """Read a model saved with ``model.save``. ``backend`` overrides the saved one.

    Raises CheckpointError, naming the file, for anything that is not a fastnet safetensors file:
    the file is checked in full (see ``checkpoint_schema``) before any of its arrays is read.
    """
    if backend is not None:
        get_backend(backend)  # an unknown override is the caller's ConfigError, not a damaged file
    path = Path(path)
    raw, meta = read_checked(path, FORMAT)  # bounded reads; metadata and tensors checked before any allocation
    try:
        return rebuild(meta, st_load(raw), backend=backend)
    except ConfigError as e:
        raise CheckpointError(f"{path} holds a model this fastnet cannot rebuild: {e}") from None
    except Exception as e:  # whatever else a crafted file provokes, it is still a damaged file
        raise CheckpointError(f"{path} is damaged or incomplete: {type(e).__name__}: {e}") from None
