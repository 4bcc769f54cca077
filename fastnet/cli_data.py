"""The command line's own data: tables (CSV, TSV, .npy, .npz, Parquet) for ``fastnet train``, ``evaluate``
and ``predict``, the seeded train/validation/test splits, shifted copies of training images (--shift), and
predictions written a chunk at a time.

``fastnet.cli`` keeps the commands; this module keeps what they do with a data file.
"""
from __future__ import annotations

import csv
import io
import math
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fastnet import tables
from fastnet._memory import check_fits
from fastnet.checkpoint import atomic_file
from fastnet.datasets import Dataset, scaled
from fastnet.errors import ConfigError, DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".txt", ".npy", ".npz", ".parquet", ".pq")
ARRAY_SUFFIXES = (".npy", ".npz")
SCALES = ("standard", "minmax", "none")
MAX_SHIFT = 14  # pixels: half of an MNIST image
SHIFT_AUTO_BELOW = 20_000  # --shift auto shifts training sets smaller than this (the bundled sample's 7,200)
AUTO_SHIFT = 2
NPY_HEADER_BYTES = 128  # room for any shape's header, so the row count can be written once it is known


def is_table(path) -> bool:
    """Whether --data names a table file (a folder, or a path that is neither, keeps the IDX meaning)."""
    return bool(path) and not os.path.isdir(path) and (
        Path(path).suffix.lower() in TABLE_SUFFIXES or os.path.isfile(path))


def data_inputs(args) -> list[tuple[str, str]]:
    """The table files a command reads, as (label, path), for the path rule (no output overwrites them)."""
    found = []
    if is_table(getattr(args, "data", None)):
        found.append(("--data", args.data))
        if Path(args.data).suffix.lower() == ".npy" and getattr(args, "target", None):
            found.append(("--target", args.target))
    return found


@dataclass
class Splits:
    """The three parts a training run uses, each a Dataset; ``task`` and the class labels say how to score."""

    train: Dataset
    val: Dataset | None
    test: Dataset
    task: str
    classes: np.ndarray | None  # the original labels (tables), or None (images: their names are in .classes)
    columns: list[str] | None


def split(y: np.ndarray, fraction: float, seed, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) row indices, sorted: ``fraction`` of the rows held out at random, seeded, and with
    ``stratify`` that fraction of every class."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    held = np.concatenate([rng.permutation(g)[:int(round(fraction * len(g)))] for g in groups])
    mask = np.zeros(len(y), bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _part(data: Dataset, rows: np.ndarray, part: str) -> Dataset:
    return Dataset(data.x[rows], data.y[rows], data.classes, data.name, part)


def hold_out(data: Dataset, fraction: float, seed, stratify: bool, what: str) -> tuple[Dataset, Dataset | None]:
    """``data`` less a seeded ``fraction`` of it, and that fraction (None for 0); refuses a part left empty."""
    if not fraction:
        return data, None
    kept, held = split(data.y, fraction, seed, stratify)
    if not len(kept) or not len(held):
        raise ConfigError(f"{what} {fraction} of {len(data):,} samples leaves {len(kept):,} to train on and "
                          f"{len(held):,} held out; give a fraction that leaves both parts some samples")
    return _part(data, kept, data.split), _part(data, held, "validation")


def scaled_for(model, data: Dataset | None) -> Dataset | None:
    """Images' uint8 pixels as ``model`` takes them: a model with no scaler of its own (trained in Python
    on ``fn.datasets.load``'s x) is given that x, float32 pixels / 255."""
    if data is None or model.preprocessing is not None or data.x.dtype != np.uint8:
        return data
    return replace(data, x=scaled(data.x))


def image_splits(args, train: Dataset, test: Dataset) -> Splits:
    """MNIST-style images: the validation set is carved from the training set, the test set kept for the end;
    with --shift, the training part gains its shifted copies (``args.shift`` "auto" becomes the number used)."""
    train, val = hold_out(train, args.validation_split, [args.seed, 1], True, "--validation-split")
    if args.shift == "auto":
        args.shift = AUTO_SHIFT if len(train) < SHIFT_AUTO_BELOW else 0
    if args.shift:
        train = shifted(train, args.shift)
    return Splits(train, val, test, "classification", None, None)


def shifted(data: Dataset, pixels: int) -> Dataset:
    """``data`` and copies of its square images moved by 1 to ``pixels`` pixels up, down, left and right,
    the edge they leave filled with 0: 4·pixels copies, each in ``data``'s order, after the originals."""
    n, width = data.x.shape
    side = math.isqrt(width)
    if side * side != width:
        raise ConfigError(f"--shift moves square images, but {data.name} has {width:,} pixels a sample")
    if pixels >= side:
        raise ConfigError(f"--shift {pixels} moves {side}x{side} images out of sight; give less than {side}")
    copies = 1 + 4 * pixels
    check_fits(copies * data.x.nbytes, f"--shift {pixels} ({copies} copies of {n:,} {side}x{side} images)",
               "give a smaller --shift, or --shift 0")
    x = np.zeros((copies, n, side, side), data.x.dtype)
    x[0] = data.x.reshape(n, side, side)
    moves = [(d * dy, d * dx) for d in range(1, pixels + 1) for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1))]
    for copy, (dy, dx) in zip(x[1:], moves):
        copy[:, max(dy, 0):side + min(dy, 0), max(dx, 0):side + min(dx, 0)] = \
            x[0][:, max(-dy, 0):side + min(-dy, 0), max(-dx, 0):side + min(-dx, 0)]
    return replace(data, x=x.reshape(copies * n, width), y=np.tile(data.y, copies))


