"""Check a model file before believing anything in it.

``read_checked(path, fmt)`` returns the file's tensors and its fastnet metadata only once

* the path is a regular file of at most ``MAX_FILE_BYTES`` (not /dev/zero, not a FIFO);
* its safetensors header has a sane length, parses, and its tensor table tiles the data exactly;
* the metadata has the structure, types, ranges and finite numbers the schema below requires;
* its preprocessing, column names and class labels, if any, fit the model (widths, counts, label
  lengths), so none of them costs more memory than the model itself;
* each layer's config rebuilds that layer, and one sample's shape, walked from the model's input
  through the layers, fits each of them (channels, kernels and windows that fit their images);
* every tensor the declared architecture implies is there, with exactly the shape and dtype it
  implies, and there is no other;
* it declares at most ``MAX_LAYERS`` layers, and loading it, and the buffers of one sample, fit in the
  memory this process may use;
* what was read matches the checksum saved with it (files saved before checksums have none).

Nothing is allocated on the metadata's word: the header is read on its own first, and
every array that loading then makes is one the file itself holds. Optional keys this
module does not know (such as "resume") are left to ``checkpoint.rebuild``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import reprlib
import stat

import numpy as np

from fastnet._memory import check_fits, format_bytes
from fastnet.errors import CheckpointError, ConfigError
from fastnet.layers import LAYERS, Conv2D, Dense, Flatten, Pool2D, Weighted, layer_from_config
from fastnet.losses import LOSSES
from fastnet.optimizers import optimizer_from_config
from fastnet.preprocessing import CLASSES, KINDS, MAX_LABEL_BYTES, MAX_NAME, SCALE, SHIFT, n_classes

MAX_FILE_BYTES = 4 << 30  # far above any MLP fastnet trains (784-8192-8192-10 in float64 with Adam: 1.8 GB)
MAX_HEADER_BYTES = 16 << 20  # the JSON header: metadata, history and tensor table
MAX_INT = 2**53  # widths, counts and steps beyond this are no real model's
MAX_ITEMS = 100_000  # history records, tensors
MAX_LAYERS = 256  # each costs time and memory however few parameters it has; real MLPs have a handful
DIGEST_KEY = "fastnet.blake2b"  # in the safetensors metadata: tensor_digest of the file's contents
NUMPY_DTYPE = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "BOOL": "|b1"}  # the tensor dtypes a model holds
# (check_tensors admits no other): parameters in F32 or F64; numeric class labels in I64, F64 or BOOL
CLASS_DTYPE = {"int64": "I64", "float64": "F64", "bool": "BOOL"}  # numeric class labels' dtype -> tensor dtype
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
            "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
TENSOR_DTYPE = {"float32": "F32", "float64": "F64"}  # the model's dtype -> its tensors' safetensors dtype
_short = reprlib.Repr()  # values in messages: short, and never deep (a repr can recurse too)
_short.maxstring = _short.maxother = 40
_short.maxlevel = 2
_show = _short.repr


class Invalid(Exception):
    """What is wrong with the file; ``read_checked`` adds its path and turns it into a CheckpointError."""


def read_checked(path, fmt: int) -> tuple[dict[str, np.ndarray], dict]:
    """The tensors of the model file ``path`` and its fastnet metadata, once both are checked.

    Everything comes through one open file handle: the header first, then each tensor straight into
    its own array (no copy of the whole file). A file whose checksum does not match what was read
    (rewritten while it was read, or corrupt) is refused. Raises CheckpointError, naming the file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise CheckpointError(f"cannot read model file {path}: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)  # fstat of what was opened: no race with a swapped path
        f = os.fdopen(fd, "rb") if stat.S_ISREG(info.st_mode) else None
    except OSError as e:
        os.close(fd)
        raise CheckpointError(f"cannot read model file {path}: {e.strerror or e}") from None
    if f is None:
        os.close(fd)
        why = "it is a folder, not a file" if stat.S_ISDIR(info.st_mode) else "it is not a regular file"
        raise CheckpointError(f"cannot read model file {path}: {why}")
    with f:
        try:
            return _read_open(f, path, info.st_size, fmt)
        except OSError as e:
            raise CheckpointError(f"cannot read model file {path}: {e.strerror or e}") from None


def _read_open(f, path, size: int, fmt: int) -> tuple[dict[str, np.ndarray], dict]:
    """``read_checked`` on the open regular file ``f`` of ``size`` bytes."""
    if size > MAX_FILE_BYTES:
        raise CheckpointError(f"cannot read model file {path}: {size:,} bytes is more than the "
                              f"{MAX_FILE_BYTES:,} a fastnet model file may have")
    try:
        header, data_start, text = _read_header(f, size)
    except Invalid as e:
        raise CheckpointError(f"{path} is not a fastnet model file (safetensors with fastnet metadata): "
                              f"{e}") from None
    meta = header["__metadata__"]["fastnet"]
    if meta.get("format") != fmt:
        raise CheckpointError(f"{path} has model format {_show(meta.get('format'))}; this fastnet reads "
                              f"format {fmt}")
    try:
        check_metadata(meta)
        table, spans = _tensor_table(header, size - data_start)
        per_sample = check_tensors(table, meta)
    except Invalid as e:
        raise CheckpointError(f"{path} is damaged or incomplete: {e}") from None
    check_cost(table, size - data_start, path, per_sample * ITEMSIZE[TENSOR_DTYPE[meta["dtype"]]])
    tensors = _read_tensors(f, table, spans, path)
    _check_digest(header["__metadata__"].get(DIGEST_KEY), text, tensors, path)
    return tensors, meta


def check_cost(table: dict, data_len: int, path, sample_bytes: int = 0) -> None:
    """Refuse, before reading any tensor, a model whose loading would not fit in memory.

    Loading holds the tensors as read, then the model's parameters, gradients and optimizer
    state (the same numbers again, plus the gradients) and the float64 draw of its widest layer.
    A model must also have room for the buffers of one sample, ``sample_bytes`` (a few weights can
    declare images of billions of pixels, which no call could then take).
    """
    sizes = {name: math.prod(shape) for name, (_, shape) in table.items()}
    n_params = sum(n for name, n in sizes.items() if name.startswith("layers."))
    n_states = sum(1 for name in sizes if name.startswith("optimizer."))
    itemsize = max((ITEMSIZE[dtype] for dtype, _ in table.values()), default=4)
    widest = max((n for name, n in sizes.items() if name.endswith(".weight")), default=0)
    needed = data_len + (2 + n_states) * n_params * itemsize + 8 * widest + sample_bytes
    what = f"loading {path} ({n_params:,} parameters, {format_bytes(sample_bytes)} of buffers for one sample)"
    try:
        check_fits(needed, what, "free memory or load it on a larger machine")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None


def _read_tensors(f, table: dict, spans: dict, path) -> dict[str, np.ndarray]:
    """Each tensor read from ``f`` (at the start of the data) straight into an array of its own."""
    tensors = {}
    for name in sorted(spans, key=spans.get):  # in file order: one pass, no seeks
        dtype, shape = table[name]
        array = np.empty(shape, np.dtype(NUMPY_DTYPE[dtype]))
        view, done = memoryview(array.reshape(-1).view(np.uint8)), 0
        while done < len(view):
            got = f.readinto(view[done:])
            if not got:
                raise CheckpointError(f"{path} changed while being read or is truncated: tensor {name} is cut "
                                      "short; try again")
            done += got
        tensors[name] = array
    if f.read(1):
        raise CheckpointError(f"{path} changed while being read: it grew past its tensors; try again")
    return tensors


def tensor_digest(text: str, tensors: dict) -> str:
    """A checksum of a model file's contents: its fastnet metadata ``text`` and its ``tensors``
    (names, dtypes, shapes and little-endian bytes, in name order), as stored under DIGEST_KEY."""
    digest = hashlib.blake2b(text.encode(), digest_size=16)
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name], tensors[name].dtype.newbyteorder("<"))
        digest.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def _check_digest(stored, text: str, tensors: dict, path) -> None:
    """Refuse a file whose stored checksum does not match what was read: a mix of two files
    (rewritten in place while it was being read) or a corrupt one."""
    if stored is None:  # saved before fastnet stored checksums: still loaded, as before, unverified
        return
    if stored != tensor_digest(text, tensors):
        raise CheckpointError(f"{path} changed while being read or is corrupt: its contents do not match the "
                              "checksum saved with them; if another program is writing it, try again when it is "
                              "done, else restore it from a copy")


