"""The ``fastnet`` command: ``fastnet train``, ``evaluate``, ``predict``, ``export`` and ``bench`` (also
``python -m fastnet``).

``fastnet train`` builds a multilayer perceptron (``--model mlp``, the default), a LeNet-5-class
convolutional network (``--model lenet``), or the convolutional stack that repeated ``--conv`` and
``--pool`` flags describe, in the order given, before Flatten and the ``--hidden`` Dense layers.

Errors a user can fix (bad flag values, missing or corrupt data, unreadable
models) print one line on stderr and exit with status 2; Ctrl-C (or SIGTERM) during
training saves a checkpoint when --save (or --resume) was given and exits with status 130 (143).

Under ``mpiexec -n N`` (N > 1), train and evaluate run data-parallel on the N ranks
(``fastnet.distributed``): rank 0 alone prints and writes files, and every rank exits
with the same status.
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import sys

import numpy as np

import fastnet as fn
from fastnet import cli_data, distributed
from fastnet._interrupt import exit_status, stopped_by
from fastnet._memory import out_of_memory
from fastnet._paths import check_outputs, same_file
from fastnet.checkpoint import unwritable
from fastnet.errors import ConfigError, DistributedError, FastnetError, InputError
from fastnet.model import TrainingInterrupted
from fastnet.plot import has_matplotlib, plot_format
from fastnet.preprocessing import fit_scaler
from fastnet.progress import Discard, Progress

EXIT_USAGE, EXIT_BROKEN_PIPE = 2, 141  # 141: 128 + SIGPIPE, as a shell reports it
OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("none", "step", "exponential", "cosine")

# Defaults: 784-512-10 ReLU (He init) with dropout 0.5, SGD momentum 0.9 at lr 0.05 on a
# cosine schedule, batch 32, 30 epochs. On the bundled 8,000-digit sample this reached
# 96.00-96.60% test accuracy over seeds 0-5 (784-256-10 with dropout 0.3 for 15 epochs:
# 95.70-96.10%; without dropout such nets plateau near 95%).
# The train flags default to None, so that cmd_train knows which ones the user gave (a resumed run
# refuses those that contradict its checkpoint); these values are filled in after parsing.
DEFAULTS = dict(conv=[], hidden=[512], activation="relu", epochs=30, batch_size=32, lr=0.05, optimizer="momentum",
                schedule="cosine", dropout=0.5, l1=0.0, l2=0.0, shift=0, backend="numba", dtype="float32", seed=0)
ADAM_LR = 1e-3
# A regression trains on its targets as they are (only the features are scaled): momentum SGD at 0.05 with
# dropout diverges on targets in the hundreds, while Adam's steps do not grow with the targets' scale.
REGRESSION_DEFAULTS = dict(optimizer="adam", lr=0.01, dropout=0.0)
# The networks --model names. Each is a set of defaults that the flags given override; --conv or --pool
# without --model take lenet's training defaults (and its hidden layers, unless --hidden is given).
MODELS = ("mlp", "lenet")
# LeNet-5 class (LeCun et al. 1998, with ReLU and max pooling): conv 5x5, 6 maps (padded to keep 28x28) -> pool 2
# -> conv 5x5, 16 maps -> pool 2 -> 400-120-84-10. The training defaults: see PRESETS' comment below.
LENET = dict(conv=["conv 6:5:1:2", "pool 2:2", "conv 16:5:1:0", "pool 2:2"], hidden=[120, 84], activation="relu",
             dropout=0.0)
# The bundled sample's 7,200 training digits are too few for LeNet-5 alone (it stops below 98%, whatever the
# optimizer, epochs or regularisation); with copies shifted by 1 and 2 pixels ("auto": on sets of fewer than
# SHIFT_AUTO_BELOW images), 6 epochs of momentum SGD reach 98.5%. The measurements: docs/performance.md.
LENET_RUN = dict(epochs=6, batch_size=64, lr=0.05, optimizer="momentum", schedule="cosine", shift="auto")
PRESETS = {"mlp": {}, "lenet": {**LENET, **LENET_RUN}}
# What a checkpoint fixes: on --resume these flags may only repeat the saved values.
FIXED_BY_CHECKPOINT = ("conv", "hidden", "activation", "dropout", "l1", "l2", "dtype", "seed", "optimizer", "lr",
                       "schedule")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")

    def unrecognized(self, extras: list[str]):
        """Refuse arguments this command does not take, suggesting the nearest flag to a typo."""
        flags = [flag for action in self._actions for flag in action.option_strings if flag.startswith("--")]
        typo = next((extra.split("=", 1)[0] for extra in extras if extra.startswith("-")), "")
        close = difflib.get_close_matches(typo, flags, n=1) if typo else []
        hint = f"; did you mean {close[0]}?" if close else ""
        self.error(f"unrecognized argument{'s' * (len(extras) > 1)}: {' '.join(extras)}{hint}")


class UsageError(Exception):
    pass


def _number(kind, low=None, high=None, low_open=False, high_open=False):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}")
        if not math.isfinite(value) or (low is not None and (value <= low if low_open else value < low)) or \
                (high is not None and (value >= high if high_open else value > high)):
            lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {' and '.join(filter(None, (lo, hi)))}")
        return value
    return parse


class _Stack(argparse.Action):
    """--conv and --pool append to one list (``args.conv``), in the order given: the layers before Flatten."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), values])


