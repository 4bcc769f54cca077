"""Datasets: the bundled MNIST sample, MNIST and Fashion-MNIST.

>>> from fastnet import datasets
>>> train, test = datasets.load("mnist-sample")
>>> train.x.shape, train.x.dtype, float(train.x.max()), train.y.dtype
((8000, 784), dtype('float32'), 1.0, dtype('uint8'))

``x`` is what the model sees: plain float32 pixels / 255 in [0, 1], so ``astype``, slicing or
``np.concatenate`` cannot change the values a model trains on. ``load(..., pixels=True)`` gives
the uint8 pixels as stored instead (4 times less memory), for code that keeps the division by
255 in the model, as the command line does (a ``"divide"`` scaler, see
:mod:`fastnet.preprocessing`), or wraps them in :class:`Images`. Labels stay uint8.
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from importlib.resources import as_file, files
from math import prod
from pathlib import Path

import numpy as np
import platformdirs

from ._memory import check_fits
from .errors import ConfigError, DataError, ShapeError
from .idx import IdxFile, check_labels, open_images
from .inputs import Images

__all__ = ["Dataset", "Images", "load", "load_idx", "scaled", "data_files", "default_root", "NAMES", "CLASSES",
           "MIRRORS", "CHECKSUMS", "SIZES"]

SAMPLE = "mnist-sample"
NAMES = (SAMPLE, "mnist", "fashion-mnist")
ENV_VAR = "FASTNET_DATA"

# The four IDX files of a set, in the order (train images, train labels, test
# images, test labels); each may also be stored with a ".gz" suffix.
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_DIGITS = [str(i) for i in range(10)]
CLASSES = {
    SAMPLE: _DIGITS,
    "mnist": _DIGITS,
    "fashion-mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
}

# torchvision's layout, root/MNIST/raw/ and root/FashionMNIST/raw/: downloads go
# there, so that torchvision can use them too.
TORCHVISION_DIRS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}

# Tried in order. Tests point these at a server on 127.0.0.1.
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}

# Pinned hashes of the .gz files, in pooch's "algorithm:hex" form. These are the
# MD5s torchvision pins (torchvision/datasets/mnist.py, MNIST.resources and
# FashionMNIST.resources).
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    },
}


# The size in bytes of each .gz file: a download stops as soon as a mirror sends
# more. As torchvision and keras report them when they fetch these files.
SIZES = {
    "mnist": {
        "train-images-idx3-ubyte.gz": 9_912_422,
        "train-labels-idx1-ubyte.gz": 28_881,
        "t10k-images-idx3-ubyte.gz": 1_648_877,
        "t10k-labels-idx1-ubyte.gz": 4_542,
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": 26_421_880,
        "train-labels-idx1-ubyte.gz": 29_515,
        "t10k-images-idx3-ubyte.gz": 4_422_102,
        "t10k-labels-idx1-ubyte.gz": 5_148,
    },
}
# A hundred times MNIST's 60,000, ten times the largest IDX sets (EMNIST's 700,000): a header claiming
# more is a mistake or an attack, whose epochs would never end even when its memory fits.
MAX_SAMPLES = 10_000_000
PER_SAMPLE_BYTES = 1 + 8 + 8  # its label, and its int64 index in the shuffled order and in predict's batches
TIMEOUT = 30  # seconds without a byte from a mirror before giving up on it
_DOWNLOAD_CHUNK = 1 << 16


@dataclass(frozen=True, eq=False)
class Dataset:
    """One split of a dataset.

    Attributes
    ----------
    x : numpy.ndarray
        Images flattened to shape (n, rows * cols): float32 pixels / 255 in [0, 1],
        or, loaded with ``pixels=True``, the uint8 pixels (0..255) as stored.
    y : numpy.ndarray
        Labels, shape (n,), uint8 in ``0 .. len(classes) - 1``.
    classes : list of str
        Class names: label ``i`` means ``classes[i]``.
    name : str
        The dataset, e.g. ``"mnist"``.
    split : str
        ``"train"`` or ``"test"``.
    """

    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    name: str = ""
    split: str = ""

    def __post_init__(self):
        if self.x.ndim != 2 or self.y.shape != (len(self.x),):
            raise ShapeError(
                f"Dataset needs x of shape (n, features) and y of shape (n,), "
                f"got {self.x.shape} and {self.y.shape}"
            )

    def __len__(self) -> int:
        return len(self.y)


def load(name: str = SAMPLE, root: str | os.PathLike | None = None, download: bool = False,
         progress: bool = True, pixels: bool = False):
    """Load a dataset as ``(train, test)``.

    Parameters
    ----------
    name : {"mnist-sample", "mnist", "fashion-mnist"}
        ``"mnist-sample"`` (8,000 train / 2,000 test MNIST digits) ships with
        fastnet; it ignores ``root`` and ``download``.
    root : str or os.PathLike, optional
        A folder holding the four IDX files (raw or ``.gz``), either directly or
        in torchvision's layout ``root/MNIST/raw/`` or ``root/FashionMNIST/raw/``.
        Defaults to :func:`default_root`.
    download : bool
        Fetch the files that are missing into ``root/MNIST/raw/`` (or
        ``root/FashionMNIST/raw/``), checking each against a pinned checksum.
        Files already there are never replaced.
    progress : bool
        Say on stderr which file is being downloaded (pooch's log); False keeps a download silent.
    pixels : bool
        False (the default): each ``x`` is float32 pixels / 255 in [0, 1], what a model sees.
        True: the uint8 pixels as stored, 0..255, with no scale attached: used as they are
        unless the model scales them (a ``"divide"`` scaler) or they are wrapped in :class:`Images`.

    Returns
    -------
    train, test : Dataset

    Raises
    ------
    ConfigError
        ``name`` is not one of :data:`NAMES`.
    DataError
        The files are missing (and ``download`` is false), a download fails or
        does not match its checksum, or a file is corrupt or inconsistent.
    """
    if name not in NAMES:
        raise ConfigError(f"unknown dataset {name!r}; valid names: {', '.join(NAMES)}")
    if name == SAMPLE:
        return _load_sample(pixels)
    root = default_root() if root is None else Path(root)
    raw_dir = root / TORCHVISION_DIRS[name] / "raw"
    for directory in (raw_dir, root):
        paths, missing = _idx_paths(directory)
        if not missing:
            return _load_files(paths, name, CLASSES[name], pixels)
    if not download:
        raise DataError(
            f"{name} not found: looked for {', '.join(f'{stem}[.gz]' for stem in FILES)} "
            f"in {raw_dir} and in {root}. Pass download=True (--download on the command "
            f"line) to fetch it, or point root (--data DIR) at a folder holding these files."
        )
    _download(name, raw_dir, progress)
    return _load_files(_idx_paths(raw_dir)[0], name, CLASSES[name], pixels)


def load_idx(directory: str | os.PathLike, classes: list[str] | None = None, name: str = "",
             pixels: bool = False):
    """Load the four MNIST-style IDX files in ``directory`` as ``(train, test)``.

    Parameters
    ----------
    directory : str or os.PathLike
        Holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or
        ``.gz`` (the raw file is used when both are there).
    classes : list of str, optional
        Class names; labels must lie in ``0 .. len(classes) - 1``.
        Default: the digits ``"0"`` to ``"9"``.
    name : str
        Stored as ``Dataset.name``; defaults to the folder's name.
    pixels : bool
        As in :func:`load`: False gives float32 pixels / 255, True the uint8 pixels as stored.

    Returns
    -------
    train, test : Dataset

    Raises
    ------
    DataError
        A file is missing, corrupt, or inconsistent with the others.
    """
    directory = Path(directory)
    paths, missing = _idx_paths(directory)
    if missing:
        raise DataError(f"{directory}: missing {', '.join(f'{stem}[.gz]' for stem in missing)}")
    return _load_files(paths, name or directory.name, classes or _DIGITS, pixels)


def data_files(name: str = SAMPLE, root: str | os.PathLike | None = None, idx: bool = False) -> list[Path]:
    """Every path ``load(name, root, download=True)`` (or, with ``idx``, ``load_idx(root)``) may read or
    download into: the raw and .gz names of the four IDX files in each folder it looks in.

    So that a command can refuse, before it starts, to write its outputs over its data.
    """
    if idx:
        folders = [Path(root)]
    elif name == SAMPLE:
        folders = [Path(str(files("fastnet") / "data" / SAMPLE))]
    else:
        root = default_root() if root is None else Path(root)
        folders = [root / TORCHVISION_DIRS[name] / "raw", root]
    return [folder / f"{stem}{gz}" for folder in folders for stem in FILES for gz in ("", ".gz")]


def default_root() -> Path:
    """The folder datasets live in: ``$FASTNET_DATA`` if set, else a per-user cache."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("fastnet"))  # pooch.os_cache's folder


def _idx_paths(directory: Path):
    """The four files in ``directory`` (raw before ``.gz``) and the stems not found."""
    paths, missing = [], []
    for stem in FILES:
        try:
            found = [p for p in (directory / stem, directory / f"{stem}.gz") if p.is_file()]
        except OSError as error:  # e.g. a folder the user may not search
            raise DataError(f"{directory}: cannot look for {stem}[.gz] there: {error.strerror or error}") from None
        if found:
            paths.append(found[0])
        else:
            missing.append(stem)
    return paths, missing


def _load_sample(pixels: bool = False):
    base = files("fastnet") / "data" / SAMPLE
    with ExitStack() as stack:
        paths = [stack.enter_context(as_file(base / f"{stem}.gz")) for stem in FILES]
        return _load_files(paths, SAMPLE, CLASSES[SAMPLE], pixels)


def _load_files(paths, name: str, classes: list[str], pixels: bool = False):
    """Read (train images, train labels, test images, test labels) into two Datasets.

    The four headers are compared before any data is read, so a set that does not
    agree (a gzip bomb among them, say) is refused without inflating anything.
    """
    with ExitStack() as stack:
        headers = [stack.enter_context(opener(path))
                   for opener, path in zip((open_images, _open_labels) * 2, paths)]
        train_x, train_y, test_x, test_y = headers
        _check_split(train_x, train_y)
        _check_split(test_x, test_y)
        if train_x.shape[1:] != test_x.shape[1:]:
            raise DataError(
                f"train images are {'x'.join(map(str, train_x.shape[1:]))} ({paths[0]}) but "
                f"test images are {'x'.join(map(str, test_x.shape[1:]))} ({paths[2]})"
            )
        check_cost((train_x, test_x), len(classes), pixels)
        return tuple(
            Dataset(_features(images.read().reshape(images.shape[0], -1), pixels),
                    check_labels(labels.read(), len(classes), labels.path), list(classes), name, split)
            for images, labels, split in ((train_x, train_y, "train"), (test_x, test_y, "test"))
        )


def _features(raw: np.ndarray, pixels: bool) -> np.ndarray:
    """The uint8 pixels as they are (``pixels``), else ``scaled(raw)``."""
    return raw if pixels else scaled(raw)


def scaled(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels as :func:`load` gives them: float32 pixels / 255, in [0, 1].

    The bits a float32 model's batch gather makes of ``Images(pixels)``: float32(pixel) / float32(255).
    """
    return np.divide(pixels, np.float32(255), dtype=np.float32)


def check_cost(image_files, n_classes: int, pixels: bool = False) -> None:
    """Refuse, from their headers alone, image sets with more than MAX_SAMPLES samples, or whose data
    and what training and scoring make of it (PER_SAMPLE_BYTES and a float64 score per class for each
    sample) would not fit in the memory this process may use. A pixel takes 1 byte with ``pixels``,
    else 4 (float32), plus its uint8 byte while it is read."""
    for images in image_files:
        if images.shape[0] > MAX_SAMPLES:
            raise DataError(f"{images.path}: the header claims {images.shape[0]:,} images, more than the "
                            f"{MAX_SAMPLES:,} a fastnet dataset may have; use a subset of the data")
    pixel_bytes = 1 if pixels else 4 + 1  # float32, and the uint8 it is made from
    needed = sum(images.shape[0] * (pixel_bytes * prod(images.shape[1:]) + PER_SAMPLE_BYTES + 8 * n_classes)
                 for images in image_files)
    counts = " and ".join(f"{images.shape[0]:,}" for images in image_files)
    try:
        check_fits(needed, f"the dataset in {image_files[0].path.parent} ({counts} images, their labels and "
                   "scores)", "use a subset of the data")
    except ConfigError as e:
        raise DataError(str(e)) from None


def _open_labels(path: Path) -> IdxFile:
    return IdxFile(path, 1)


def _check_split(images: IdxFile, labels: IdxFile) -> None:
    """The headers of a split's two files must declare the same, nonzero, number of samples."""
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images.path} holds {images.shape[0]} images but {labels.path} holds {labels.shape[0]} labels"
        )
    if images.shape[0] == 0:
        raise DataError(f"{images.path} holds no images")


