"""Read your own data: CSV and TSV tables, NumPy ``.npy`` and ``.npz`` files, and Parquet.

Your own data (Python)
----------------------
::

    import fastnet as fn
    from fastnet import tables

    table = tables.read("penguins.csv", target="species")   # x: the other columns; y: class indices
    mean, std = table.x.mean(axis=0), table.x.std(axis=0)    # the values come as they are: scale them
    model = fn.Sequential(fn.Dense(table.x.shape[1], 32), fn.ReLU(), fn.Dense(32, len(table.classes)),
                          loss=fn.SoftmaxCrossEntropy(), seed=0)
    model.fit((table.x - mean) / std, table.y, epochs=20, optimizer=fn.Adam(lr=0.01))
    for x in tables.iter_chunks("new.csv", columns=table.columns):   # any size: a chunk at a time
        print(table.classes[model.predict((x - mean) / std).argmax(axis=1)])   # the original labels

Formats, by the file's extension
--------------------------------
- **Text** (``.csv``, ``.tsv``, any other name): UTF-8 (a BOM is allowed), a header line of column
  names, then one row per line; blank lines are skipped. The delimiter is the extension's (``.csv`` a
  comma, ``.tsv`` a tab) when the header holds it, else whichever of comma, tab, ``;`` and ``|`` the
  header holds most. Fields may be quoted, but a row may not run onto a second line.
  ``target`` names a column; by default the last one is the target.
- **``.npy``**: the features, an array of shape (samples, features), more dimensions being flattened
  (images (n, 28, 28) give 784 columns). The targets are a second ``.npy`` of shape (samples,),
  named by ``target``: ``tables.read("x.npy", target="y.npy")``.
- **``.npz``** (``np.savez(path, x=..., y=...)``): the features in the array ``x`` (or ``X``), the
  targets in ``y``, or in the array ``target`` names.
- **``.parquet``** and **``.pq``**: columns as in a text table. Needs pyarrow (``pip install
  pyarrow``, or the ``parquet`` extra).

An array's columns are named ``x0``, ``x1``, ... NumPy files are never unpickled
(``allow_pickle=False``): an object array is refused.

The target and the task
-----------------------
The task is classification when the target holds text or booleans, or whole numbers with at most
:data:`MAX_CLASSES` distinct values and at most half as many distinct values as rows (each class
seen about twice or more); otherwise regression. ``task=`` overrides it. For classification ``y``
holds class indices into ``classes``, the sorted distinct labels as the file has them (text stays
text); for regression ``y`` holds the values.

Errors
------
Every problem is one line, a :class:`~fastnet.errors.DataError` naming the file and where: in a
text file the row is its line number, as an editor counts (the header is row 1); in Parquet the
row counts the data rows from 1; in an array it is the index, ``x[4, 2]``. Features must be
finite numbers. Empty fields and ``NA``, ``N/A``, ``NaN``, ``null``, ``None`` and the like (see
:data:`MISSING`) are missing values, refused everywhere.

Memory
------
Rows are parsed a chunk at a time (about 8 MB of text, or ``chunk_rows`` rows) straight into the
output arrays, so :func:`read` holds the result plus one chunk and :func:`iter_chunks` one chunk.
A Fortran-ordered ``.npy`` (``np.save`` of a transposed array) is read whole.
"""
from __future__ import annotations

import csv
import os
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from math import prod
from pathlib import Path

import numpy as np

from fastnet import _memory
from fastnet.errors import ConfigError, DataError
from fastnet.inputs import float_dtype

__all__ = ["Table", "read", "iter_chunks", "column_names", "infer_task", "MAX_CLASSES", "MISSING", "TASKS"]

MAX_CLASSES = 100
"""Whole-number targets with more distinct values than this are taken for regression."""
TASKS = ("classification", "regression")
MISSING = frozenset({"", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "-NaN", "NULL", "null", "None", "#N/A", "<NA>",
                     "?"})
"""Field texts (after stripping spaces) that mean a missing value, as pandas reads them, and ``?``."""
CHUNK_BYTES = 8 << 20  # a text chunk: big enough that per-chunk overhead vanishes, small beside the output
TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
DELIMITERS = (",", "\t", ";", "|")
SHOWN_COLUMNS = 12  # an error lists at most this many column names