def table_splits(args) -> Splits:
    """Read --data (and --test), and split off the test set (unless --test) and the validation set."""
    table = tables.read(args.data, target=args.target, task=args.task, dtype=args.dtype)
    classify = table.task == "classification"
    data = _dataset(table, table.classes, args.data, "train")
    if args.test and Path(args.test).suffix.lower() == ".npy":
        raise ConfigError(f"--test {args.test}: a .npy file holds features only; give the test set with its "
                          f"targets as a .npz (np.savez(path, x=..., y=...)), or use --test-split")
    if args.test:
        other = tables.read(args.test, target=args.target if _named_target(args.data) else None, task=table.task,
                            dtype=args.dtype)
        test = _dataset(other, table.classes, args.test, "test",
                        in_order(other, args.test, table.columns, f"--data {args.data}"))
    else:
        data, test = hold_out(data, 0.2 if args.test_split is None else args.test_split, args.seed, classify,
                              "--test-split")
        test = Dataset(test.x, test.y, test.classes, test.name, "test")
    train, val = hold_out(data, args.validation_split, [args.seed, 1], classify, "--validation-split")
    return Splits(train, val, test, table.task, table.classes, table.columns)


def _named_target(path) -> bool:
    """Whether --target names a column (or .npz array) that a --test file has too; for .npy it is a file."""
    return Path(path).suffix.lower() != ".npy"


def in_order(table, path, columns: list[str], source: str) -> np.ndarray:
    """``table.x`` (read from ``path``) with its columns in the order of ``columns``, those of ``source`` (a
    file or the model): matched by name when both have names, by position when either is an array's x0,
    x1, ... Refuses other columns in one line."""
    if table.columns == columns:
        return table.x
    unnamed = _unnamed(columns) or _unnamed(table.columns)
    missing = [c for c in columns if c not in table.columns]
    if len(table.columns) != len(columns) or (missing and not unnamed):
        what = f"no column {missing[0]!r}" if missing and not unnamed else f"{len(table.columns)} feature columns"
        raise DataError(f"{path}: has {what}, but {source} has {len(columns)} ({_names(columns)}); give the data "
                        "the same feature columns")
    return table.x if unnamed else table.x[:, [table.columns.index(c) for c in columns]]


def _unnamed(columns: list[str]) -> bool:
    """Whether ``columns`` are an array's, x0, x1, ...: positions, not names."""
    return columns == [f"x{j}" for j in range(len(columns))]