def _read_header(f, size: int) -> tuple[dict, int, str]:
    """The parsed safetensors header of the open file ``f`` (with "fastnet" parsed too), where data starts,
    and the fastnet metadata's text (which the checksum covers)."""
    prefix = f.read(8)
    if len(prefix) < 8:
        raise Invalid(f"only {size} bytes")
    n = int.from_bytes(prefix, "little")
    if n > min(MAX_HEADER_BYTES, size - 8):
        raise Invalid(f"its header length {n:,} is more than the file's {size - 8:,} remaining bytes "
                      f"or the {MAX_HEADER_BYTES:,} a header may have")
    header = _json(f.read(n), "the header")
    _expect(isinstance(header, dict), "the header is not a JSON object")
    extra = header.get("__metadata__")
    _expect(isinstance(extra, dict) and isinstance(extra.get("fastnet"), str), "it has no fastnet metadata")
    text = extra["fastnet"]
    extra["fastnet"] = _json(text.encode(), "the fastnet metadata")
    _expect(isinstance(extra["fastnet"], dict), "the fastnet metadata is not a JSON object")
    return header, 8 + n, text


def _json(text: bytes, what: str):
    try:
        return json.loads(text)
    except RecursionError:
        raise Invalid(f"{what} is nested too deeply") from None
    except ValueError as e:  # also bad UTF-8, and integers of more than 4,300 digits
        raise Invalid(f"{what} is not valid JSON: {e}") from None