@dataclass(frozen=True, eq=False)
class Table:
    """A data set read by :func:`read`: what training needs.

    Attributes
    ----------
    x : ndarray, shape (n, d)
        The features, floats of the dtype asked for.
    y : ndarray, shape (n,)
        Class indices (int64) into ``classes`` for classification; the values, floats, for regression.
    columns : list of str
        The names of the d feature columns, in order.
    target : str
        The target's name: its column, or its array or file.
    task : {"classification", "regression"}
    classes : ndarray or None
        The sorted distinct labels as the file has them (text stays text), or None for regression.
    """

    x: np.ndarray
    y: np.ndarray
    columns: list[str]
    target: str
    task: str
    classes: np.ndarray | None

    def __len__(self) -> int:
        return len(self.x)


def read(path, target: str | None = None, task: str | None = None, dtype="float32",
         chunk_rows: int | None = None) -> Table:
    """Read a data file's features and target.

    Parameters
    ----------
    path : str or path-like
        A text table (.csv, .tsv, ...), .npy, .npz or .parquet file: see the module's docstring.
    target : str, optional
        The target column's name (default the last column); for .npz the array's name (default
        ``y``); for .npy the path of the targets' .npy file (required).
    task : {"classification", "regression"}, optional
        Default: inferred from the target (see the module's docstring).
    dtype : {"float32", "float64"}
        The dtype of ``x`` (and of ``y`` for regression).
    chunk_rows : int, optional
        Rows parsed at a time; by default about 8 MB of text.

    Raises DataError for a missing, unreadable or malformed file, in one line naming the file and
    the row or column; ConfigError for a bad argument.
    """
    dtype, chunk_rows = _check_options(dtype, chunk_rows)
    if task is not None and task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}, or leave it out to infer it")
    if target is not None and not isinstance(target, str):
        target = str(target)
    return _open(path).read(target, task, dtype, chunk_rows)


def iter_chunks(path, columns: list[str] | None = None, dtype="float32",
                chunk_rows: int | None = None) -> Iterator[np.ndarray]:
    """The named columns of a data file, a chunk of rows at a time, as float arrays (m, len(columns)).

    ``columns`` defaults to every column (every feature of an array file); the file may hold
    others, such as a target, which are skipped. Only one chunk is in memory at a time.
    Raises DataError as :func:`read` does, for the rows it has reached.
    """
    dtype, chunk_rows = _check_options(dtype, chunk_rows)
    source = _open(path)  # a bad file or column is refused here, before the first chunk is asked for
    indices = source.indices(source.columns if columns is None else list(columns))

    def chunks():
        rows = 0
        for x, _ in source.blocks(indices, None, chunk_rows):
            rows += len(x)
            yield x.astype(dtype, copy=False)
        if not rows:
            raise source.no_rows()
    return chunks()


def column_names(path) -> list[str]:
    """The file's column names (an array's are x0, x1, ...), read from its header alone."""
    return list(_open(path).columns)


def infer_task(y) -> str:
    """"classification" or "regression" for targets ``y``, by the rule in the module's docstring."""
    y = np.asarray(y)
    if y.dtype.kind in "bUSO":
        return "classification"
    values = np.unique(y)
    whole = y.dtype.kind in "iu" or bool(np.all(values == np.round(values)))
    few = len(values) <= MAX_CLASSES and 2 * len(values) <= len(y)
    return "classification" if whole and few else "regression"


# --- the shared parts: options, targets, the growing output --------------------------------------

def _check_options(dtype, chunk_rows) -> tuple[np.dtype, int | None]:
    dtype = float_dtype(dtype)
    whole = isinstance(chunk_rows, (int, np.integer)) and not isinstance(chunk_rows, bool)
    if chunk_rows is not None and not (whole and chunk_rows >= 1):
        raise ConfigError(f"chunk_rows must be a whole number >= 1 (or None), got {chunk_rows!r}")
    return dtype, chunk_rows


def _shown(names) -> str:
    names = list(names)
    listed = ", ".join(repr(n) for n in names[:SHOWN_COLUMNS])
    return listed + (f", ... ({len(names)} in all)" if len(names) > SHOWN_COLUMNS else "")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _cell_problem(text: str) -> str:
    """What is wrong with a feature's field (or a value's str), said for an error message."""
    if text.strip() in MISSING:
        value = f"({text!r})" if text.strip() else "(an empty field)"
        return f"a missing value {value}; fill in or drop the rows with missing values"
    if _is_number(text):
        return f"{text!r} is not a finite number; fix or drop the row"
    return f"{text!r} is not a number; feature columns must hold numbers (encode text as numbers, or drop it)"


