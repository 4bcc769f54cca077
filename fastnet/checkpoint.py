"""Save and load models as safetensors: tensors for weights (and optimizer state), JSON metadata for the rest.

Tensors:  layers.<i>.weight (out, in) for Dense, (out, in, k, k) for Conv2D, layers.<i>.bias (out,),
          optimizer.<state> (n_params,);
          preprocessing.shift and .scale (in,) float64 and numeric "classes", when the model has them
Metadata: "fastnet" -> JSON with the format version, layers, input_shape (one sample's: [width] or
          [channels, height, width]; files from before convolutional layers have none), loss, dtype, backend, seed,
          history, optimizer configuration and step count, and the random generators'
          states, so a resumed run continues exactly as an uninterrupted one; a model stopped
          by Ctrl-C in the middle of an epoch also has "resume", where that epoch stopped
          (``Sequential.partial_epoch``). A model with preprocessing, columns or class labels
          has "preprocessing" (the scaler's config), "columns" and "classes" (strings, or the
          dtype of the "classes" tensor); see ``fastnet.preprocessing.to_checkpoint``.
          "fastnet.blake2b" -> a checksum of that metadata and the tensors, which loading verifies
          (``checkpoint_schema.tensor_digest``).
No pickle anywhere; the file is written to a temporary name and moved into place.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import stat
from pathlib import Path


from safetensors.numpy import save as st_save

from fastnet._finite import nonfinite
from fastnet.callbacks import History
from fastnet.checkpoint_schema import DIGEST_KEY, read_checked, tensor_digest
from fastnet.errors import CheckpointError, ConfigError
from fastnet.inputs import as_path
from fastnet.kernels import get_backend
from fastnet.layers import layer_from_config
from fastnet.losses import LOSSES
from fastnet.optimizers import optimizer_from_config
from fastnet.preprocessing import from_checkpoint, to_checkpoint

FORMAT = 1
RESUME_KEYS = ("epoch", "batch", "batch_size", "samples", "order", "loss", "hits", "seconds")


def optimizer_spec(opt) -> dict:
    """An optimizer's kind and configuration, as JSON (not its state); ``optimizer_from_spec`` rebuilds it."""
    return {"kind": type(opt).__name__, "config": opt.config()}


def optimizer_from_spec(spec: dict):
    """A new optimizer, unbound, from ``optimizer_spec``'s dict."""
    return optimizer_from_config(spec["kind"], spec["config"])