def _conv_spec(text: str) -> str:
    """--conv MAPS:KERNEL[:STRIDE[:PADDING]] as "conv MAPS:KERNEL:STRIDE:PADDING", the padding a number
    (what model_flags reads back from a checkpoint), checked by Conv2D itself."""
    parts = text.split(":")
    numbers = [_whole(part) for part in parts[:3]]
    if not 2 <= len(parts) <= 4 or None in numbers:
        raise argparse.ArgumentTypeError(f"{text!r} is not MAPS:KERNEL[:STRIDE[:PADDING]] in whole numbers, e.g. "
                                         "32:3, 32:5:2 or 32:3:1:same")
    maps, kernel, stride = (numbers + [1])[:3]
    padding = parts[3] if len(parts) == 4 else "0"
    padding = padding if padding in ("same", "valid") else _whole(padding)
    if padding is None:
        raise argparse.ArgumentTypeError(f"{text!r}: PADDING is a whole number, 'same' or 'valid'")
    try:
        layer = fn.Conv2D(1, maps, kernel, stride, padding)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(f"{text}: {e}") from None
    return f"conv {layer.out_channels}:{layer.kernel_size}:{layer.stride}:{layer.padding}"


def _pool_spec(text: str) -> str:
    """--pool SIZE[:STRIDE] as "pool SIZE:STRIDE", checked by MaxPool2D itself."""
    parts = text.split(":")
    numbers = [_whole(part) for part in parts]
    if not 1 <= len(parts) <= 2 or None in numbers:
        raise argparse.ArgumentTypeError(f"{text!r} is not SIZE[:STRIDE] in whole numbers, e.g. 2 or 3:2")
    try:
        layer = fn.MaxPool2D(*numbers)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(f"{text}: {e}") from None
    return f"pool {layer.size}:{layer.stride}"


def _shift(text: str):
    """--shift N (0 to MAX_SHIFT) or auto."""
    if text == "auto":
        return text
    value = _whole(text)
    if value is None or value > cli_data.MAX_SHIFT:
        raise argparse.ArgumentTypeError(f"{text!r} is not auto or a whole number of pixels from 0 to "
                                         f"{cli_data.MAX_SHIFT}")
    return value


def _whole(text: str) -> int | None:
    """``text`` as a whole number written in digits, else None."""
    return int(text) if text.isascii() and text.isdigit() else None


def _path(text: str) -> str:
    """A path argument: anything but empty, which is a script's unset variable rather than a file."""
    if not text:
        raise argparse.ArgumentTypeError("the path is empty (an unset variable?); give a file name")
    return text