def _first_missing(labels: np.ndarray) -> int | None:
    """The index of the first missing value among text labels, or None."""
    missing = np.isin(np.char.strip(labels), list(MISSING))
    return int(np.argmax(missing)) if missing.any() else None


def _encode(y: np.ndarray, task: str | None, where: str, labels: list[str] | None = None,
            whole_as_int: bool = False, dtype=np.float32) -> tuple[np.ndarray, str, np.ndarray | None]:
    """(y for training, the task, the classes) from the target's values.

    ``labels``: the target was text and ``y`` holds indices into these labels, in order of first
    appearance. ``whole_as_int``: the numbers were parsed from text, so whole-number classes are
    given back as integers (3, not 3.0).
    """
    if task == "regression" and (labels is not None or y.dtype.kind == "U"):
        raise DataError(f"{where} holds text ({str(labels[0] if labels else y[0])!r}); regression needs numbers: "
                        f"use task='classification', or another target")
    if labels is not None:
        order = np.argsort(np.array(labels))
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        return rank[y], "classification", np.array(labels)[order]
    task = task or infer_task(y)
    if task == "regression":
        return y.astype(dtype), task, None
    classes = np.unique(y)
    if classes.dtype.kind == "f":
        fractional = classes[classes != np.round(classes)]
        if len(fractional):
            raise DataError(f"{where} holds fractional numbers such as {fractional[0].item()!r}, not classes: "
                            f"use task='regression', or whole numbers or text as labels")
    codes = np.searchsorted(classes, y).astype(np.int64, copy=False)  # lighter than unique's inverse
    if classes.dtype.kind == "f" and whole_as_int:
        classes = classes.astype(np.int64)
    return codes, task, classes


class _Output:
    """The rows read so far, in arrays allocated once for the rows expected (grown if that was short)."""

    def __init__(self, rows: int, width: int, dtype: np.dtype, what: str):
        rows = max(rows, 1)
        _memory.check_fits(rows * (width * dtype.itemsize + 8), f"reading {what}",
                           "read fewer columns or rows, or use dtype float32")
        self.x = np.empty((rows, width), dtype)
        self.y = None  # allocated with the first target block, in its dtype
        self.labels: dict[str, int] | None = None  # a text target's labels -> index, in order of appearance
        self.n = 0

    def add(self, x: np.ndarray, y: np.ndarray | None) -> None:
        m = len(x)
        if self.n + m > len(self.x):
            self.x.resize((max(2 * len(self.x), self.n + m), self.x.shape[1]), refcheck=False)
        self.x[self.n:self.n + m] = x
        if y is not None:
            self._add_target(y)
        self.n += m

    def _add_target(self, y: np.ndarray) -> None:
        if y.dtype.kind == "U":  # text: kept as indices into the labels seen so far
            self.labels = {} if self.labels is None else self.labels
            found, inverse = np.unique(y, return_inverse=True)
            codes = np.array([self.labels.setdefault(str(label), len(self.labels)) for label in found], np.int64)
            y = codes[inverse.reshape(-1)]
        if self.y is None:
            self.y = np.empty(len(self.x), y.dtype)
        elif len(self.y) < len(self.x):
            self.y.resize(len(self.x), refcheck=False)
        self.y[self.n:self.n + len(y)] = y

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
        """x, the target's values (or indices into the labels), and the text labels (or None)."""
        for array in (self.x, self.y):
            if array is not None and len(array) != self.n:
                array.resize((self.n,) + array.shape[1:], refcheck=False)
        return self.x, self.y, None if self.labels is None else list(self.labels)


# --- sources: one class per format ----------------------------------------------------------------

def _open(path):
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory; give a data file (.csv, .tsv, .npy, .npz or .parquet)")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _Npy(path)
    if suffix == ".npz":
        return _Npz(path)
    if suffix in (".parquet", ".pq"):
        return _Parquet(path)
    return _Text(path)


