"""Preprocessing that travels with the model: a scaler fitted on the training data, the column names
and the class labels, stored in the checkpoint so raw data goes in everywhere.

    scaler = fit_scaler("standard", x_train)      # (x - mean) / std, per column
    model.set_preprocessing(scaler, columns=["age", "income"], classes=np.array(["no", "yes"]))
    model.fit(x_train, y)                          # raw x: the model applies the scaler
    model.predict_labels(x_new)                    # "no" / "yes"

Kinds: ``standard`` (x - mean) / std, the std of a constant column taken as 1; ``minmax``
(x - min) / (max - min), a constant column's range taken as 1; ``divide`` x / divisor (255 maps
pixels onto [0, 1]); ``none``, the numbers as they are. The statistics are float64, computed in
chunks of rows, so a large x is never copied whole as float64; ``transform`` writes the model's
dtype, one chunk at a time. A scaler takes the numbers as stored: an ``Images`` array's pixels,
not its scaled values, so a ``divide`` scaler gives the same inputs for uint8 pixels, their
float copy or Images.
"""
from __future__ import annotations

import numpy as np

from fastnet._memory import check_fits
from fastnet.errors import ConfigError, DTypeError, InputError, ShapeError
from fastnet.inputs import float_dtype, is_number

KINDS = ("standard", "minmax", "none", "divide")
CHUNK = 1 << 18  # elements per chunk of rows: the float64 temporary stays at 2 MB whatever the data's size
SHIFT, SCALE = "preprocessing.shift", "preprocessing.scale"  # the checkpoint's tensors
CLASSES = "classes"  # numeric class labels' tensor in the checkpoint (string labels go in the metadata)
MAX_NAME = 1024  # characters in a column name or class label: what a model file may hold, and so a model
MAX_LABEL_BYTES = 64 << 20  # string class labels as a NumPy array: count x longest x 4 bytes