def _dataset(table, classes, path, part: str, x=None) -> Dataset:
    """A Table as a Dataset, its class indices re-coded into ``classes`` (the training file's labels)."""
    y = table.y
    if classes is not None:
        y = class_indices(table, classes, path)
    names = [] if classes is None else [str(c) for c in classes]
    return Dataset(table.x if x is None else x, y, names, Path(path).stem, part)


def class_indices(table, classes: np.ndarray, path) -> np.ndarray:
    """``table``'s targets as indices into ``classes``; a label not among them is refused in one line."""
    labels = table.classes
    if labels is None:
        raise DataError(f"{path}: target {table.target!r} holds numbers read as regression, but the model "
                        f"classifies into {len(classes)} classes")
    known = {str(c): i for i, c in enumerate(classes)}
    unknown = [str(c) for c in labels if str(c) not in known]
    if unknown:
        raise DataError(f"{path}: target {table.target!r} holds the label {unknown[0]!r}, which the training "
                        f"data did not have (its classes: {', '.join(map(str, classes[:12]))})")
    return np.array([known[str(c)] for c in labels], np.int64)[table.y]


def targets(model, y: np.ndarray) -> np.ndarray:
    """``y`` as ``fit`` and ``evaluate`` take it: class indices, or a column per output for regression."""
    return y if model.loss.integer_targets else y.reshape(len(y), -1)


def r2(y: np.ndarray, predicted: np.ndarray) -> float:
    """The coefficient of determination, averaged over outputs, as scikit-learn's r2_score gives it."""
    y, predicted = y.reshape(len(y), -1).astype(np.float64), predicted.reshape(len(y), -1).astype(np.float64)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    residual = ((y - predicted) ** 2).sum(axis=0)
    return float(np.mean(1 - residual / np.where(total > 0, total, 1.0)))


def score(model, data: Dataset, comm=None) -> dict:
    """``model.evaluate`` on ``data``, with ``r2`` for a regression."""
    result = model.evaluate(data.x, targets(model, data.y), comm=comm)
    if not model.loss.integer_targets:
        result["r2"] = r2(data.y, model.predict(data.x))
    return result


def score_text(result: dict) -> str:
    """The score a person reads: r2 for a regression, else accuracy."""
    return f"r2 {result['r2']:.4f}" if "r2" in result else f"accuracy {result['accuracy']:.2%}"


def evaluate_table(args, model) -> tuple[Dataset, dict]:
    """``fastnet evaluate MODEL --data FILE``: the file's targets scored as the model was trained."""
    classify = model.loss.integer_targets
    table = tables.read(args.data, target=args.target, task="classification" if classify else "regression",
                        dtype=str(model.dtype))
    if model.columns:
        x = in_order(table, args.data, model.columns, f"the model {args.model}")
    else:
        check_width(model, args.data, table.columns, table.x.shape[1])
        x = table.x
    classes = (model.classes if model.classes is not None else np.arange(model.n_out)) if classify else None
    data = _dataset(table, classes, args.data, "test", x)
    return data, score(model, data, args.comm)


def check_width(model, path, columns: list[str], width: int) -> None:
    """Refuse, in one line, features that are not as many as the model takes."""
    if width != model.n_in:
        raise DataError(f"{path}: has {width} feature column{'s' * (width != 1)} but the model takes {model.n_in}"
                        + (f" ({_names(model.columns)})" if model.columns else "")
                        + "; give the data the model was trained on")


def _names(columns) -> str:
    return ", ".join(map(repr, columns[:12])) + (f", ... ({len(columns)} in all)" if len(columns) > 12 else "")


def predict_columns(model, path) -> list[str] | None:
    """The columns of ``path`` to predict on: the model's by name in a table with a header (one more column,
    the target, is dropped), every column of an array file. Refuses a mismatch in one line."""
    columns = tables.column_names(path)
    named = Path(path).suffix.lower() not in ARRAY_SUFFIXES
    if not (named and model.columns) or _unnamed(model.columns):  # by position
        if len(columns) == model.n_in + 1 and named:  # the target left in, last as by default
            return columns[:-1]
        check_width(model, path, columns, len(columns))
        return None
    missing = [c for c in model.columns if c not in columns]
    if missing:
        raise DataError(f"{path}: has no column {missing[0]!r}, which the model was trained on "
                        f"({_names(model.columns)}); give the data the model was trained on")
    extra = [c for c in columns if c not in model.columns]
    if len(extra) > 1:
        raise DataError(f"{path}: has columns the model was not trained on ({_names(extra)}); a target column may "
                        "stay, other columns must go")
    return list(model.columns)