def _check_names(path: Path, names: list[str]) -> None:
    """Every column has a name of its own."""
    for i, name in enumerate(names):
        if not name:
            raise DataError(f"{path}: column {i + 1} of the header has no name (an index written by pandas? "
                            f"save with index=False); name every column")
    first = {}
    for i, name in enumerate(names):
        if name in first:
            raise DataError(f"{path}: the header names column {name!r} twice (columns {first[name] + 1} and "
                            f"{i + 1}); give each column its own name")
        first[name] = i


class _Source:
    """A table: its ``columns``, and ``blocks`` giving (x, y) a chunk of rows at a time."""

    path: Path
    columns: list[str]
    whole_as_int = False  # _encode's option: True where numbers are parsed from text

    def indices(self, names: list[str]) -> list[int]:
        """The positions of the named columns; a missing one is a DataError listing the columns."""
        where = {name: i for i, name in enumerate(self.columns)}
        absent = [name for name in names if name not in where]
        if absent:
            raise DataError(f"{self.path}: no column {_shown(absent)}; its columns are {_shown(self.columns)}")
        return [where[name] for name in names]

    def no_rows(self) -> DataError:
        return DataError(f"{self.path}: has no data rows; add rows of data")

    def read(self, target, task, dtype, chunk_rows) -> Table:
        """The table, its target being one of its columns (by default the last)."""
        name = self.columns[-1] if target is None else target
        t = self.indices([name])[0]
        features = [i for i in range(len(self.columns)) if i != t]
        if not features:
            raise DataError(f"{self.path}: has only the target column {name!r}; add columns of features (or is "
                            f"the delimiter not a comma, tab, ';' or '|'?)")
        x, y, labels = self._collect(features, t, dtype, chunk_rows, task)
        y, task, classes = _encode(y, task, f"{self.path}: target column {name!r}", labels, self.whole_as_int,
                                   dtype)
        return Table(x, y, [self.columns[i] for i in features], name, task, classes)

    def _collect(self, features, target, dtype, chunk_rows, task=None):
        """x, y and the text labels (or None), read a block at a time into the output."""
        out = _Output(self.rows_hint(), len(features), dtype, str(self.path))
        for x, y in self.blocks(features, target, chunk_rows, task):
            out.add(x, y)
        if not out.n:
            raise self.no_rows()
        return out.arrays()

    def rows_hint(self) -> int:
        """The number of data rows, or more."""
        raise NotImplementedError

    def blocks(self, features: list[int], target: int | None, chunk_rows: int | None,
               task: str | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(the feature columns (m, len(features)), the target column (m,) or None) per chunk."""
        raise NotImplementedError


# --- text tables ----------------------------------------------------------------------------------

class _TextTarget(Exception):
    """A numeric pass over a text table met a target that is a text label."""


class _Text(_Source):
    """A delimited text table with a header line."""

    whole_as_int = True

    def __init__(self, path: Path):
        self.path, self.text_target = path, False
        with self._open_text() as f:
            self.header_row, line = 0, ""
            while not line.strip():
                line = self._decoded(f.readline)
                self.header_row += 1
                if not line:
                    raise DataError(f"{path}: the file is empty; a table needs a header line of column names "
                                    f"and rows of data")
        self.delimiter = _delimiter(path, line)
        header = csv.reader([line], delimiter=self.delimiter, skipinitialspace=True)
        self.columns = [name.strip() for name in next(header)]
        _check_names(path, self.columns)
        if all(_is_number(name) for name in self.columns):
            raise DataError(f"{path}: the first line holds numbers, not column names; add a header line "
                            f"naming the columns")

    def _open_text(self):
        return open(self.path, encoding="utf-8-sig")

    def _decoded(self, read, *args):
        try:
            return read(*args)
        except UnicodeDecodeError:
            raise DataError(f"{self.path}: is not UTF-8 text; save the table as UTF-8 CSV, or give a .npy, "
                            f".npz or .parquet file") from None

    def rows_hint(self) -> int:
        """The file's line endings, less the header's."""
        ends, last = 0, b"\n"
        with open(self.path, "rb") as f:
            while block := f.read(1 << 20):
                ends += max(block.count(b"\n"), block.count(b"\r"))
                last = block[-1:]
        return ends + (last not in b"\r\n") - self.header_row

    def read(self, target, task, dtype, chunk_rows) -> Table:
        try:
            return super().read(target, task, dtype, chunk_rows)
        except _TextTarget:  # outside this block, so the first pass's arrays are freed before the second's
            pass
        self.text_target = True
        return super().read(target, task, dtype, chunk_rows)

    def blocks(self, features, target, chunk_rows, task=None):
        """(x as float64, the target as float64 or text, or None) per chunk of lines.

        The target is parsed as numbers until a label is not one: then _TextTarget, so that
        :meth:`read` starts again with ``text_target`` set (unless ``task`` is regression: an error).
        """
        text = target is not None and self.text_target
        wanted = features + ([target] if target is not None and not text else [])
        with self._open_text() as f:
            for _ in range(self.header_row):
                f.readline()
            row = self.header_row + 1
            while lines := self._decoded(f.readlines, CHUNK_BYTES) if chunk_rows is None else \
                    self._decoded(list, islice(f, chunk_rows)):
                block = self._fast(lines, wanted, target if text else None, len(features))
                if block is None:
                    block = self._rows(lines, row, features, target, task)
                if len(block[0]):
                    yield block
                row += len(lines)

    def _fast(self, lines, wanted, text_target, n_features):
        """The chunk as NumPy's C reader parses it, or None if it holds anything unusual (quotes, a
        short or long row, a value that is not a finite number), for :meth:`_rows` to parse and report."""
        every = sorted(wanted) == list(range(len(self.columns)))
        if not every:  # NumPy counts the fields only of the columns it parses: count them all here
            lines = [line for line in lines if not line.isspace()]
            quotes = text_target is not None  # a text label may be quoted: _labels checks how
            if any(line.count(self.delimiter) != len(self.columns) - 1 or (not quotes and '"' in line)
                   for line in lines):
                return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "input contained no data": a chunk of blank lines
                values = np.loadtxt(lines, delimiter=self.delimiter, comments=None, ndmin=2,
                                    usecols=None if every else wanted)
        except ValueError:
            return None
        if not len(values):
            return np.empty((0, n_features)), None
        if every:
            if values.shape[1] != len(self.columns):
                return None
            values = values if wanted == sorted(wanted) else values[:, wanted]
        if not np.isfinite(values).all():
            return None
        if text_target is not None:
            labels = self._labels(lines, text_target)
            return None if labels is None or _first_missing(labels) is not None else (values, labels)
        return values[:, :n_features], (values[:, n_features] if len(wanted) > n_features else None)

    def _labels(self, lines, target):
        """The target's field of each line, unquoted if quoted whole ("setosa"); None if quotes are
        anywhere else, for the csv module to judge."""
        labels = []
        for line in lines:
            label = line.rstrip("\n").split(self.delimiter)[target]
            if '"' in line:
                quoted = label.lstrip(" ")
                inner = quoted[1:-1]
                if line.count('"') != label.count('"') or len(quoted) < 2 or quoted[0] != '"' or \
                        quoted[-1] != '"' or '"' in inner.replace('""', ""):
                    return None
                label = inner.replace('""', '"')
            labels.append(label.strip())
        return np.array(labels)

    def _rows(self, lines, first_row, features, target, task):
        """The chunk as the csv module parses it, every problem reported by row and column."""
        rows, numbers = self._split_rows(lines, first_row)
        cells = np.empty((len(rows), len(self.columns)), object)
        if rows:
            cells[:] = rows
        x = self._numbers(cells, numbers, features)
        return x, None if target is None else self._target(cells[:, target], numbers, target, task)

    def _split_rows(self, lines, first_row):
        reader = csv.reader(lines, delimiter=self.delimiter, skipinitialspace=True, strict=True)
        rows, numbers, done = [], [], 0
        try:
            for fields in reader:
                row = first_row + done
                if reader.line_num - done > 1:
                    raise DataError(f"{self.path}: row {row}: a quoted field runs onto the next line; "
                                    f"each row must be one line")
                done = reader.line_num
                if len(fields) == len(self.columns):
                    rows.append(fields)
                    numbers.append(row)
                elif fields and not (len(fields) == 1 and fields[0].isspace()):
                    raise DataError(f"{self.path}: row {row} has {len(fields)} fields but the header has "
                                    f"{len(self.columns)}; fix the row (a stray or missing {self.delimiter!r}?)")
        except csv.Error as error:
            raise DataError(f"{self.path}: row {first_row + done}: {error}; check its quotes") from None
        return rows, numbers

    def _numbers(self, cells, numbers, columns):
        """The cells of the feature columns as float64; the first that is not a finite number is an error."""
        try:
            values = cells[:, columns].astype(np.float64)
        except ValueError:
            values = None
        if values is None or not np.isfinite(values).all():
            i, j = _first_bad(cells[:, columns])
            raise DataError(f"{self.path}: row {numbers[i]}, column {self.columns[columns[j]]!r}: "
                            f"{_cell_problem(cells[i, columns[j]])}")
        return values

    def _target(self, cells, numbers, target, task):
        """The target's cells: text labels, or float64 if it holds only numbers (see :meth:`blocks`)."""
        where = f"{self.path}: row {{}}, target column {self.columns[target]!r}"
        labels = np.array([text.strip() for text in cells])
        missing = _first_missing(labels)
        if missing is not None:
            raise DataError(f"{where.format(numbers[missing])}: a missing value ({cells[missing]!r}); "
                            f"fill in or drop the rows with missing targets")
        if self.text_target:
            return labels
        try:
            values = labels.astype(np.float64)
        except ValueError:
            values = None
        if values is not None and np.isfinite(values).all():
            return values
        i = _first_bad(cells[:, None])[0]
        if _is_number(cells[i]):
            raise DataError(f"{where.format(numbers[i])}: {cells[i]!r} is not a finite number; fix or drop the row")
        if task == "regression":
            raise DataError(f"{where.format(numbers[i])}: {cells[i]!r} is not a number; regression needs "
                            f"numbers (text labels need task='classification')")
        raise _TextTarget


