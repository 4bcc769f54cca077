"""A training report: loss and accuracy per epoch, and the test confusion matrix (needs matplotlib), in
the format the file's extension names (.png, .pdf, .svg, .jpg, ...; PNG without one)."""
from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from fastnet.checkpoint import write_atomic
from fastnet.errors import ConfigError


# Metrics beyond this magnitude are not drawn: matplotlib's axis limits (and their margins) would overflow.
DRAWABLE = 1e300


def confusion_matrix(predicted: np.ndarray, actual: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[i, j] = how many samples of class i were predicted as class j."""
    return np.bincount(actual.astype(np.int64) * n_classes + predicted,  # uint8 labels would overflow
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def training_report(history, predicted, actual, classes, path, title: str = "") -> None:
    """Write the report to ``path`` in the format its extension names (see ``plot_format``), atomically;
    see ``report_figure``."""
    import matplotlib.pyplot as plt

    fmt = plot_format(path)
    fig = report_figure(history, predicted, actual, classes, title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=100)
    plt.close(fig)
    write_atomic(Path(path), buffer.getvalue())


def plot_format(path) -> str:
    """The format matplotlib writes ``path`` in: its extension, or PNG without one.

    ConfigError, in one line, for an extension matplotlib cannot write here: one it does not know, or
    one it fails to write a small figure in (.jpg without pillow, .pgf without LaTeX), found in a moment
    rather than after a run.
    """
    from matplotlib.figure import Figure

    fmt = Path(path).suffix.lower().lstrip(".") or "png"
    probe = Figure(figsize=(1, 1))
    formats = probe.canvas.get_supported_filetypes()
    if fmt not in formats:
        raise ConfigError(f"matplotlib cannot write .{fmt} files; give a path ending in one of "
                          f"{', '.join('.' + name for name in sorted(formats))}")
    probe.text(0.5, 0.5, "0%")  # text too: some formats need more than drawing lines (pgf: LaTeX)
    try:
        probe.savefig(io.BytesIO(), format=fmt)
    except Exception as error:  # whatever the writer lacks: a module, a program
        raise ConfigError(f"matplotlib cannot write .{fmt} files here ({type(error).__name__}: "
                          f"{' '.join(str(error).split())}); give a .png path") from None
    return fmt


def report_figure(history, predicted, actual, classes, title: str = ""):
    """Loss and accuracy (in percent) per epoch beside the test confusion matrix, under a title:
    ``title`` (e.g. the dataset and network) and the test accuracy of ``predicted``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    epochs = range(1, len(history) + 1)  # what fit records as "epoch"; a file's own values are not trusted
    fig, (ax_loss, ax_acc, ax_cm) = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for key, label in ((name, "train"), (f"val_{name}", "test")):
            values = _metric(history, key)
            if values is not None:
                ax.plot(epochs, values, label=label)
        ax.set(title=name, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
        if ax.lines:
            ax.legend()
    ax_acc.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
    cm = confusion_matrix(predicted, actual, len(classes))
    ax_cm.imshow(cm, cmap="Blues")
    ax_cm.set(title="test confusion matrix", xlabel="predicted", ylabel="true",
              xticks=range(len(classes)), yticks=range(len(classes)))
    ax_cm.set_xticklabels(classes, rotation=90 if max(map(len, classes)) > 2 else 0)
    ax_cm.set_yticklabels(classes)
    for (i, j), count in np.ndenumerate(cm):
        ax_cm.text(j, i, str(count), ha="center", va="center", fontsize=7,
                   color="white" if count > cm.max() / 2 else "black")
    accuracy = f"test accuracy {np.mean(predicted == actual):.2%}"
    fig.suptitle(f"{title}: {accuracy}" if title else accuracy)
    fig.tight_layout()
    return fig


def _metric(history, key: str) -> list | None:
    """``history[key]`` as floats, NaN (not drawn) in epochs without it or beyond ``DRAWABLE``; None when
    no epoch recorded it. A model trained without accuracy (MSE) or validation data, or a history from
    a file, plots what it has."""
    if not any(key in record for record in history.records):
        return None
    values = np.array(history[key], dtype=float)
    values[~(np.abs(values) <= DRAWABLE)] = np.nan  # left out, as epochs without the metric are
    return values


def has_matplotlib() -> bool:
    """Whether matplotlib (the ``plot`` extra) is installed.

    ConfigError, in one line, if it is but cannot start: it needs a writable config folder
    (MPLCONFIGDIR, ~/.config/matplotlib or a temporary folder) for its font cache.
    """
    logger = logging.getLogger("matplotlib")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its warning about each folder it tried would be lines beside the error
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    except OSError as error:
        raise ConfigError(f"matplotlib cannot start: {' '.join(str(error).split())}") from None
    finally:
        logger.setLevel(level)
    return True