def _tensor_table(header: dict, data_len: int) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict]:
    """Each tensor's (dtype, shape), once its byte range is found to match them and the ranges tile the data;
    and each tensor's (begin, end) byte range."""
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    _expect(len(entries) <= MAX_ITEMS, f"it lists {len(entries):,} tensors")
    table, spans = {}, {}
    for name, entry in entries.items():
        _expect(isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"},
                f"tensor {_show(name)} is not described by dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        _expect(dtype in ITEMSIZE, f"tensor {_show(name)} has unknown dtype {_show(dtype)}")
        _expect(isinstance(shape, list) and len(shape) <= 8 and all(_is_int(d, 0) for d in shape),
                f"tensor {_show(name)} has shape {_show(shape)}")
        _expect(isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o, 0) for o in offsets),
                f"tensor {_show(name)} has data_offsets {_show(offsets)}")
        begin, end = offsets
        _expect(end - begin == math.prod(shape) * ITEMSIZE[dtype],
                f"tensor {name} declares shape {shape} of {dtype} but spans {end - begin:,} bytes")
        table[name] = (dtype, tuple(shape))
        spans[name] = (begin, end)
    position = 0
    for begin, end in sorted(spans.values()):
        _expect(begin == position, "its tensors' byte ranges overlap or leave gaps")
        position = end
    _expect(position == data_len, f"its tensors span {position:,} bytes but the file holds {data_len:,}")
    return table, spans