def _first_bad(cells) -> tuple[int, ...]:
    """The index of the first cell (in row order) that is not a finite number."""
    for index, text in np.ndenumerate(cells):
        if not (_is_number(text) and np.isfinite(float(text))):
            return index
    raise AssertionError("no bad cell")  # callers look only where NumPy found one


def _delimiter(path: Path, header: str) -> str:
    """The extension's delimiter if the header holds it, else the one it holds most, else a comma."""
    preferred = TEXT_SUFFIXES.get(path.suffix.lower())
    if preferred and preferred in header:
        return preferred
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else preferred or ","


# --- NumPy files ----------------------------------------------------------------------------------

class _Arrays(_Source):
    """Features in one array, targets in another: the pair of a .npy and its targets' .npy, or a .npz."""

    y_index = None  # what messages call the targets' array, if not by its name

    def __init__(self, path: Path):
        self.path = path
        self.x_name = self._features_name()
        with self._array(self.x_name) as (f, size, label):
            self.shape, _, self.dtype = _npy_header(f, size, label)
        if len(self.shape) < 2 or not prod(self.shape[1:]):
            raise DataError(f"{label}: holds an array of shape {self.shape}; features need an array of shape "
                            f"(samples, features), e.g. x.reshape(-1, 1) for a single feature")
        if self.dtype.kind not in "biuf":
            raise DataError(f"{label} holds {self.dtype} values; features must be numbers")
        self.columns = [f"x{j}" for j in range(prod(self.shape[1:]))]

    def _features_name(self) -> str:
        return "x"

    def _array(self, name: str):
        """A context manager giving (the open .npy stream, its size in bytes, a label for messages)."""
        raise NotImplementedError

    def _target_name(self, target: str | None) -> str:
        raise NotImplementedError

    def rows_hint(self) -> int:
        return self.shape[0]

    def read(self, target, task, dtype, chunk_rows) -> Table:
        name = self._target_name(target)
        y = self._targets(name)
        x = self._collect(list(range(len(self.columns))), None, dtype, chunk_rows)[0]
        if len(y) != len(x):
            raise DataError(f"{self.path}: {self.x_name} has {len(x):,} samples but {name} has {len(y):,} "
                            f"targets; they must be as many")
        y, task, classes = _encode(y, task, f"{self.path}: target {name!r}", dtype=dtype)
        return Table(x, y, list(self.columns), name, task, classes)

    def blocks(self, features, target, chunk_rows, task=None):
        every = features == list(range(len(self.columns)))
        with self._array(self.x_name) as (f, size, label):
            for start, x in _npy_rows(f, size, label, chunk_rows):
                if x.dtype.kind == "f" and not np.isfinite(x).all():
                    i, j = np.argwhere(~np.isfinite(x))[0]
                    index = ", ".join(map(str, (start + i, *np.unravel_index(j, self.shape[1:]))))
                    raise DataError(f"{label}: {self.x_name}[{index}]: {_cell_problem(str(x[i, j]))}")
                yield (x if every else x[:, features]), None

    def _targets(self, name: str) -> np.ndarray:
        """The targets, read whole: one number or text label per sample."""
        with self._array(name) as (f, size, label):
            parts = [y for _, y in _npy_rows(f, size, label, None)]
        y = np.concatenate(parts) if parts else np.empty((0, 1))
        if y.shape[1] != 1:
            raise DataError(f"{label} holds {y.shape[1]} values per sample; the target must be one value per "
                            f"sample, shape (n,)")
        y = y.reshape(-1)
        if y.dtype.kind == "S":
            y = np.char.decode(y, "ascii", errors="replace")
        bad = _first_missing(y) if y.dtype.kind == "U" else \
            (int(np.argmin(np.isfinite(y))) if y.dtype.kind == "f" and not np.isfinite(y).all() else None)
        if bad is not None:
            raise DataError(f"{label}: {self.y_index or name}[{bad}]: {_cell_problem(str(y[bad]))}")
        return y