class Scaler:
    """A fitted per-column affine map, ``(x - shift) / scale``; make one with ``fit_scaler``.

    Attributes: ``kind`` (one of KINDS), ``n_features``, ``dtype`` (what ``transform`` writes),
    ``shift`` and ``scale`` (float64, (n_features,); None for kind "none").
    """

    def __init__(self, kind: str, n_features: int, shift=None, scale=None, dtype="float32"):
        if kind not in KINDS:
            raise ConfigError(f"unknown scaler kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind, self.n_features, self.dtype = kind, int(n_features), float_dtype(dtype)
        self.shift = self.scale = None
        if kind != "none":
            self.shift = _column_stat(shift, self.n_features, "shift")
            self.scale = _column_stat(scale, self.n_features, "scale")
            if not (self.scale > 0).all():
                raise ConfigError(f"a scaler's scale must be > 0, got {self.scale[~(self.scale > 0)][0]} "
                                  f"(column {int(np.argmin(self.scale > 0))})")

    def transform(self, x, out=None) -> np.ndarray:
        """``(x - shift) / scale`` as an (n, n_features) array of ``dtype`` (or written into ``out``).

        Computed in float64 a chunk of rows at a time: each row is transformed on its own, so
        transforming a file in pieces gives the same bits as transforming it whole.
        """
        x = check_features(x, self.n_features)
        if out is None:
            check_fits(x.shape[0] * self.n_features * self.dtype.itemsize,
                       f"scaling {x.shape[0]:,} samples", "pass the data in smaller pieces")
            out = np.empty((x.shape[0], self.n_features), self.dtype)
        elif not (isinstance(out, np.ndarray) and out.shape == (x.shape[0], self.n_features) and out.dtype.kind == "f"):
            raise ShapeError(f"transform's out must be a float array of shape {(x.shape[0], self.n_features)}")
        with np.errstate(over="ignore", invalid="ignore"):  # NaN and Inf are the model's input checks' to report
            for rows in _chunks(x):
                if self.kind == "none":
                    out[rows] = x[rows]
                else:
                    out[rows] = _affine(x[rows], self.shift, self.scale)
        return out

    def to_tensors(self) -> dict[str, np.ndarray]:
        """The statistics, for the checkpoint: {SHIFT, SCALE} as float64 (n_features,); {} for kind "none"."""
        return {} if self.kind == "none" else {SHIFT: self.shift.copy(), SCALE: self.scale.copy()}

    def config(self) -> dict:
        """JSON-able: ``{"kind", "n_features", "dtype"}``; with ``to_tensors``, all ``from_checkpoint`` needs."""
        return {"kind": self.kind, "n_features": self.n_features, "dtype": str(self.dtype)}

    @classmethod
    def from_checkpoint(cls, config: dict, tensors: dict) -> Scaler:
        """The scaler ``config()`` and ``to_tensors()`` describe; ConfigError if they describe none."""
        if not isinstance(config, dict) or set(config) != {"kind", "n_features", "dtype"}:
            raise ConfigError(f"a scaler's config must have exactly kind, n_features and dtype, got {config!r}")
        if config["kind"] == "none":
            return cls("none", config["n_features"], dtype=config["dtype"])
        return cls(config["kind"], config["n_features"], tensors.get(SHIFT), tensors.get(SCALE), config["dtype"])

    def astype(self, dtype) -> Scaler:
        """The same scaler, writing ``dtype``."""
        return Scaler(self.kind, self.n_features, self.shift, self.scale, dtype)

    def __repr__(self) -> str:
        return f"Scaler({self.kind!r}, n_features={self.n_features}, dtype={str(self.dtype)!r})"


def fit_scaler(kind: str, x, dtype="float32", *, divisor: float = 255.0) -> Scaler:
    """A ``Scaler`` of ``kind`` fitted on ``x`` (n, features), writing ``dtype``.

    kind: "standard" (x - mean) / std, "minmax" (x - min) / (max - min), "divide" x / ``divisor``
    (255.0: pixels onto [0, 1]) or "none". A constant column's std or range is taken as 1, so it
    becomes 0. Raises ConfigError for an unknown kind, InputError for NaN or Inf in ``x``.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown scaler kind {kind!r}; choose one of {', '.join(KINDS)}")
    x = check_features(x, None)
    n, width = x.shape
    if kind == "none":
        return Scaler("none", width, dtype=dtype)
    if kind == "divide":
        if not (is_number(divisor) and divisor > 0):
            raise ConfigError(f"divisor must be a finite number > 0, got {divisor!r}")
        return Scaler("divide", width, np.zeros(width), np.full(width, float(divisor)), dtype)
    if n == 0:
        raise InputError(f"x is empty: a {kind} scaler is fitted on at least one sample")
    total, low, high = _first_pass(x)
    constant = low == high
    if kind == "minmax":
        return Scaler(kind, width, low, np.where(constant, 1.0, high - low), dtype)
    mean = np.where(constant, low, total / n)  # a constant column's mean exactly, so it becomes exactly 0
    squares = np.zeros(width)
    for rows in _chunks(x):
        part = x[rows].astype(np.float64)
        part -= mean
        part *= part
        squares += part.sum(axis=0)
    std = np.sqrt(squares / n)
    return Scaler(kind, width, mean, np.where(constant | ~(std > 0), 1.0, std), dtype)


def _affine(part: np.ndarray, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(part - shift) / scale`` in float64, in one temporary."""
    wide = part.astype(np.float64)
    wide -= shift
    wide /= scale
    return wide


def _first_pass(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column sums, minima and maxima in float64, a chunk of rows at a time; InputError at a NaN or Inf."""
    width = x.shape[1]
    total, low, high = np.zeros(width), np.full(width, np.inf), np.full(width, -np.inf)
    for rows in _chunks(x):
        part = x[rows]
        if part.dtype.kind == "f" and not np.isfinite(part).all():
            row = rows.start + int(np.argmax(~np.isfinite(part).all(axis=1)))
            raise InputError(f"x contains NaN or Inf (first at row {row}); clean or drop those samples "
                             "before fitting a scaler")
        total += part.sum(axis=0, dtype=np.float64)
        low = np.minimum(low, part.min(axis=0))
        high = np.maximum(high, part.max(axis=0))
    if not (np.isfinite(total).all() and np.isfinite(high - low).all()):
        raise InputError("x holds numbers too large to scale in float64; scale the data down first")
    return total, low, high


def _chunks(x: np.ndarray):
    """Slices of rows of about CHUNK elements each."""
    step = max(1, CHUNK // max(1, x.shape[1]))
    return (slice(start, start + step) for start in range(0, x.shape[0], step))


def _column_stat(values, n: int, what: str) -> np.ndarray:
    """``values`` as a new finite float64 array of shape (n,); ConfigError otherwise."""
    array = None if values is None else np.asarray(values)
    if array is None or array.dtype.kind not in "biuf" or array.shape != (n,):
        raise ConfigError(f"a scaler's {what} must be {n} numbers, one per column")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ConfigError(f"a scaler's {what} holds NaN or Inf (column {int(np.argmin(np.isfinite(array)))})")
    return array


def check_features(x, n_features: int | None) -> np.ndarray:
    """``x`` as a plain 2-D numeric array (an Images' stored pixels), ``n_features`` wide if given."""
    x = np.asarray(x)  # also drops the Images subclass: a scaler takes the stored numbers
    if x.ndim != 2:
        raise ShapeError(f"x must be 2-D (samples, features), got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise ShapeError(f"x has {x.shape[1]} features per sample but the scaler was fitted on {n_features}")
    if x.dtype.kind not in "biuf":
        raise DTypeError(f"x has dtype {x.dtype}; a scaler takes numbers (floats or integers)")
    return x


# ---- what a model carries: checked together, and read back out --------------------------------

def n_classes(loss, n_out: int) -> int | None:
    """How many class labels a model with ``loss`` and ``n_out`` outputs has; None for no classifier."""
    if loss.integer_targets:
        return n_out
    if loss.hits == "threshold_hits" and n_out == 1:
        return 2  # one sigmoid output: the labels of p <= 0.5 and p > 0.5
    return None


def checked(model, scaler, columns, classes) -> tuple[Scaler | None, list[str] | None, np.ndarray | None]:
    """``set_preprocessing``'s arguments, checked against ``model`` and normalised. A model whose first
    ``Dense(n_out)`` has no input width yet is built for the scaler's or the columns' width, once all is checked."""
    width = model.n_in
    if scaler is not None:
        if not isinstance(scaler, Scaler):
            raise ConfigError(f"scaler must be a fastnet.preprocessing.Scaler (fit_scaler(...)) or None, "
                              f"got {type(scaler).__name__}")
        if width is not None and scaler.n_features != width:
            raise ConfigError(f"the scaler was fitted on {scaler.n_features} columns but the model takes {width}")
        width = scaler.n_features
        if scaler.dtype != model.dtype:
            scaler = scaler.astype(model.dtype)
    if columns is not None:
        if not isinstance(columns, (list, tuple, np.ndarray)) or not all(isinstance(c, str) for c in columns):
            raise ConfigError("columns must be a list of column names (strings), one per input")
        columns = [str(c) for c in columns]
        if any(len(c) > MAX_NAME for c in columns):
            raise ConfigError(f"a column name is longer than {MAX_NAME:,} characters; shorten it")
        if width is not None and len(columns) != width:
            raise ConfigError(f"{len(columns)} column names for {width} inputs; give one per input")
        width = len(columns)
    if classes is not None:
        classes = _checked_classes(classes, n_classes(model.loss, model.n_out), model)
    if model.n_in is None and width is not None:
        model.build(width)
    return scaler, columns, classes


def _checked_classes(classes, count: int | None, model) -> np.ndarray:
    if count is None:
        raise ConfigError(f"classes are for classifiers; a model with {type(model.loss).__name__} and "
                          f"{model.n_out} outputs has none")
    array = np.asarray(classes)
    if array.dtype == object and all(isinstance(c, str) for c in array.reshape(-1)):
        array = array.astype(str)
    if array.ndim != 1 or array.dtype.kind not in "biufU":
        raise ConfigError("classes must be a 1-D list of labels, all strings or all numbers")
    if len(array) != count:
        raise ConfigError(f"{len(array)} classes for a model of {count}; give one label per class, in the order "
                          "of its outputs (for one sigmoid output: the label of p <= 0.5, then of p > 0.5)")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ConfigError("classes hold NaN or Inf; class labels must be finite numbers or strings")
    if array.dtype.kind == "u" and len(array) and array.max() > np.iinfo(np.int64).max:
        raise ConfigError("classes hold whole numbers beyond int64; use smaller labels or strings")
    array = array.astype({"i": np.int64, "u": np.int64, "f": np.float64}.get(array.dtype.kind, array.dtype))
    if array.dtype.kind == "U" and (array.itemsize // 4 > MAX_NAME or array.nbytes > MAX_LABEL_BYTES):
        raise ConfigError(f"class labels must be at most {MAX_NAME:,} characters, and all of them at most "
                          f"{MAX_LABEL_BYTES:,} bytes as an array; shorten them")
    if len(np.unique(array)) != len(array):
        raise ConfigError("classes hold the same label twice; each class needs its own label")
    return array


def labels(model, x) -> np.ndarray:
    """``model.predict_labels(x)``: the class of each sample, as ``model.classes`` names it."""
    if n_classes(model.loss, model.n_out) is None:
        raise ConfigError(f"predict_labels is for classifiers; a model with {type(model.loss).__name__} and "
                          f"{model.n_out} outputs gives values: use predict")
    outputs = model.predict(x)
    index = outputs.argmax(axis=1) if model.loss.integer_targets else (outputs[:, 0] > 0.5).astype(np.int64)
    return index if model.classes is None else model.classes[index]


def to_checkpoint(model) -> tuple[dict, dict]:
    """The model's preprocessing, columns and classes as (metadata entries, tensors); both empty when
    it has none, so a model without them is saved exactly as before."""
    meta, tensors = {}, {}
    if model.preprocessing is not None:
        meta["preprocessing"] = model.preprocessing.config()
        tensors.update(model.preprocessing.to_tensors())
    if model.columns is not None:
        meta["columns"] = list(model.columns)
    if model.classes is not None:
        if model.classes.dtype.kind == "U":
            meta["classes"] = model.classes.tolist()
        else:
            meta["classes"] = {"dtype": str(model.classes.dtype)}
            tensors[CLASSES] = model.classes
    return meta, tensors


def from_checkpoint(meta: dict, tensors: dict) -> tuple[Scaler | None, list[str] | None, np.ndarray | None]:
    """The (scaler, columns, classes) that ``to_checkpoint`` stored; None for each one absent (older files)."""
    config = meta.get("preprocessing")
    scaler = None if config is None else Scaler.from_checkpoint(config, tensors)
    classes = meta.get("classes")
    if isinstance(classes, dict):
        classes = tensors[CLASSES]
    return scaler, meta.get("columns"), None if classes is None else np.asarray(classes)