def build_parser() -> Parser:
    parser = Parser(prog="fastnet", description="Train and evaluate MLPs on MNIST-style data with numba kernels.")
    parser.add_argument("--version", action="version", version=f"fastnet {fn.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = sub.add_parser("train", help="train a network (default: the bundled MNIST sample)")
    _data_flags(train)
    _table_flags(train)
    net = train.add_argument_group("network")
    net.add_argument("--model", choices=MODELS,
                     help="the network and its training defaults, which other flags override: mlp, 784-512-10 "
                     "with dropout (the default), or lenet, a LeNet-5-class convolutional network for 28x28 images "
                     "(conv 5x5 6 maps, pool 2, conv 5x5 16 maps, pool 2, 120, 84; no dropout; --shift auto); "
                     "--conv or --pool without --model take lenet's")
    net.add_argument("--conv", type=_conv_spec, action=_Stack, metavar="MAPS:KERNEL[:STRIDE[:PADDING]]",
                     help="a convolution over the images, e.g. 32:3 or 32:3:1:same (stride 1 and padding 0 unless "
                     "given), followed by the activation; repeat for more, in order with --pool; then Flatten and "
                     "the --hidden layers (images only, not tables)")
    net.add_argument("--pool", type=_pool_spec, action=_Stack, metavar="SIZE[:STRIDE]", dest="conv",
                     help="max pooling over SIZE x SIZE windows (stride: SIZE unless given), in order with --conv")
    net.add_argument("--hidden", type=_number(int, 1), action="append", metavar="N",
                     help="width of a hidden layer; repeat for more layers (default: 512; lenet: 120 and 84)")
    net.add_argument("--activation", choices=("sigmoid", "tanh", "relu", "leaky-relu"),
                     help=f"activation after each hidden and --conv layer (default: {DEFAULTS['activation']})")
    opt = train.add_argument_group("training")
    opt.add_argument("--shift", type=_shift, metavar="N",
                     help="images: also train on copies of each training image moved by 1 to N pixels up, down, "
                     f"left and right (4N copies, made once); auto: 2 for fewer than {cli_data.SHIFT_AUTO_BELOW:,} "
                     "training images, else 0 (default: 0; lenet: auto)")
    opt.add_argument("--epochs", type=_number(int, 1),
                     help=f"default: {DEFAULTS['epochs']}; lenet: {LENET_RUN['epochs']}")
    opt.add_argument("--batch-size", type=_number(int, 1),
                     help=f"default: {DEFAULTS['batch_size']}; lenet: {LENET_RUN['batch_size']}")
    opt.add_argument("--lr", type=_number(float, 0, low_open=True),
                     help=f"learning rate (default: {DEFAULTS['lr']}, adam {ADAM_LR}; lenet: {LENET_RUN['lr']})")
    opt.add_argument("--optimizer", choices=OPTIMIZERS,
                     help=f"sgd, sgd with momentum 0.9, or adam (default: {DEFAULTS['optimizer']})")
    opt.add_argument("--schedule", choices=SCHEDULES,
                     help=f"learning-rate schedule over the epochs (default: {DEFAULTS['schedule']})")
    opt.add_argument("--l1", type=_number(float, 0), help="L1 penalty on weights")
    opt.add_argument("--l2", type=_number(float, 0), help="L2 penalty on weights")
    opt.add_argument("--dropout", type=_number(float, 0, 1, high_open=True),
                     help=f"dropout probability after each hidden layer (default: {DEFAULTS['dropout']})")
    run = train.add_argument_group("execution")
    run.add_argument("--backend", choices=("numba", "numpy"),
                     help=f"default: {DEFAULTS['backend']}; with --resume, the saved one")
    run.add_argument("--dtype", choices=("float32", "float64"), help=f"default: {DEFAULTS['dtype']}")
    run.add_argument("--seed", type=_number(int, 0), help=f"default: {DEFAULTS['seed']}")
    run.add_argument("--threads", type=_number(int, 1), help="numba threads (default: all cores)")
    out = train.add_argument_group("output")
    out.add_argument("--save", metavar="PATH", type=_path, help="write a safetensors checkpoint after every epoch")
    out.add_argument("--resume", metavar="PATH", type=_path, help="continue from a checkpoint, even one saved by "
                     "Ctrl-C mid-epoch, saving back to it without --save; --epochs counts the total, and a cosine "
                     "schedule stretches to it")
    out.add_argument("--plot", metavar="PATH", type=_path, help="write the curves and the confusion matrix in the "
                     "format the extension names (.png, .pdf, .svg, .jpg, ...)")
    out.add_argument("--json", action="store_true", help="print one JSON object on stdout; the rest goes to stderr")
    _quiet_flag(out)
    train.set_defaults(run=cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a saved model on a test set")
    evaluate.add_argument("model", metavar="MODEL", type=_path,
                          help="a .safetensors file written by fastnet train --save")
    _data_flags(evaluate)
    evaluate.add_argument("--target", metavar="COLUMN", help="the target column of a table (default: the last)")
    evaluate.add_argument("--backend", choices=("numba", "numpy"), help="override the saved backend")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _quiet_flag(evaluate)
    evaluate.set_defaults(run=cmd_evaluate)

    bench = sub.add_parser("bench", help="time training epochs against the NumPy baseline, JAX and PyTorch")
    bench.add_argument("--rounds", type=_number(int, 1),
                       help="timed epochs per contender, interleaved (default: 5)")
    bench.add_argument("--quick", action="store_true",
                       help="only 784-128-10 sigmoid at B=128; no compile-time, memory or vector-width checks")
    bench.add_argument("--lenet", action="store_true",
                       help="only the LeNet-5 case (ReLU, B=64), with all its contenders; no compile-time or memory checks")
    bench.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    bench.add_argument("--no-jax", action="store_true", help="leave JAX out")
    bench.add_argument("--busy", type=_number(int, 0, 64), default=0, metavar="N",
                       help="run with N competing CPU-bound processes, and time fastnet on 1 thread too "
                       "(default: %(default)s)")
    bench.add_argument("--samples", type=_number(int, 1), default=60_000, help="samples per epoch (default: %(default)s)")
    bench.add_argument("--out", metavar="PREFIX", type=_path,
                       help="write PREFIX.json and, with matplotlib, PREFIX.png (default: fastnet-bench, "
                       "fastnet-bench-sklearn with --sklearn or fastnet-bench-mpi with --mpi, in the per-user data "
                       "folder fastnet/bench, e.g. ~/.local/share/fastnet/bench on Linux; a relative PREFIX is "
                       "taken from the current folder)")
    bench.add_argument("--threads", type=_number(int, 1), help="numba threads (default: all cores)")
    bench.add_argument("--mpi", action="store_true",
                       help="data-parallel steps over MPI, run as `mpiexec -n N fastnet bench --mpi`: compute and "
                            "all-reduce times, the fitted alpha-beta model and predicted scaling (docs/scaling.md); "
                            "the same as `python -m fastnet.bench.mpi`, which takes more options")
    bench.add_argument("--sklearn", action="store_true",
                       help="instead: fit times and accuracy against scikit-learn's MLPClassifier (each contender "
                       "in its own process; --rounds defaults to 3, --quick shrinks the data and epochs)")
    _quiet_flag(bench)
    bench.set_defaults(run=cmd_bench)
    predict = sub.add_parser("predict", help="predict with a saved model on a table or array file, a chunk at a time")
    predict.add_argument("model", metavar="MODEL", type=_path,
                         help="a .safetensors file written by fastnet train --save")
    predict.add_argument("data", metavar="DATA", type=_path,
                         help="a .csv, .tsv, .npy, .npz or .parquet file with the model's feature columns")
    predict.add_argument("--out", metavar="FILE", type=_path, help="write a .csv or .npy file (default: CSV on stdout)")
    predict.add_argument("--proba", action="store_true", help="class probabilities, a column per class label")
    predict.add_argument("--backend", choices=("numba", "numpy"), help="override the saved backend")
    _quiet_flag(predict)
    predict.set_defaults(run=cmd_predict)
    export = sub.add_parser("export", help="write a saved model as an ONNX graph (needs the onnx extra)")
    export.add_argument("model", metavar="MODEL", type=_path,
                        help="a .safetensors file written by fastnet train --save")
    export.add_argument("out", metavar="OUT", type=_path, help="the .onnx file to write")
    _quiet_flag(export)
    export.set_defaults(run=cmd_export)
    parser.commands = sub.choices  # command name -> its parser, for messages about its flags
    return parser


def _quiet_flag(parser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print nothing but errors (and, with --json, the JSON object)")


def _data_flags(parser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=fn.datasets.NAMES, default="mnist-sample",
                       help="default: %(default)s (bundled, offline)")
    group.add_argument("--data", metavar="PATH", type=_path, help="a table: .csv, .tsv, .npy (with --target y.npy), "
                       ".npz or .parquet; or a folder with the IDX files, or torchvision's root (ROOT/MNIST/raw); "
                       "with the default dataset, any MNIST-format folder")
    group.add_argument("--download", action="store_true", help="fetch mnist/fashion-mnist if missing")


def _table_flags(parser) -> None:
    group = parser.add_argument_group("tables (--data FILE)")
    group.add_argument("--target", metavar="COLUMN", help="the target column (default: the last); for .npy, the "
                       "targets' .npy file; for .npz, the targets' array (default: y)")
    group.add_argument("--task", choices=fn.tables.TASKS, help="default: inferred from the target")
    group.add_argument("--test", metavar="FILE", type=_path, help="the test set, a file like --data's")
    group.add_argument("--test-split", type=_number(float, 0, 1, low_open=True, high_open=True),
                       help="the fraction of --data held out as the test set, stratified and seeded (default: 0.2 "
                       "without --test)")
    group.add_argument("--scale", choices=cli_data.SCALES,
                       help="feature scaling fitted on the training part and saved with the model (default: standard)")
    parser.add_argument_group("validation").add_argument(
        "--validation-split", type=_number(float, 0, 1, high_open=True), default=0.1,
        help="the fraction of the training part that early stopping and val_* use, stratified and seeded; the "
        "test set is scored once, at the end (default: %(default)s)")


def load_data(args):
    """The images as uint8 pixels: the model keeps the division by 255 (``new_model``), so predict takes raw pixels."""
    if args.data and args.dataset == "mnist-sample":
        return fn.datasets.load_idx(args.data, pixels=True)
    return fn.datasets.load(args.dataset, root=args.data, download=args.download, progress=not args.quiet,
                            pixels=True)


def build_model(args, n_in: int, n_classes: int, loss=None):
    """The network the flags describe for ``n_in`` inputs: the --conv/--pool stack (if any) over square
    single-channel images of ``n_in`` pixels, then Flatten, the --hidden Dense layers and the output."""
    init = "he" if "relu" in args.activation else "xavier"
    image = image_shape(args, n_in) if args.conv else None
    layers, channels = [], 1
    for item in args.conv:
        kind, numbers = item.split(" ")
        numbers = [int(v) for v in numbers.split(":")]
        if kind == "conv":
            shape = image if not layers else None  # the first layer's input; build() gives it after a pool
            layers += [fn.Conv2D(channels, *numbers, init=init, l1=args.l1, l2=args.l2, input_shape=shape),
                       fn.layers.activation(args.activation)]
            channels = numbers[0]
        else:
            layers.append(fn.MaxPool2D(*numbers))
    widths = [None if layers else n_in, *args.hidden]  # None: the width Flatten gives, found by the model
    if layers:
        layers.append(fn.Flatten())
    for a, b in zip(widths, widths[1:]):
        layers += [fn.Dense(a, b, init=init, l1=args.l1, l2=args.l2), fn.layers.activation(args.activation)]
        if args.dropout:
            layers.append(fn.Dropout(args.dropout))
    layers.append(fn.Dense(widths[-1], n_classes, l1=args.l1, l2=args.l2))
    try:
        model = fn.Sequential(*layers, loss=loss or fn.SoftmaxCrossEntropy(), backend=args.backend,
                              dtype=args.dtype, seed=args.seed)
        if model.n_in is None:
            model.build(image)
    except ConfigError as e:  # a stack the images cannot take: say which flags built it
        if not args.conv:
            raise
        raise ConfigError(f"{_flag_text('conv', args.conv)} on {'x'.join(map(str, image))} images: {e}") from None
    return model


def image_shape(args, n_in: int) -> tuple[int, int, int]:
    """The (channels, height, width) of the images for --conv/--pool: MNIST-style data are square and
    single-channel, flattened to ``n_in`` pixels a sample."""
    side = math.isqrt(n_in)
    if side * side != n_in:
        raise ConfigError(f"{_flag_text('conv', args.conv)} takes square single-channel images, but the data have "
                          f"{n_in:,} pixels a sample")
    return (1, side, side)


def build_optimizer(args):
    schedule = {"none": None, "step": fn.StepLR(max(1, args.epochs // 3), 0.1),
                "exponential": fn.ExponentialLR(0.9), "cosine": fn.CosineLR(args.epochs)}[args.schedule]
    return make_optimizer(args.optimizer, args.lr, schedule)


def make_optimizer(name: str, lr: float, schedule=None):
    """The optimizer a --optimizer name stands for."""
    if name == "adam":
        return fn.Adam(lr=lr, schedule=schedule)
    return fn.SGD(lr=lr, momentum=0.9 if name == "momentum" else 0.0, schedule=schedule)


def fill_defaults(args, model=None) -> set:
    """Put the defaults in for the train flags not given, those of --model's preset first (with --resume and
    no --model, the preset of the checkpoint ``model``'s kind); returns the names of the flags given."""
    given = {name for name in (*DEFAULTS, "model") if getattr(args, name) is not None}
    if args.model is None:
        convolutional = model is not None and is_convolutional(model) or model is None and "conv" in given
        args.model = "lenet" if convolutional else "mlp"
    elif args.model == "mlp" and "conv" in given:
        raise ConfigError(f"{_flag_text('conv', args.conv)} builds a convolutional network, but --model mlp is a "
                          "multilayer perceptron; leave --model out (or give --model lenet)")
    for name, value in {**DEFAULTS, **PRESETS[args.model]}.items():
        if name not in given:
            setattr(args, name, value)
    if "lr" not in given and args.optimizer == "adam":
        args.lr = ADAM_LR
    return given


def model_flags(model, optimizer) -> dict:
    """The values of the flags in FIXED_BY_CHECKPOINT that describe ``model`` and ``optimizer`` (if any).

    Where no flag value fits (a model built in Python, say), the value is a description that
    no flag equals.
    """
    def one(values):
        return values.pop() if len(values) == 1 else "/".join(map(str, sorted(values)))

    acts = {_activation_flag(layer) for layer in model.layers if isinstance(layer, fn.layers.Activation)}
    flags = {"conv": conv_flags(model), "hidden": [layer.n_out for layer in model.dense[:-1]],
             "activation": one(acts or {"none"}),
             "dropout": one({layer.p for layer in model.layers if isinstance(layer, fn.Dropout)} or {0.0}),
             "l1": one({layer.l1 for layer in model.weighted}), "l2": one({layer.l2 for layer in model.weighted}),
             "dtype": str(model.dtype), "seed": model.seed}
    if optimizer is not None:
        plain = {k: v for k, v in optimizer.config().items() if k != "schedule"}
        names = [name for name in OPTIMIZERS if make_optimizer(name, optimizer.lr).config() == plain]
        kinds = {"NoneType": "none", "StepLR": "step", "ExponentialLR": "exponential", "CosineLR": "cosine"}
        flags.update(optimizer=names[0] if names else repr(optimizer), lr=optimizer.lr,
                     schedule=kinds.get(type(optimizer.schedule).__name__, repr(optimizer.schedule)))
    return flags


def conv_flags(model) -> list[str]:
    """The --conv and --pool items (as ``args.conv`` holds them) of ``model``'s layers before its first Dense;
    a layer no flag builds (average pooling, say) is its repr."""
    items = []
    for layer in model.layers[:model.layers.index(model.dense[0])]:
        if type(layer) is fn.Conv2D:
            items.append(f"conv {layer.out_channels}:{layer.kernel_size}:{layer.stride}:{layer.padding}")
        elif type(layer) is fn.MaxPool2D:
            items.append(f"pool {layer.size}:{layer.stride}")
        elif not isinstance(layer, (fn.layers.Activation, fn.Flatten)):
            items.append(repr(layer))
    return items


def is_convolutional(model) -> bool:
    """Whether ``model`` takes images through convolution or pooling layers (what --conv/--pool build)."""
    return any(isinstance(layer, (fn.Conv2D, fn.layers.Pool2D)) for layer in model.layers)


def _activation_flag(layer) -> str:
    """The --activation value of an activation layer, or its repr when no flag value builds it."""
    flag = layer.name.replace("_", "-")
    default = fn.layers.activation(layer.name)
    return flag if type(layer) is type(default) and layer.config() == default.config() else repr(layer)


def _flag_text(name: str, value) -> str:
    flag = f"--{name.replace('_', '-')}"
    if name == "conv":  # --conv and --pool items, e.g. "conv 32:3:1:0", "pool 2:2"
        return " ".join(f"--{item}" for item in value) or "no --conv"
    if isinstance(value, list):
        return " ".join(f"{flag} {v}" for v in value) or f"no {flag}"
    return f"{flag} {value}"


def refuse_other_model(args, given: set, model) -> None:
    """ConfigError when --model names another kind of network than the checkpoint being resumed holds
    (the preset's other values are defaults, which a checkpoint overrides)."""
    if "model" in given and (args.model == "lenet") != is_convolutional(model):
        held = "a convolutional network" if is_convolutional(model) else "a multilayer perceptron (no --conv)"
        raise ConfigError(f"--model {args.model} contradicts {args.resume}, which holds {held}; leave --model out "
                          "to resume that run as it was, or train a new model without --resume")


def refuse_conflicts(args, given: set, saved: dict) -> None:
    """ConfigError naming the first given flag that contradicts the checkpoint being resumed."""
    for name in FIXED_BY_CHECKPOINT:
        if name in given and name in saved and getattr(args, name) != saved[name]:
            raise ConfigError(f"{_flag_text(name, getattr(args, name))} contradicts {args.resume}, which was "
                              f"trained with {_flag_text(name, saved[name])}; leave the flag out to resume that run "
                              "as it was, or train a new model without --resume")


# The files each command reads and writes, as (label, name in args): check_files, run before every command,
# refuses an output that could not be written or would destroy an input or another output. A command that
# takes a path lists it here; the data files of a command with the data flags are inputs too.
READS = {"train": (("--resume", "resume"), ("--test", "test")), "evaluate": (("MODEL", "model"),),
         "export": (("MODEL", "model"),), "predict": (("MODEL", "model"), ("DATA", "data"))}
WRITES = {"train": (("--save", "save"), ("--plot", "plot")), "export": (("OUT", "out"),),
          "predict": (("--out", "out"),)}
REPLACES = {("--save", "--resume")}  # a resumed run's own checkpoint is its to overwrite


def check_files(args) -> None:
    """Refuse, before any work, outputs that could not be written or that are the same file as an input
    (model, checkpoint or data file) or as another output."""
    def pairs(table):
        return [(label, getattr(args, name)) for label, name in table.get(args.command, ())]

    inputs = pairs(READS)
    inputs += cli_data.data_inputs(args)
    if hasattr(args, "dataset") and not cli_data.is_table(args.data):
        idx = bool(args.data) and args.dataset == fn.datasets.SAMPLE  # load_data's choice
        inputs += [("the data file", path) for path in fn.datasets.data_files(args.dataset, args.data, idx)]
    check_outputs(pairs(WRITES), inputs, REPLACES)


def cmd_train(args, out, say) -> int:
    saving_back = bool(args.resume and not args.save)
    if saving_back:
        save_back(args)
    if args.comm is not None and args.comm.Get_rank() != 0:
        args.save = args.plot = None  # rank 0 alone writes files
    if args.plot:
        _require_matplotlib(args.plot)
    use_threads(args.threads, args.ranks_here)
    model = fn.load(args.resume, backend=args.backend) if args.resume else None  # backend: None unless given
    given = fill_defaults(args, model)
    if args.resume:
        refuse_other_model(args, given, model)
        refuse_conflicts(args, given, model_flags(model, model.optimizer))
        args.seed = model.seed  # the seed that split the data: the resumed run trains on the same rows
        resume_batch_size(args, given, model)
        resume_epochs(args, given, model)
    data = training_data(args)
    train, val, test = data.train, data.val, data.test
    if args.resume:
        train, val, test = (cli_data.scaled_for(model, part) for part in (train, val, test))
    if data.task == "regression" and not args.resume:
        regression_defaults(args, given)
    n_classes = len(train.classes)
    if args.resume:
        optimizer = None if model.optimizer is not None else build_optimizer(args)
        say(f"resuming from {args.resume} {_stopped_at(model)}")
        if args.epochs <= len(model.history):
            say(_nothing_left(args, model))
        elif saving_back:
            _note(out, f"saving to {args.save} after every epoch, as --resume does without --save")
        stretch_cosine(model.optimizer, args.epochs, say)
    else:
        model, optimizer = new_model(args, data), build_optimizer(args)
    config = {k: v for k, v in vars(args).items() if k not in ("run", "command", "json", "comm", "ranks_here")}
    config.update(model_flags(model, model.optimizer or optimizer), backend=model.backend,
                  ranks=1 if args.comm is None else args.comm.Get_size())
    distributed.agree_on_flags(args.comm, config)  # under mpiexec: every rank was given the same training
    kind = f"{n_classes} classes" if data.task == "classification" else "regression"
    say(f"data: {train.name} {len(train):,} train / {len(val) if val else 0:,} validation / {len(test):,} test, "
        f"{kind}")
    ranks = "" if args.comm is None else f"{args.comm.Get_size()} ranks × "
    say(f"model: {_describe(model)}, {model.n_params:,} parameters, {model.backend} {model.dtype}, "
        f"{ranks}{fn.get_num_threads()} threads")
    shown = ("optimizer", "lr", "schedule", "batch_size", "epochs", "dropout", "l1", "l2", "seed") + \
        ("shift",) * bool(args.shift)  # the shifted copies are in the data line's count of training samples
    say("training: " + " ".join(_flag_text(name, config[name]) for name in shown))
    callbacks = [fn.Checkpoint(args.save)] if args.save else []
    remaining = max(0, args.epochs - len(model.history))
    try:
        model.fit(train.x, cli_data.targets(model, train.y), epochs=remaining, batch_size=args.batch_size,
                  optimizer=optimizer, progress=Progress(stream=out.human), callbacks=callbacks,
                  comm=args.comm, validation_data=val and (val.x, cli_data.targets(model, val.y)))
    except TrainingInterrupted as stop:  # stopped between batches: the checkpoint resumes exactly
        return save_interrupted(model, args.save, stop, say)
    except KeyboardInterrupt as stop:  # a second Ctrl-C, in the middle of a batch: the weights are no state to keep
        say(f"{stopped_by(stop)} at once, in the middle of a batch: nothing saved")
        return exit_status(stop)
    result = cli_data.score(model, test, comm=args.comm)  # the test set's one use
    say(f"test {cli_data.score_text(result)}  (loss {result['loss']:.4f})")
    if args.save and not (remaining == 0 and args.resume and same_file(args.save, args.resume)):  # else unchanged
        if remaining == 0:  # the Checkpoint callback saved every epoch trained; with none, save the model as loaded
            model.save(args.save)
        say(f"saved to {args.save}")
    if args.plot:
        plot(model, test, args.plot)
        say(f"plot written to {args.plot}")
    if args.json:
        out.json({"config": config, "history": model.history.records, "test": result})
    return 0


def training_data(args) -> cli_data.Splits:
    """The train, validation and test parts of a table (--data FILE) or of an image dataset."""
    if cli_data.is_table(args.data):
        if args.conv:  # a table's columns have no image layout to convolve
            raise ConfigError(f"a convolutional network (--model lenet, --conv, --pool) trains on images (--dataset, "
                              f"or --data DIR with MNIST-style IDX files), not on a table such as {args.data}; "
                              "leave those flags out to train a multilayer perceptron on it")
        if args.shift:
            raise ConfigError(f"--shift {args.shift} moves images; a table such as {args.data} has no pixels to move")
        data = cli_data.table_splits(args)
    else:
        for flag in ("target", "task", "test", "test_split", "scale"):
            if getattr(args, flag) is not None:
                raise ConfigError(f"--{flag.replace('_', '-')} is for tables (--data FILE: .csv, .tsv, .npy, .npz "
                                  f"or .parquet); images take --dataset and --data DIR")
        data = cli_data.image_splits(args, *load_data(args))
    if args.plot and data.task != "classification":
        raise ConfigError("--plot draws a confusion matrix, for classification; leave it out for a regression")
    return data


def regression_defaults(args, given: set) -> None:
    """REGRESSION_DEFAULTS for the flags not given (the learning rate only with the optimizer's default)."""
    for name, value in REGRESSION_DEFAULTS.items():
        if name not in given and not (name == "lr" and "optimizer" in given):
            setattr(args, name, value)


def new_model(args, data: cli_data.Splits):
    """The network the flags describe for ``data``; a table's scaling, columns and labels are kept in it."""
    if data.task == "classification":
        model = build_model(args, data.train.x.shape[1], len(data.train.classes))
    else:
        model = build_model(args, data.train.x.shape[1], 1, fn.MSE())
    if data.columns is not None:
        scaler = fit_scaler(args.scale or "standard", data.train.x, dtype=args.dtype)
        model.set_preprocessing(scaler, data.columns, data.classes)
    else:  # images: pixels / 255, kept in the model so that predict takes raw pixels from any file
        model.set_preprocessing(fit_scaler("divide", data.train.x, dtype=args.dtype))
    return model


def save_back(args) -> None:
    """``train --resume X`` without --save saves to X, as --save X would: the run's work is kept.

    Refuses (ConfigError), before any work, a checkpoint in a folder it cannot write to."""
    problem = unwritable(args.resume)
    if problem:
        raise ConfigError(f"--resume {args.resume} saves back to that file without --save, but cannot write "
                          f"there: {problem}; give --save PATH to save elsewhere")
    args.save = args.resume


def _note(out, line: str) -> None:
    """A line on stderr about what the command does on its own, unless --quiet (or on ranks other than 0)."""
    if not isinstance(out.human, Discard):
        print(printable(line, sys.stderr), file=sys.stderr, flush=True)


def _nothing_left(args, model) -> str:
    """The line for a resumed run whose --epochs the checkpoint has reached already."""
    done = len(model.history)
    return (f"nothing to train: {args.resume} has done {done} epoch{'s' * (done != 1)}, and --epochs {args.epochs} "
            f"counts the total; give --epochs {done + 1} or more to train on")


def save_interrupted(model, path: str | None, stop: TrainingInterrupted, say) -> int:
    """After Ctrl-C or SIGTERM stopped fit between batches: save to ``path`` (--save), unless the model
    diverged in the batches since its last save (that file is then kept, and stderr says why), and
    return the exit status for the signal."""
    how = stopped_by(stop)
    if not path:
        say(how)
    else:
        try:
            model.save(path)
        except ConfigError as e:  # non-finite state: the file holds the last good one
            print(printable(f"{how}: {e}", sys.stderr), file=sys.stderr, flush=True)
        else:
            say(f"{how}: checkpoint saved to {path}; --resume {path} continues the run")
    return exit_status(stop)


def use_threads(threads: int | None, ranks_here: int) -> None:
    """--threads; without it, the ranks that mpiexec started on this machine share its cores:
    cores // ranks here each (at least 1), so that their numba threads do not oversubscribe the cores."""
    if threads:
        fn.set_num_threads(threads)
    elif ranks_here > 1:
        fn.set_num_threads(max(1, fn.get_num_threads() // ranks_here))


def resume_batch_size(args, given: set, model) -> None:
    """An epoch stopped by Ctrl-C finishes in the batches it started with; between epochs any size goes."""
    part = model.partial_epoch
    if part is None:
        return
    if "batch_size" not in given:
        args.batch_size = part["batch_size"]
    elif args.batch_size != part["batch_size"]:
        raise ConfigError(f"--batch-size {args.batch_size} contradicts {args.resume}, which stopped in the middle "
                          f"of epoch {part['epoch'] + 1} at --batch-size {part['batch_size']}; leave the flag out "
                          "to finish that epoch as it began")


def resume_epochs(args, given: set, model) -> None:
    """Without --epochs, a resumed run ends where it was planned to: a cosine schedule's length says where."""
    schedule = getattr(model.optimizer, "schedule", None)
    if "epochs" not in given and isinstance(schedule, fn.CosineLR):
        args.epochs = max(schedule.t_max, len(model.history))


def _stopped_at(model) -> str:
    part = model.partial_epoch
    if part is None:
        return f"after epoch {len(model.history)}"
    n_batches = math.ceil(part["samples"] / part["batch_size"])
    return f"in epoch {part['epoch'] + 1}, after batch {part['batch']} of {n_batches}"


def stretch_cosine(optimizer, epochs: int, say) -> None:
    """A resumed cosine schedule that would end before --epochs is stretched to end there, not run at lr 0."""
    schedule = getattr(optimizer, "schedule", None)
    if isinstance(schedule, fn.CosineLR) and schedule.t_max < epochs:
        say(f"stretching the cosine schedule from {schedule.t_max} to {epochs} epochs (--epochs {epochs})")
        schedule.t_max = epochs


def cmd_evaluate(args, out, say) -> int:
    use_threads(None, args.ranks_here)
    model = fn.load(args.model, backend=args.backend)
    if cli_data.is_table(args.data):
        return evaluate_table(args, model, out, say)
    test = cli_data.scaled_for(model, load_data(args)[1])
    n_classes = len(test.classes)
    if model.loss.integer_targets:
        result = model.evaluate(test.x, test.y, comm=args.comm)
    elif model.n_out == n_classes:  # an MSE or BCE classifier, one output per class: scored on one-hot targets
        result = model.evaluate(test.x, np.eye(n_classes, dtype=model.dtype)[test.y], comm=args.comm)
    else:
        raise ConfigError(f"{args.model} has {model.n_out} output{'s' * (model.n_out != 1)} and a "
                          f"{type(model.loss).__name__} loss; fastnet evaluate scores classifiers, which need one "
                          f"output per class ({n_classes} for {test.name}). Evaluate other models in Python with "
                          f"model.evaluate(x, y)")
    rows = distributed.share(len(test), args.comm)  # under mpiexec each rank predicts its share
    labels, predicted = test.y[rows], model.predict(test.x[rows]).argmax(axis=1)
    right = labels[predicted == labels]
    samples, hits = distributed.total(np.stack([np.bincount(labels, minlength=n_classes),
                                                np.bincount(right, minlength=n_classes)]), args.comm)
    if not model.loss.integer_targets:  # the class accuracy, not BCE's share of outputs on the right side of 0.5
        result["accuracy"] = float(hits.sum() / samples.sum())
    per_class = {name: float(h / n) if n else None for name, n, h in zip(test.classes, samples, hits)}
    refuse_nonfinite_result(result, f"{args.model} on {test.name}")
    say(f"{args.model} on {test.name} test ({len(test):,} samples)")
    say(f"loss {result['loss']:.4f}  accuracy {result['accuracy']:.2%}")
    for name, acc in per_class.items():
        say(f"  class {name:<12} {'n/a' if acc is None else f'{acc:.2%}'}")
    if args.json:
        out.json({"model": args.model, "dataset": test.name, **result, "per_class": per_class})
    return 0


def evaluate_table(args, model, out, say) -> int:
    """``fastnet evaluate MODEL --data FILE``: loss and accuracy (or r2) on a table."""
    test, result = cli_data.evaluate_table(args, model)
    refuse_nonfinite_result(result, f"{args.model} on {args.data}")
    say(f"{args.model} on {args.data} ({len(test):,} samples)")
    say(f"loss {result['loss']:.4f}  {cli_data.score_text(result)}")
    if args.json:
        out.json({"model": args.model, "dataset": args.data, **result})
    return 0


def cmd_predict(args, out, say) -> int:
    model = fn.load(args.model, backend=args.backend)
    if args.comm is not None and args.comm.Get_rank() != 0:  # under mpiexec, rank 0 alone writes
        return 0
    return cli_data.predict(args, model, say)


def cmd_bench(args, out, say) -> int:
    from fastnet.bench.command import run_bench  # the lab: only this command loads it

    return run_bench(args, say)


def cmd_export(args, out, say) -> int:
    from fastnet.onnx_export import OPSET

    model = fn.load(args.model)
    if args.comm is not None and args.comm.Get_rank() != 0:  # under mpiexec, rank 0 alone writes the file
        return 0
    model.to_onnx(args.out)
    say(f"exported {args.model} ({_describe(model)}, {model.dtype}) to {args.out}: ONNX opset {OPSET}, "
        f"input x (batch, {model.n_in}), output y (batch, {model.n_out})")
    return 0


def _describe(model) -> str:
    """The network in a few words: 784-512-10 ReLU; a convolutional one starts with its image and
    its --conv/--pool items, e.g. 1x28x28 conv 6:5:1:2 pool 2:2 conv 16:5:1:0 pool 2:2 400-120-84-10 ReLU."""
    widths = [model.dense[0].n_in] + [layer.n_out for layer in model.dense]
    acts = sorted({type(layer).__name__ for layer in model.layers if isinstance(layer, fn.layers.Activation)})
    stack = conv_flags(model)
    image = " ".join(["x".join(map(str, model.input_shape)), *stack, ""]) if stack else ""
    return image + "-".join(map(str, widths)) + (f" {'/'.join(acts)}" if acts else "")


def _require_matplotlib(path) -> None:
    """Refuse, before any work, a --plot that cannot be written: no matplotlib, or a format it cannot write."""
    if not has_matplotlib():
        raise ConfigError("--plot needs matplotlib: pip install matplotlib")
    try:
        plot_format(path)
    except ConfigError as error:
        raise ConfigError(f"--plot {path}: {error}") from None


def plot(model, test, path) -> None:
    from fastnet.plot import training_report

    training_report(model.history, model.predict(test.x).argmax(axis=1), test.y, test.classes, path,
                    title=f"{test.name}, {_describe(model)}")


class Output:
    """Where output goes: with --json, stdout carries only the JSON object and people read stderr;
    with --quiet, nothing for people is printed at all; with ``silent`` (ranks other than 0), nothing."""

    def __init__(self, as_json: bool, quiet: bool = False, silent: bool = False):
        self.human = Discard() if quiet or silent else sys.stderr if as_json else sys.stdout
        self.silent = silent

    def json(self, obj) -> None:
        if not self.silent:
            try:
                text = json.dumps(obj, default=_jsonable, allow_nan=False)
            except ValueError:  # JSON has no NaN or Inf: refuse, rather than print what no parser reads
                raise InputError("the results hold NaN or Inf, which JSON cannot carry (see the lines above); "
                                 "nothing was printed on stdout") from None
            print(text, file=sys.stdout, flush=True)


def refuse_nonfinite_result(result: dict, what: str) -> None:
    """InputError naming the first NaN or Inf score in ``result``: a score that is no number is reported
    as an error (exit 2), never printed as if it were one (and JSON has no NaN)."""
    bad = next((k for k, v in result.items() if isinstance(v, float) and not math.isfinite(v)), None)
    if bad is not None:
        raise InputError(f"{what}: the {bad} is {result[bad]}, not a number to report; the model's outputs "
                         "overflow on this data (weights or inputs too large)")


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _error(command: str, message: str) -> None:
    """One line on stderr, whatever the message holds (``command`` may be "", when it is not known)."""
    line = f"fastnet{' ' * bool(command)}{command}: error: {' '.join(message.split())}"
    print(printable(line, sys.stderr), file=sys.stderr)


def printable(text: str, stream) -> str:
    """``text`` with what ``stream``'s encoding cannot carry escaped (a non-ASCII path under
    PYTHONIOENCODING=ascii or a C locale), so a report never crashes once the work is done."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding)


def main(argv=None) -> int:
    parser = build_parser()
    leader = distributed.launcher_rank() == 0  # under mpiexec, rank 0 alone prints
    try:  # under mpiexec every rank meets the others after parsing, even when its flags are bad
        args, comm = distributed.set_up(lambda: _parse(parser, argv), lambda args: {"command": args.command})
        args.comm = comm  # None in a plain run: mpi4py is not even imported
        args.ranks_here = distributed.ranks_here(comm)  # collective: before anything may fail on one rank
    except UsageError as e:
        if leader:
            print(printable(str(e), sys.stderr), file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, DistributedError) as e:  # mpiexec without mpi4py; another rank's flags failed
        if leader:
            _error(getattr(parser, "chosen", ""), str(e))
        return EXIT_USAGE
    leader = args.comm is None or args.comm.Get_rank() == 0
    out = Output(getattr(args, "json", False), args.quiet, silent=not leader)

    def say(line: str) -> None:
        print(printable(line, out.human), file=out.human, flush=True)

    code, error = _run(args, out, say)
    if args.comm is not None and not isinstance(error, DistributedError):  # a DistributedError is agreed already
        code, message = distributed.exit_status(args.comm, code, error and _message(error))
    else:
        message = error and _message(error)
    if message and leader:
        _error(args.command, message)
    return code


def _parse(parser, argv):
    """The parsed arguments; ``parser.chosen`` is the command, for messages, once it is known."""
    args, extras = parser.parse_known_args(argv)
    parser.chosen = args.command
    if extras:
        parser.commands[args.command].unrecognized(extras)
    return args


def _run(args, out, say) -> tuple[int, BaseException | None]:
    """Run the command: its exit status, and the error to report in one line (or None)."""
    try:
        check_files(args)
        return args.run(args, out, say), None
    except FastnetError as e:
        return EXIT_USAGE, e
    except BrokenPipeError:  # `fastnet evaluate m | head`: the reader has gone; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return EXIT_BROKEN_PIPE, None
    except OSError as e:
        return EXIT_USAGE, e
    except MemoryError as e:  # what the checks before allocating could not foresee: still one line
        return EXIT_USAGE, e
    except KeyboardInterrupt as stop:
        if not out.silent:
            print(stopped_by(stop), file=sys.stderr)
        return exit_status(stop), None


def _message(error: BaseException) -> str:
    if isinstance(error, MemoryError):
        return out_of_memory(error)
    if isinstance(error, OSError) and not isinstance(error, FastnetError):
        return f"{error.strerror or error}: {error.filename or ''}".rstrip(": ")
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