class _Npy(_Arrays):
    """A .npy of features; the targets are another .npy, named by ``target``."""

    y_index = "y"  # what messages call the targets' array: its file's name is said before

    def _array(self, name):
        return _npy_file(self.path if name == self.x_name else Path(name))

    def _target_name(self, target):
        if target is None:
            raise DataError(f"{self.path}: a .npy file holds the features only; name the targets' .npy file as "
                            f"the target (target='y.npy', --target y.npy), or save both in one .npz "
                            f"(np.savez('data.npz', x=x, y=y))")
        if not Path(target).is_file():
            raise DataError(f"{target}: no such file (the targets' .npy file)")
        return target


class _Npz(_Arrays):
    """A .npz holding the features as ``x`` (or ``X``) and the targets as ``y`` or any name."""

    def _features_name(self) -> str:
        arrays = self.arrays()
        if "x" in arrays and "X" in arrays:
            raise DataError(f"{self.path}: holds arrays 'x' and 'X'; keep one, the features")
        if "x" not in arrays and "X" not in arrays:
            raise DataError(f"{self.path}: has no array 'x' of features; it holds {_shown(arrays)}: "
                            f"save with np.savez(path, x=features, y=targets)")
        return "x" if "x" in arrays else "X"

    def arrays(self) -> list[str]:
        """The names of the arrays the file holds."""
        with self._zip() as z:
            return [n[:-4] for n in z.namelist() if n.endswith(".npy")]

    def _zip(self):
        try:
            return zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as error:
            raise DataError(f"{self.path}: is not a .npz file (a zip of .npy arrays): {error}") from None

    @contextmanager
    def _array(self, name):
        with self._zip() as z:
            try:
                with z.open(f"{name}.npy") as f:
                    yield f, z.getinfo(f"{name}.npy").file_size, f"{self.path} array {name!r}"
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
                raise DataError(f"{self.path}: array {name!r} cannot be read: {error}") from None

    def _target_name(self, target):
        name = "y" if target is None else target
        if name not in self.arrays():
            raise DataError(f"{self.path}: has no array {name!r} of targets; it holds {_shown(self.arrays())}")
        return name