def _download(name: str, directory: Path, progress: bool = True) -> None:
    """Fetch the files missing from ``directory``; a file already there is left alone.

    pooch streams each file to a temporary file in ``directory``, checks its hash
    and only then renames it into place; on any failure the temporary is deleted.
    """
    for stem in FILES:
        if not (directory / stem).is_file() and not (directory / f"{stem}.gz").is_file():
            with _pooch_log(progress):
                _fetch(name, f"{stem}.gz", directory)


@contextmanager
def _pooch_log(progress: bool):
    """pooch logs each download at INFO on stderr; without ``progress``, only its warnings.

    A filter, not setLevel: pooch's logger is outside logging's tree, so a level change would not
    clear the answer it cached for INFO at an earlier download.
    """
    import pooch

    def warnings_only(record):
        return record.levelno >= logging.WARNING

    logger = pooch.get_logger()
    if not progress:
        logger.addFilter(warnings_only)
    try:
        yield
    finally:
        logger.removeFilter(warnings_only)  # a no-op when it was not added


def _fetch(name: str, filename: str, directory: Path) -> None:
    """Download one file, trying each mirror in turn."""
    import pooch  # here, not at the top: with requests they add 0.1-0.15 s to every start, and few runs download
    import requests

    errors = []
    for mirror in MIRRORS[name]:
        url = mirror.rstrip("/") + "/" + filename
        try:
            pooch.retrieve(url, CHECKSUMS[name][filename], fname=filename, path=directory,
                           downloader=partial(_download_at_most, max_bytes=SIZES[name][filename]))
            return
        # ValueError: pooch found the hash does not match (or cannot handle the URL),
        # or the mirror sent too much (a DataError).
        except (ValueError, requests.RequestException, OSError) as error:
            errors.append(f"{url}: {' '.join(str(error).split())}")  # one line, for the command
    raise DataError(
        f"could not download {name} file {filename} into {directory}; nothing was saved "
        f"for it (a download is kept only once its checksum matches): " + "; ".join(errors)
    )


def _download_at_most(url: str, output_file: str, pooch_instance=None, max_bytes: int = 0) -> None:
    """A pooch downloader: stream ``url`` into ``output_file``, refusing more than ``max_bytes``.

    The bytes are saved as sent, never decoded: the pinned hashes are of the .gz
    files themselves, and a gzip content-encoding could inflate without bound.
    """
    import requests

    with requests.get(url, stream=True, timeout=TIMEOUT, headers={"Accept-Encoding": "identity"}) as response:
        response.raise_for_status()
        too_much = DataError(f"the mirror sends more than the {max_bytes:,} bytes this file has; stopped there")
        if int(response.headers.get("Content-Length") or 0) > max_bytes:
            raise too_much
        received = 0
        with open(output_file, "wb") as out:
            for chunk in response.raw.stream(_DOWNLOAD_CHUNK, decode_content=False):
                received += len(chunk)
                if received > max_bytes:
                    raise too_much
                out.write(chunk)