def check_metadata(meta: dict) -> None:
    """Raise Invalid unless ``meta`` has the structure and plain, finite, bounded values a saved model has."""
    layers = meta.get("layers")
    _expect(isinstance(layers, list) and len(layers) > 0, "layers must be a non-empty list")
    _expect(len(layers) <= MAX_LAYERS, f"it declares {len(layers):,} layers; a fastnet model may have at most "
            f"{MAX_LAYERS:,}")
    for i, layer in enumerate(layers):
        _expect(isinstance(layer, dict) and layer.get("kind") in LAYERS and isinstance(layer.get("config"), dict),
                f"layer {i} must be {{'kind': one of {', '.join(LAYERS)}, 'config': {{...}}}}, got {_show(layer)}")
        _check_plain(layer["config"], f"layer {i}'s config")
    shape = meta.get("input_shape")  # absent from files written before convolutional layers
    _expect(shape is None or isinstance(shape, list) and len(shape) in (1, 3) and all(_is_int(v, 1) for v in shape),
            f"input_shape must be [width] or [channels, height, width] of whole numbers >= 1, got {_show(shape)}")
    _expect(meta.get("loss") in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {_show(meta.get('loss'))}")
    _expect(meta.get("dtype") in TENSOR_DTYPE, f"dtype must be float32 or float64, got {_show(meta.get('dtype'))}")
    _expect(isinstance(meta.get("backend"), str), f"backend must be a name, got {_show(meta.get('backend'))}")
    _expect(_is_int(meta.get("seed"), 0, 2**128), f"seed must be a whole number >= 0, got {_show(meta.get('seed'))}")
    history = meta.get("history")
    _expect(isinstance(history, list) and len(history) <= MAX_ITEMS and all(
        isinstance(r, dict) and all(_is_number(v) for v in r.values()) for r in history),
        "history must be a list of records of numbers, one per epoch")
    rng = meta.get("rng")
    _expect(isinstance(rng, dict) and all(_is_pcg64_state(rng.get(k)) for k in ("shuffle", "dropout")),
            "rng must hold the shuffle and dropout generators' PCG64 states")
    spec = meta.get("optimizer")
    if spec is not None:
        _expect(isinstance(spec, dict) and isinstance(spec.get("kind"), str) and isinstance(spec.get("config"), dict),
                f"optimizer must be null or {{'kind', 'config', 'steps'}}, got {_show(spec)}")
        _check_plain(spec["config"], "the optimizer's config")
        _expect(_is_int(spec.get("steps"), 0, MAX_INT),
                f"the optimizer's steps must be a whole number >= 0, got {_show(spec.get('steps'))}")


def check_tensors(table: dict, meta: dict) -> int:
    """Raise Invalid unless the tensors are exactly those the checked ``meta`` implies, shape and dtype.
    Returns how many values one sample's activations and gradients take (``architecture``)."""
    dtype = TENSOR_DTYPE[meta["dtype"]]
    expected, n_params, n_in, n_out, per_sample = architecture(meta)
    spec = meta["optimizer"]
    if spec is not None:
        try:  # allocates nothing: state is made by bind()
            names = optimizer_from_config(spec["kind"], spec["config"]).state_names
        except Exception as e:  # ConfigError, or a TypeError for a keyword it does not take
            raise Invalid(f"its optimizer cannot be rebuilt: {e}") from None
        expected.update({f"optimizer.{name}": (n_params,) for name in names})
    expected = {name: (dtype, shape) for name, shape in expected.items()}
    expected.update(_carried_tensors(meta, n_in, n_out))
    for name, (dtype, shape) in expected.items():
        _expect(name in table, f"tensor {name} is missing")
        _expect(table[name] == (dtype, shape), f"tensor {name} is {table[name][0]} of shape {list(table[name][1])}, "
                f"but the model's architecture needs {dtype} of shape {list(shape)}")
    extra = sorted(set(table) - set(expected))
    _expect(not extra, f"it holds tensors no part of the model uses: {_show(extra)}")
    return per_sample


def architecture(meta: dict) -> tuple[dict, int, int, int, int]:
    """What the checked ``meta``'s layers imply, found by walking one sample's shape from the model's input
    through them, as the model does: each weighted layer's tensors (name -> shape), the parameter count,
    the input and output widths, and how many values one sample's buffers take at least (the input, each
    layer's output and its gradient, each convolution's im2col columns and output scratch). Each layer is
    rebuilt from its config on the way (its own checks: whole numbers in range, a window that fits), which
    allocates nothing. Raises Invalid naming the first layer that does not fit."""
    layers = []
    for i, entry in enumerate(meta["layers"]):
        kind, config = entry["kind"], entry["config"]
        if kind == "Dense":  # Dense(n_out) takes its width from the data; a saved one has it
            n_in, n_out = config.get("n_in"), config.get("n_out")
            _expect(_is_int(n_in, 1) and _is_int(n_out, 1),
                    f"layer {i} (Dense) needs whole numbers n_in and n_out >= 1, got {_show(n_in)}, {_show(n_out)}")
        try:
            layers.append(layer_from_config(kind, config))
        except (ConfigError, TypeError, ValueError) as e:  # TypeError: a keyword it does not take, or one missing
            raise Invalid(f"layer {i} ({kind}): {e}") from None
    _expect(any(isinstance(layer, Dense) for layer in layers), "the model needs at least one Dense layer")
    shape = _input_shape(meta, layers)
    n_in = per_sample = math.prod(shape)
    expected, n_params = {}, 0
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense) and shape != (layer.n_in,):
            raise Invalid(f"layer {i} (Dense) takes {layer.n_in} inputs but the layer before it gives "
                          f"{'x'.join(map(str, shape))}")
        try:
            out = layer.out_shape(shape)
        except ConfigError as e:  # a kernel or window bigger than its image, channels that differ, ...
            raise Invalid(f"layer {i}: {e}") from None
        width = math.prod(out)
        per_sample += 2 * width
        if isinstance(layer, Weighted):
            expected[f"layers.{i}.weight"], expected[f"layers.{i}.bias"] = layer.weight_shape, layer.weight_shape[:1]
            n_params += layer.n_params
        if isinstance(layer, Conv2D):
            per_sample += math.prod(layer.weight_shape[1:]) * math.prod(out[1:]) + width
        shape = out
    return expected, n_params, n_in, shape[0], per_sample