def predict(args, model, say) -> int:
    """``fastnet predict``: labels (or --proba probabilities, or values) a chunk at a time, to CSV or .npy."""
    proba = args.proba
    classify = model.loss.integer_targets
    if proba and not classify:
        raise ConfigError(f"--proba gives class probabilities, but {args.model} is a regression model (its loss "
                          f"is {type(model.loss).__name__}); leave --proba out")
    columns = predict_columns(model, args.data)
    chunks = tables.iter_chunks(args.data, columns=columns, dtype=str(model.dtype))
    labels = model.classes if model.classes is not None else np.arange(model.n_out)
    names = [str(c) for c in labels] if proba else \
        ["prediction"] if model.n_out == 1 or classify else [f"prediction{j}" for j in range(model.n_out)]

    def outputs():
        for x in chunks:
            p = model.predict(x)
            yield p if proba else labels[p.argmax(axis=1)] if classify else p[:, 0] if model.n_out == 1 else p

    dtype = model.dtype if proba or not classify else labels.dtype
    suffix = Path(args.out).suffix.lower() if args.out else ".csv"
    if suffix == ".npy":
        rows = write_npy(args.out, outputs(), dtype, () if len(names) == 1 and not proba else (len(names),))
    elif suffix in (".csv", ".txt", ".tsv"):
        rows = write_csv(args.out, outputs(), names, "\t" if suffix == ".tsv" else ",", model.dtype)
    else:
        raise ConfigError(f"--out {args.out}: fastnet predict writes .csv (or .tsv) and .npy files; give one of "
                          "those extensions")
    if args.out:
        say(f"{rows:,} predictions from {args.model} written to {args.out}")
    return 0


def _text(values: np.ndarray, float_dtype) -> list:
    """Rows of strings: floats written with the digits their dtype holds, labels as they are."""
    if values.dtype.kind == "f":
        digits = 9 if np.dtype(float_dtype).itemsize == 4 else 17
        values = np.char.mod(f"%.{digits}g", values)
    values = values.astype(str)
    return values.reshape(len(values), -1).tolist()


def write_csv(path, chunks, header: list[str], delimiter: str, float_dtype) -> int:
    """Write a header and the chunks' rows as CSV to ``path`` (atomically), or to stdout; returns the rows."""
    def write(stream) -> int:
        writer, rows = csv.writer(stream, delimiter=delimiter, lineterminator="\n"), 0
        writer.writerow(header)
        for chunk in chunks:
            writer.writerows(_text(chunk, float_dtype))
            rows += len(chunk)
        return rows

    if not path:
        rows = write(sys.stdout)
        sys.stdout.flush()
        return rows
    with atomic_file(path) as f:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        rows = write(text)
        text.flush()
        text.detach()
    return rows


def write_npy(path, chunks, dtype, row_shape: tuple) -> int:
    """Write the chunks as one .npy array, atomically: a header with room for any row count, the rows as
    they come, then the header again with the count."""
    dtype = np.dtype(dtype)
    with atomic_file(path) as f:
        f.write(_npy_header(dtype, (0, *row_shape)))
        rows = 0
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype).tobytes())
            rows += len(chunk)
        f.seek(0)
        f.write(_npy_header(dtype, (rows, *row_shape)))
    return rows


def _npy_header(dtype: np.dtype, shape: tuple) -> bytes:
    """A version 1.0 .npy header padded to NPY_HEADER_BYTES, whatever the shape."""
    text = f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    magic = np.lib.format.magic(1, 0)
    size = NPY_HEADER_BYTES - len(magic) - 2
    return magic + size.to_bytes(2, "little") + text.ljust(size - 1).encode("latin1") + b"\n"