@contextmanager
def _npy_file(path: Path):
    try:
        with open(path, "rb") as f:
            yield f, os.fstat(f.fileno()).st_size, str(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read it: {error}") from None


def _npy_header(f, size: int, label: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The shape, order and dtype a .npy stream's header declares, checked against its size."""
    try:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = header(f)
    except (ValueError, EOFError) as error:
        raise DataError(f"{label}: is not a NumPy .npy array ({error})") from None
    if dtype.hasobject:
        raise DataError(f"{label}: holds Python objects, which only unpickling can read, and fastnet never "
                        f"unpickles (allow_pickle=False); save numbers, or text labels as a str array")
    if dtype.names or dtype.kind not in "biufUS":
        raise DataError(f"{label}: holds {dtype} values; save numbers (or text labels)")
    if not shape:
        raise DataError(f"{label}: holds a single value; save an array with one row per sample")
    nbytes, left = prod(shape) * dtype.itemsize, size - f.tell()
    if nbytes > left:
        raise DataError(f"{label}: truncated: its header promises {nbytes:,} bytes of data but {left:,} follow")
    return shape, fortran, dtype


def _npy_rows(f, size: int, label: str, chunk_rows: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows (m, width)) of a .npy stream, a chunk at a time; a Fortran-order array is read whole."""
    shape, fortran, dtype = _npy_header(f, size, label)
    n, width = shape[0], prod(shape[1:])
    row_bytes = width * dtype.itemsize
    if fortran and len(shape) > 1:
        whole = np.frombuffer(f.read(n * row_bytes), dtype).reshape(shape[::-1]).T.reshape(n, width)
        step = chunk_rows or n
        yield from ((start, whole[start:start + step]) for start in range(0, n, step))
        return
    step = chunk_rows or max(1, CHUNK_BYTES // max(row_bytes, 1))
    for start in range(0, n, step):
        m = min(step, n - start)
        data = f.read(m * row_bytes)
        if len(data) < m * row_bytes:
            raise DataError(f"{label}: truncated after row {start + len(data) // max(row_bytes, 1)} of {n:,}")
        yield start, np.frombuffer(data, dtype).reshape(m, width)


# --- Parquet ---------------------------------------------------------------------------------------

def _pyarrow(path: Path):
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ConfigError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    return pyarrow


class _Parquet(_Source):
    """A Parquet file's columns (a pandas index stored beside them is left out)."""

    def __init__(self, path: Path):
        self.path, self.pa = path, _pyarrow(path)
        try:
            self.file = self.pa.parquet.ParquetFile(path)
        except (self.pa.ArrowException, OSError) as error:
            raise DataError(f"{path}: is not a readable Parquet file: {error}") from None
        self.columns = [n for n in self.file.schema_arrow.names if not n.startswith("__index_level_")]
        _check_names(path, self.columns)

    def rows_hint(self) -> int:
        return self.file.metadata.num_rows

    def blocks(self, features, target, chunk_rows, task=None):
        names = [self.columns[i] for i in features + ([] if target is None else [target])]
        step = chunk_rows or max(1, CHUNK_BYTES // (8 * len(names)))
        row = 1
        try:
            for batch in self.file.iter_batches(batch_size=step, columns=names):
                x = np.empty((batch.num_rows, len(features)))
                for k in range(len(features)):
                    x[:, k] = self._values(batch.column(k), names[k], row, feature=True)
                y = None if target is None else self._values(batch.column(len(features)), names[-1], row)
                yield x, y
                row += batch.num_rows
        except (self.pa.ArrowException, OSError) as error:
            raise DataError(f"{self.path}: cannot read rows from {row:,} on: {error}") from None

    def _values(self, array, name: str, row: int, feature: bool = False) -> np.ndarray:
        """A column's values as NumPy: numbers or booleans, or text labels (a target only)."""
        where = f"{self.path}: row {{}}, column {name!r}"
        if array.null_count:
            first = int(np.argmax(array.is_null().to_numpy(zero_copy_only=False)))
            raise DataError(f"{where.format(row + first)}: a missing value (null); fill in or drop the rows "
                            f"with missing values")
        types = self.pa.types
        if types.is_dictionary(array.type):
            array = array.dictionary_decode()
        if types.is_string(array.type) or types.is_large_string(array.type):
            values = np.array(array.to_pylist(), dtype=str)
            if feature:
                raise DataError(f"{where.format(row)}: the column holds text ({str(values[0])!r}); feature columns "
                                f"must hold numbers (encode text as numbers, or drop it)")
            bad = _first_missing(values)
        elif types.is_integer(array.type) or types.is_floating(array.type) or types.is_boolean(array.type) \
                or types.is_decimal(array.type):
            values = array.to_numpy(zero_copy_only=False)
            values = values.astype(np.float64) if values.dtype.kind == "O" else values  # decimals
            bad = int(np.argmin(np.isfinite(values))) if values.dtype.kind == "f" and \
                not np.isfinite(values).all() else None
        else:
            raise DataError(f"{self.path}: column {name!r} holds {array.type} values; fastnet reads numbers, "
                            f"booleans and text labels")
        if bad is not None:
            raise DataError(f"{where.format(row + bad)}: {_cell_problem(str(values[bad]))}")
        return values