def _input_shape(meta: dict, layers: list) -> tuple[int, ...]:
    """One sample's input shape: the metadata's "input_shape" (files written before convolutional layers have
    none), and the one the first weighted layer declares (its width, or a Conv2D's input_shape) unless a
    Flatten or pooling layer before it reshapes the input; the two must agree when both are there."""
    declared = None
    for layer in layers:
        if isinstance(layer, (Flatten, Pool2D)):
            break
        if isinstance(layer, Weighted):
            declared = (layer.n_in,) if isinstance(layer, Dense) else layer.input_shape
            break
    given = meta.get("input_shape")
    given = None if given is None else tuple(given)
    _expect(given is None or declared is None or given == declared,
            f"its input_shape {list(given or ())} differs from the {list(declared or ())} its first layer takes")
    shape = given or declared
    _expect(shape is not None, "it gives no input_shape, and its first layer declares none")
    return shape


def _carried_tensors(meta: dict, n_in: int, n_out: int) -> dict:
    """Check the optional "preprocessing", "columns" and "classes" against a model of ``n_in`` inputs
    and ``n_out`` outputs; return the tensors they imply, name -> (dtype, shape)."""
    expected = {}
    config = meta.get("preprocessing")
    if config is not None:
        _expect(isinstance(config, dict) and set(config) == {"kind", "n_features", "dtype"}
                and config["kind"] in KINDS and config["dtype"] in TENSOR_DTYPE,
                f"preprocessing must be {{'kind': one of {', '.join(KINDS)}, 'n_features', 'dtype'}}, "
                f"got {_show(config)}")
        _expect(config["n_features"] == n_in and _is_int(config["n_features"], 1),
                f"its scaler takes {_show(config['n_features'])} columns but the model {n_in}")
        if config["kind"] != "none":
            expected.update({SHIFT: ("F64", (n_in,)), SCALE: ("F64", (n_in,))})
    columns = meta.get("columns")
    if columns is not None:
        _check_names(columns, n_in, "columns", "inputs")
    classes = meta.get("classes")
    if classes is not None:
        count = n_classes(LOSSES[meta["loss"]](), n_out)
        _expect(count is not None, f"it has class labels but its {meta['loss']} model with {n_out} outputs "
                "is no classifier")
        if isinstance(classes, dict):
            _expect(set(classes) == {"dtype"} and classes["dtype"] in CLASS_DTYPE,
                    f"classes must be a list of strings or {{'dtype': one of {', '.join(CLASS_DTYPE)}}}, "
                    f"got {_show(classes)}")
            expected[CLASSES] = (CLASS_DTYPE[classes["dtype"]], (count,))
        else:
            _check_names(classes, count, "classes", "classes")
            longest = max((len(c) for c in classes), default=0)
            _expect(count * longest * 4 <= MAX_LABEL_BYTES, f"its {count:,} class labels of up to {longest:,} "
                    f"characters would take more than {MAX_LABEL_BYTES:,} bytes")
    return expected


def _check_names(names, count: int, what: str, whose: str) -> None:
    """``names`` is a list of ``count`` strings of at most MAX_NAME characters."""
    _expect(isinstance(names, list), f"{what} must be a list of names, got {_show(names)}")
    _expect(len(names) == count, f"{what} lists {len(names):,} names but the model has {count:,} {whose}")
    _expect(all(isinstance(n, str) and len(n) <= MAX_NAME for n in names),
            f"{what} must be strings of at most {MAX_NAME:,} characters")


def _check_plain(value, where: str, depth: int = 0) -> None:
    """A configuration holds only strings, booleans, null, finite bounded numbers, and shallow lists or objects."""
    if isinstance(value, (list, dict)):
        _expect(depth < 2 and len(value) <= 16, f"{where} is nested too deeply or too long: {_show(value)}")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            _check_plain(item, f"{where}[{key!r}]", depth + 1)
    elif isinstance(value, float):
        _expect(math.isfinite(value), f"{where} is {value}, not a finite number")
    elif isinstance(value, int) and not isinstance(value, bool):
        _expect(abs(value) <= MAX_INT, f"{where} is {_show(value)}, more than any model uses")
    else:
        _expect(value is None or isinstance(value, (bool, str)), f"{where} holds {_show(value)}")


def _is_pcg64_state(state) -> bool:
    probe = np.random.PCG64()
    try:
        probe.state = state
    except Exception:  # TypeError, ValueError, KeyError, OverflowError, ...
        return False
    return probe.state == state


def _is_int(value, low: int, high: int = MAX_INT) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value) -> bool:
    """A float (NaN too: a validation loss over no samples is one) or a bounded whole number."""
    return isinstance(value, float) or _is_int(value, -MAX_INT)


def _expect(condition: bool, why: str) -> None:
    if not condition:
        raise Invalid(why)