def describe(model, include_optimizer: bool = True) -> tuple[dict, dict]:
    """Everything needed to rebuild ``model``: (JSON-able metadata, named tensors)."""
    tensors = model.get_weights()
    meta = {
        "format": FORMAT,
        "layers": [{"kind": type(layer).__name__, "config": layer.config()} for layer in model.layers],
        # a first Conv2D (or Flatten) may have taken its image from the data: its config cannot say it
        "input_shape": list(model.input_shape),
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
        meta["optimizer"] = {**optimizer_spec(opt), "steps": opt.steps}
        tensors.update({f"optimizer.{name}": state for name, state in opt.state.items()})
    if model.partial_epoch is not None:
        meta["resume"] = model.partial_epoch
    carried, carried_tensors = to_checkpoint(model)
    meta.update(carried)
    tensors.update(carried_tensors)
    return meta, tensors


def rebuild(meta: dict, tensors: dict, into, backend: str | None = None, dtype: str | None = None):
    """The inverse of ``describe``, built in ``into``, an uninitialised model (``Sequential.__new__``);
    ``backend`` and ``dtype`` override the saved ones. Returns ``into``.

    The caller supplies the model, so this module never imports the one that defines it.
    """
    layers = [layer_from_config(entry["kind"], entry["config"]) for entry in meta["layers"]]
    model = into
    type(model).__init__(model, *layers, loss=LOSSES[meta["loss"]](), backend=backend or meta["backend"],
                         dtype=dtype or meta["dtype"], seed=meta["seed"])
    if meta.get("input_shape") is not None:  # a no-op when the layers gave it already
        model.build(tuple(meta["input_shape"]))
    model.set_weights({k: v for k, v in tensors.items() if k.startswith("layers.")})
    model.history = History(meta["history"])
    model.shuffle_rng.bit_generator.state = meta["rng"]["shuffle"]
    model.dropout_rng.bit_generator.state = meta["rng"]["dropout"]
    if meta["optimizer"] is not None:
        spec = meta["optimizer"]
        opt = optimizer_from_spec(spec)
        opt.bind(model.params.size, model.dtype, owner=model)
        for name in opt.state_names:
            opt.state[name][...] = tensors[f"optimizer.{name}"]
        opt.steps = spec["steps"]
        model.optimizer = opt
    model.partial_epoch = partial_epoch(meta.get("resume"), model)
    model.set_preprocessing(*from_checkpoint(meta, tensors))
    return model


def partial_epoch(part, model) -> dict | None:
    """The metadata's "resume" (where an interrupted epoch stopped), checked against ``model``.

    None, or absent, for a model saved between epochs; ConfigError for anything that is not a
    resume point ``fit`` could have left.
    """
    if part is None:
        return None

    def invalid(why: str) -> ConfigError:
        return ConfigError(f"its mid-epoch resume point is invalid: {why}")

    if not isinstance(part, dict) or set(part) != set(RESUME_KEYS):
        raise invalid(f"it must be an object with exactly the keys {', '.join(RESUME_KEYS)}")
    if any(type(part[k]) is not int for k in ("epoch", "batch", "batch_size", "samples", "hits")):
        raise invalid("epoch, batch, batch_size, samples and hits must be whole numbers")
    if part["epoch"] != len(model.history):
        raise invalid(f"epoch {part['epoch']} does not follow the {len(model.history)} epochs of the history")
    done = part["batch"] * part["batch_size"]
    if not (part["batch"] >= 1 and part["batch_size"] >= 1 and done < part["samples"]):
        raise invalid(f"batch {part['batch']} of size {part['batch_size']} is not inside an epoch of "
                      f"{part['samples']} samples")
    if not 0 <= part["hits"] <= done * (1 if model.loss.integer_targets else model.n_out):
        raise invalid(f"{part['hits']} hits in {done} samples")
    if any(type(part[k]) not in (int, float) or not 0 <= part[k] < math.inf for k in ("loss", "seconds")):
        raise invalid("loss and seconds must be finite numbers >= 0")
    if part["order"] is not None:
        probe = type(model.shuffle_rng.bit_generator)()
        try:
            probe.state = part["order"]
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            raise invalid(f"order is not a {type(probe).__name__} generator state ({e})") from None
        if probe.state != part["order"]:
            raise invalid(f"order is not a {type(probe).__name__} generator state")
    return dict(part)


def copy_model(model, dtype: str | None = None):
    """An independent copy of ``model`` (weights, optimizer, generators), optionally in another dtype."""
    return rebuild(*describe(model), into=object.__new__(type(model)), dtype=dtype)


def save(model, path, include_optimizer: bool = True) -> None:
    """Write ``model`` to ``path`` atomically: an interrupted save leaves any previous file intact.

    Raises ConfigError, writing nothing, if the parameters or optimizer state hold NaN or Inf.
    """
    path = as_path(path, "save")
    meta, tensors = describe(model, include_optimizer)
    bad = nonfinite(tensors)
    if bad:
        raise ConfigError(f"not saved to {path}: {bad}, so the model has diverged; nothing was written and a file "
                          "already there is left as it was. Train again with a lower learning rate, or from the "
                          "last good checkpoint")
    text = json.dumps(meta)
    # The checksum lets a load tell a file rewritten while it was read (a mix of two models) from a whole one.
    write_atomic(path, st_save(tensors, metadata={"fastnet": text, DIGEST_KEY: tensor_digest(text, tensors)}))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then ``os.replace`` it into place.

    The temporary name, ``.NAME.<16 hex>.<pid>.tmp``, carries the writer's process id, so the temporary
    files that killed writers left beside ``path`` are removed first, and a live writer's never are.
    A file replaced keeps its permissions; a new one gets the umask's. An OSError names ``path``.
    """
    with atomic_file(path) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(path):
    """A binary file to write in pieces, put in place at ``path`` as ``write_atomic`` does when the block ends
    (and removed, ``path`` untouched, when it raises)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    # Not tempfile.mkstemp: its 0600 mode would make every saved model private; this honours the umask.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:
        raise _naming(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            _keep_mode(path, fd)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _naming(e, path) from None
        raise


def _keep_mode(path: Path, fd: int) -> None:
    """Give the temporary file ``fd`` the permission bits of the file at ``path`` it will replace, if any,
    so that overwriting a private (say 0600) file does not widen who may read it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # nothing to replace: the umask decides
        return
    if hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(mode))


def _naming(error: OSError, path: Path) -> OSError:
    """``error``, naming the file the caller asked for, not a temporary name they never saw."""
    if error.errno is None:
        return error
    return type(error)(error.errno, error.strerror, str(path)).with_traceback(error.__traceback__)


def remove_stale_temps(path: Path) -> None:
    """Delete the temporary files of writes to ``path`` whose writer is gone (killed mid-write).

    Names from fastnet versions that put no pid in them (``.NAME.<16 hex>.tmp``) are removed too.
    """
    # The pid comes last and has at most 10 digits, so no other name's temp file (old or new) matches.
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{16}}(?:\.([0-9]{{1,10}}))?\.tmp")
    with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match and (match[1] is None or not _alive(int(match[1]))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine; True when that cannot be told."""
    if os.name == "nt":  # os.kill would terminate the process there, not probe it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # e.g. another user's process: alive
        return True
    return True


def unwritable(path) -> str | None:
    """Why ``write_atomic(path, ...)`` would fail, found without writing anything; None if it should not.

    Lets a command refuse an output path before a long run rather than after it.
    """
    path = Path(path)
    if path.is_dir():
        return "it is a folder"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # write_atomic creates the missing folders
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable"
    return None


def finite(tensors: dict) -> dict:
    """``tensors`` as read from a file, or ConfigError if any holds NaN or Inf: a diverged model is not loaded."""
    bad = nonfinite({name: t for name, t in tensors.items() if name.startswith(("layers.", "optimizer."))})
    if bad:  # preprocessing's tensors are checked, with their own message, as the scaler is rebuilt
        raise ConfigError(f"{bad}: it comes from a run that diverged; load an earlier checkpoint")
    return tensors


def load_into(into, path, backend: str | None = None):
    """Read a model saved with ``model.save`` into ``into``, an uninitialised model; see ``fastnet.load``.

    Raises CheckpointError, naming the file, for anything that is not a fastnet safetensors file:
    the file is checked in full (see ``checkpoint_schema``) before any of its arrays is read.
    """
    if backend is not None:
        get_backend(backend)  # an unknown override is the caller's ConfigError, not a damaged file
    path = as_path(path, "load")
    tensors, meta = read_checked(path, FORMAT)  # bounded reads; all checked before the tensors are read
    try:
        return rebuild(meta, finite(tensors), into, backend=backend)
    except ConfigError as e:
        raise CheckpointError(f"{path} holds a model this fastnet cannot rebuild: {e}") from None
    except MemoryError:  # not the file's fault: the caller (the CLI) reports it as running out of memory
        raise
    except Exception as e:  # whatever else a crafted file provokes, it is still a damaged file
        raise CheckpointError(f"{path} is damaged or incomplete: {type(e).__name__}: {e}") from None
