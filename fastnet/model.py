"""Sequential: the model users build, train, evaluate, save and load."""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable

import numpy as np

from fastnet import _memory, checkpoint, divergence, inputs
from fastnet import preprocessing as _preprocessing
from fastnet._finite import nonfinite
from fastnet._interrupt import DeferredInterrupt, TrainingInterrupted
from fastnet._memory import aligned_zeros
from fastnet.callbacks import Callback, Checkpoint, History
from fastnet.errors import ConfigError, DivergenceError
from fastnet.kernels import get_backend
from fastnet.layers import Dense, Flatten, Layer, Pool2D, Sigmoid, Weighted, with_activations
from fastnet.losses import BinaryCrossEntropy, Loss, loss_named
from fastnet.optimizers import SGD, Optimizer, optimizer_named
from fastnet.program import Program
from fastnet.progress import Progress, format_scores, from_verbose, verbosity
from fastnet.threads import kernel_threads, threads_for_load
from fastnet.weights import sample_weights

EVAL_BATCH = 1024
EVAL_BYTES = 64 << 20  # evaluate and predict take batches of at most this many bytes of buffers (images cost more)


class Summary(str):
    """The text of ``Sequential.summary()``: a str whose repr is the table itself, so it reads at a prompt."""

    def __repr__(self) -> str:
        return str(self)


class Sequential:
    """A stack of layers trained with one loss.

    Parameters
    ----------
    *layers : Layer
        Dense, Conv2D, MaxPool2D, AvgPool2D, Flatten, activation and Dropout layers, input first (or one
        list of them). A first ``Dense(n_out)`` takes its input width from the data, and a first Conv2D
        without ``input_shape`` its image shape from 4-D data (n, channels, height, width) (see ``build``).
    loss : Loss or str
        SoftmaxCrossEntropy (integer labels), BinaryCrossEntropy (0/1 targets) or MSE, or Keras's
        name of one: "sparse_categorical_crossentropy", "binary_crossentropy", "mse" (see ``losses.loss_named``).
    backend : {"numba", "numpy"}
        The compiled kernels, or their pure-NumPy twins (the baseline).
    dtype : "float32" or "float64", or np.float32, np.float64, a np.dtype
    seed : int >= 0 or None
        Seeds initialisation, shuffling and dropout. The same seed and backend give
        bit-for-bit the same weights and history.

    Raises
    ------
    ConfigError
        A bad argument, or parameters and gradients that would not fit in memory.
    """

    def __init__(self, *layers: Layer, loss: Loss, backend: str = "numba", dtype: str = "float32",
                 seed: int | None = None):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])  # Sequential([Dense(...), ...]), as Keras takes it
        layers = tuple(with_activations(layers))  # Dense(n, activation="relu") is Dense(n), ReLU()
        if not layers:
            raise ConfigError("Sequential needs at least one layer, e.g. Sequential(Dense(784, 10), loss=...)")
        for layer in layers:
            if isinstance(layer, type) and issubclass(layer, Layer):
                raise ConfigError(f"{layer.__name__} is a layer class; pass a layer, e.g. {layer.__name__}()")
            if not isinstance(layer, Layer):
                raise ConfigError(f"{layer!r} is not a fastnet layer")
            if getattr(layer, "_model", None) is not None:
                raise ConfigError(f"{layer!r} already belongs to a model; create a new layer object")
        if isinstance(loss, str):
            loss = loss_named(loss)
        if not isinstance(loss, Loss):
            raise ConfigError(f"loss must be SoftmaxCrossEntropy(), BinaryCrossEntropy() or MSE(), got {loss!r}")
        dtype = inputs.float_dtype(dtype)
        if seed is not None and not (inputs.is_whole(seed) and seed >= 0):
            raise ConfigError(f"seed must be a whole number >= 0 or None, got {seed!r}")
        self.kernels = get_backend(backend)
        self.layers, self.loss, self.backend, self.dtype = list(layers), loss, backend, np.dtype(dtype)
        self.dense = [layer for layer in layers if isinstance(layer, Dense)]
        self.weighted = [layer for layer in layers if isinstance(layer, Weighted)]
        if not self.dense:
            raise ConfigError("the model needs at least one Dense layer")
        entry = self._entry()
        if isinstance(entry, Dense):  # its width, or None until the data give it
            self.input_shape = None if entry.n_in is None else (entry.n_in,)
        else:  # the image of a Conv2D, Flatten or pooling layer, or None until 4-D data give it
            self.input_shape = entry.input_shape
        self.n_in = None if self.input_shape is None else math.prod(self.input_shape)
        self.n_out = self._walk_shapes(self.input_shape)[0]
        for layer in layers:
            layer._model = self
        if loss.integer_targets and self.n_out < 2:
            raise ConfigError("SoftmaxCrossEntropy needs at least 2 outputs; use BinaryCrossEntropy for one")
        _refuse_keras_sigmoid(self.dense[-1], layers[-1], loss)
        self.eval_batch = EVAL_BATCH

        seq = np.random.SeedSequence(seed)
        self.seed = seq.entropy  # recorded, so a run with seed=None can be repeated
        init_seq, shuffle_seq, dropout_seq = seq.spawn(3)
        self.shuffle_rng = np.random.Generator(np.random.PCG64(shuffle_seq))
        self.dropout_rng = np.random.Generator(np.random.PCG64(dropout_seq))
        self.optimizer: Optimizer | None = None
        self.history = History()
        self.stop_training = False
        self._init_rng = np.random.Generator(np.random.PCG64(init_seq))
        self.params = self.grads = self._program = None
        if self.n_in is not None:
            self._build()

    # ---- the input width: given, or taken from the first data ----------------------

    def _walk_shapes(self, input_shape: tuple | None) -> tuple:
        """Follow one sample's shape through the layers, filling in the input width of each ``Dense(n_out)``;
        ConfigError for a layer that cannot take what the one before gives. With ``input_shape`` None
        (not known yet), the walk starts at the first Dense and gives its output's shape."""
        shape = input_shape
        for layer in self.layers:
            if shape is None and not isinstance(layer, Dense):
                continue
            if isinstance(layer, Dense):
                if shape is not None and len(shape) == 1 and layer.n_in is None:
                    layer.n_in = shape[0]
                elif shape is not None and len(shape) == 1 and layer.n_in != shape[0]:
                    raise ConfigError(f"{layer!r} takes {layer.n_in} inputs but the layer before it gives {shape[0]}")
                shape = (layer.n_in,) if shape is None else shape
            shape = layer.out_shape(shape)
        return shape  # flat: after the last Dense only layers that keep a flat shape fit (the others refuse it)

    def build(self, input_shape) -> None:
        """Allocate and initialise a model whose input shape is not known yet, for inputs of ``input_shape``:
        a width (the first layer ``Dense(n_out)``) or an image (channels, height, width) for a first Conv2D
        without ``input_shape``.

        ``fit``, ``evaluate``, ``predict``, ``loss_and_grad`` and ``train_step`` do it from their ``x``;
        the weights are those ``Dense(n_in, n_out)`` would have had with the same seed. Does nothing
        for a model built for that input already; ConfigError for another.
        """
        shape = (input_shape,) if inputs.is_whole(input_shape) else input_shape
        if not (isinstance(shape, (tuple, list)) and len(shape) in (1, 3)
                and all(inputs.is_whole(v) and v >= 1 for v in shape)):
            raise ConfigError(f"build(): the input must be a width >= 1 or an image shape (channels, height, width), "
                              f"got {input_shape!r}")
        shape = tuple(int(v) for v in shape)
        if self.input_shape is not None:
            if shape != self.input_shape:
                what = f"{self.n_in} inputs" if len(self.input_shape) == 1 else f"images of shape {self.input_shape}"
                raise ConfigError(f"build({input_shape}): the model takes {what} already")
            return
        lazy = [layer for layer in self.dense if layer.n_in is None]
        # the entry layer keeps the image it was built for, as a lazy Dense keeps its n_in, so that the
        # layers' configs (copies, checkpoints, gradcheck's float64 twin) rebuild the same model
        entry = self._entry()
        keeps_shape = None if isinstance(entry, Dense) else entry  # (a pooling layer or Conv2D refuses flat rows)
        try:
            self._walk_shapes(shape)
            self.input_shape, self.n_in = shape, math.prod(shape)
            if keeps_shape is not None:
                keeps_shape.input_shape = shape
            self._build()
        except BaseException:
            self.input_shape = self.n_in = None
            for layer in lazy:
                layer.n_in = None
            if keeps_shape is not None:
                keeps_shape.input_shape = None
            raise

    def _entry(self) -> Layer:
        """The first layer that has weights or changes the shape (the layers before it, activations and
        dropout, keep it): the one whose ``n_in`` or ``input_shape`` is the model's input."""
        return next(layer for layer in self.layers if isinstance(layer, (Weighted, Flatten, Pool2D)))

    def _build(self) -> None:
        """Check, allocate and initialise the parameters, and compile the layers into a Program."""
        self._check_fits()
        self._allocate(self._init_rng)
        self._program = Program(self.layers, self.loss, self.dtype, self.input_shape, self.dropout_rng, self.backend)
        self._program.bind(self.params, self.grads)
        self.eval_batch = max(1, min(EVAL_BATCH, EVAL_BYTES // self._batch_bytes(1)))

    def _build_for(self, x) -> None:
        """``build`` from ``x``'s width, or its images' shape, when the model has none yet."""
        if self.n_in is not None:
            return
        shape = np.shape(x)
        if len(shape) == 4 and min(shape[1:]) >= 1:
            return self.build(shape[1:])
        if len(shape) != 2 or shape[1] < 1:
            raise inputs.ShapeError(f"x must be 2-D (samples, features) with at least one feature, got shape "
                                    f"{shape}; the model takes its input width from it")
        if not isinstance(self.weighted[0], Dense):
            raise ConfigError(f"x is flat ({shape[1]} features) and the model starts with {self.weighted[0]!r}: "
                              f"give it input_shape=(channels, height, width), or pass x as (n, channels, height, "
                              f"width)")
        self.build(shape[1])

    def _require_built(self, what: str) -> None:
        if self.n_in is None:
            raise ConfigError(f"{what}: the model has no input width yet; fit it, call model.build(n_in) (or "
                              f"build((channels, height, width))), or give Dense(n_in, n_out)")

    # ---- parameters ---------------------------------------------------------------

    def _check_fits(self) -> None:
        """Refuse a model whose parameters and gradients would not fit in memory, before allocating them."""
        n = sum(layer.n_params for layer in self.weighted)
        widest = max(math.prod(layer.weight_shape) for layer in self.weighted)  # drawn in float64 first
        widths = "-".join(map(str, [self.n_in] + [layer.weight_shape[0] for layer in self.weighted]))
        _memory.check_fits(2 * n * self.dtype.itemsize + 8 * widest,
                           f"a {widths} network ({n:,} {self.dtype} parameters, their gradients and the "
                           f"float64 draw of the largest initial weight)",
                           "use fewer or narrower layers")

    def _check_fit_fits(self, optimizer: Optimizer, batch_size: int, val_batch: int) -> None:
        """Refuse before training when the optimizer state and batch buffers fit would allocate do not fit."""
        n, item = self.params.size, self.dtype.itemsize
        have = optimizer.state
        bound = all(name in have and have[name].shape == (n,) and have[name].dtype == self.dtype
                    for name in optimizer.state_names)
        state = 0 if bound else len(optimizer.state_names) * n * item
        needed = state + n * item + self._batch_bytes(batch_size) + self._batch_bytes(val_batch)  # + a snapshot
        _memory.check_fits(needed, f"training ({type(optimizer).__name__} state and batches of {batch_size:,})",
                           "use a smaller batch_size, SGD without momentum, or a smaller model")

    def _batch_bytes(self, batch: int) -> int:
        """About what ``Program.buffers(batch)`` allocates: inputs, targets, outputs, gradients, dropout masks."""
        return batch * self._program.bytes_per_row() + self._program.workspace(batch) * self.dtype.itemsize

    def _allocate(self, rng: np.random.Generator) -> None:
        """All parameters in one flat vector, gradients in another; layers hold views."""
        n = sum(layer.n_params for layer in self.weighted)
        self.params = aligned_zeros(n, self.dtype)
        self.grads = aligned_zeros(n, self.dtype)
        offset = 0
        for layer in self.weighted:
            shape = layer.weight_shape
            n_w, n_b = math.prod(shape), shape[0]
            layer.weight = self.params[offset:offset + n_w].reshape(shape)
            layer.dw = self.grads[offset:offset + n_w].reshape(shape)
            layer.bias = self.params[offset + n_w:offset + n_w + n_b]
            layer.db = self.grads[offset + n_w:offset + n_w + n_b]
            layer.weight[...] = layer.initial_weight(rng)
            offset += n_w + n_b

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of every parameter: ``{"layers.<i>.weight": (out, in), "layers.<i>.bias": (out,)}`` for Dense,
        weight (out_channels, in_channels, k, k) for Conv2D, as PyTorch shapes them."""
        self._require_built("get_weights()")
        out = {}
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Weighted):
                out[f"layers.{i}.weight"] = layer.weight.copy()
                out[f"layers.{i}.bias"] = layer.bias.copy()
        return out

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Load parameters by the names ``get_weights`` uses; shapes must match, and values be finite
        in the model's dtype."""
        self._require_built("set_weights()")
        current = self.get_weights()
        missing = set(current) - set(weights)
        if missing:
            raise ConfigError(f"set_weights() is missing {', '.join(sorted(missing))}")
        for name, value in weights.items():
            if name not in current:
                raise ConfigError(f"set_weights(): no parameter named {name!r}; names are {', '.join(current)}")
            if np.shape(value) != current[name].shape:
                raise ConfigError(f"set_weights(): {name} must have shape {current[name].shape}, "
                                  f"got {np.shape(value)}")
        with np.errstate(over="ignore"):  # a value too large for the dtype becomes Inf, refused below
            weights = {name: np.asarray(value, dtype=self.dtype) for name, value in weights.items()}
        bad = nonfinite(weights)
        if bad:
            raise ConfigError(f"set_weights(): {bad} as {self.dtype}; weights must be finite numbers")
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Weighted):
                layer.weight[...] = weights[f"layers.{i}.weight"]
                layer.bias[...] = weights[f"layers.{i}.bias"]

    @property
    def n_params(self) -> int:
        self._require_built("n_params")
        return self.params.size

    # ---- one training step: the unit fit, gradcheck, bench and data-parallel training share ----

    def loss_and_grad(self, x, y, *, scale: float = 1.0, penalties: bool = True) -> float:
        """Forward and backward on one batch: fill ``model.grads`` and return the loss.

        ``model.grads`` is one flat vector (the layers' ``dw`` and ``db`` are views of it),
        in the order of ``model.params``. The loss is the batch's mean data loss times
        ``scale``, plus the layers' L1/L2 penalties when ``penalties``; ``grads`` is its
        gradient. Dropout draws new masks. Nothing is updated: ``train_step`` does that.

        ``scale`` and ``penalties`` are for data-parallel training: a process holding
        ``n_shard`` of a global batch of ``n_global`` samples passes ``scale=n_shard / n_global``,
        and all processes but one pass ``penalties=False``, so that the sum of their gradients
        is the gradient of the global batch.

        ``fit`` holds BLAS to one thread while numba's threads work, so that the two pools
        do not fight for the cores; a loop of steps of your own can do the same around
        the loop: ``with fastnet.threads.kernel_threads(model.backend): ...``.
        """
        if not inputs.is_number(scale):
            raise ConfigError(f"scale must be a finite number, got {scale!r}")
        if not isinstance(penalties, (bool, np.bool_)):
            raise ConfigError(f"penalties must be True or False, got {penalties!r}")
        x, divisor, y = self._check_batch(x, y)
        return self._loss_and_grad(x, y, np.arange(len(x)), divisor, scale, penalties)[0]

    def train_step(self, x, y, optimizer: Optimizer | None = None) -> float:
        """One training step on one batch: ``loss_and_grad``, then the optimizer's update.

        ``optimizer`` defaults to the model's own (as in ``fit``); its learning rate is the
        one its schedule gives for the next epoch, ``len(model.history)``. Returns the loss.

        Raises DivergenceError, leaving the weights untouched, if the loss is NaN or Inf.
        """
        self._use_optimizer(optimizer)  # checked before any work; update() then binds it
        x, divisor, y = self._check_batch(x, y)
        loss = self._loss_and_grad(x, y, np.arange(len(x)), divisor)[0]
        if divergence.diverged(loss):
            raise DivergenceError(f"the loss is {loss}; the weights are left as they were. "
                                  "Lower the learning rate or check the inputs' scale.")
        self.update()
        return loss

    def update(self, optimizer: Optimizer | None = None) -> None:
        """Apply ``optimizer`` (default: the model's) to the parameters with the gradients in ``model.grads``,
        at the learning rate its schedule gives for epoch ``len(model.history)``."""
        optimizer = self._use_optimizer(optimizer)
        self._require_built("update()")
        optimizer.bind(self.params.size, self.dtype, owner=self)
        self._update(optimizer, optimizer.lr_at(len(self.history)))

    def _update(self, optimizer: Optimizer, lr: float) -> None:
        optimizer.update(self.kernels.raw, self.params, self.grads, lr)

    def _use_optimizer(self, optimizer: Optimizer | None) -> Optimizer:
        """The optimizer passed (which becomes the model's; a name, "sgd" or "adam", makes a new one),
        else the model's own, else SGD(lr=0.1)."""
        if optimizer is not None:
            if isinstance(optimizer, str):
                optimizer = optimizer_named(optimizer)
            if not isinstance(optimizer, Optimizer):
                raise ConfigError(f"optimizer must be SGD(...) or Adam(...), or 'sgd' or 'adam', got {optimizer!r}")
            self.optimizer = optimizer
        elif self.optimizer is None:
            self.optimizer = SGD(lr=0.1)
        return self.optimizer

    def _check_batch(self, x, y) -> tuple[np.ndarray, float, np.ndarray]:
        x, divisor = self._inputs(x)
        y = inputs.check_y(y, len(x), self.n_out, self.loss, self.dtype)
        if len(x) == 0:
            raise inputs.InputError("x is empty: a training step needs at least one sample")
        return x, divisor, y

    def _loss_and_grad(self, x, y, rows, divisor, scale: float = 1.0, penalties: bool = True,
                       weights=None) -> tuple[float, int]:
        """``loss_and_grad`` on ``x[rows]``, already checked (gathered, and scaled by ``divisor``, into
        the batch buffers without a copy of ``x``), each sample's loss times ``weights[rows]`` if given.
        Returns (loss, accuracy hits)."""
        return self._program.run(x, y, rows, divisor, train=True, scale=scale, penalties=penalties, weights=weights)

    @staticmethod
    def _batches(n: int, batch_size: int, order: np.ndarray):
        for start in range(0, n, batch_size):
            yield order[start:start + batch_size]

    # ---- public API ---------------------------------------------------------------

    # None, or where an interrupted epoch stopped (see ``fit``): a JSON-able dict of the epoch, the next
    # batch, the batch size, the sample count, the shuffle generator's state at the epoch's start (None
    # when not shuffled) and the epoch's running loss, hits and seconds. ``save`` stores it.
    partial_epoch: dict | None = None

    # What travels with the model (see ``set_preprocessing``), saved with it; None: x is used as given.
    preprocessing: _preprocessing.Scaler | None = None
    columns: list[str] | None = None
    classes: np.ndarray | None = None

    def set_preprocessing(self, scaler=None, columns=None, classes=None) -> None:
        """Set (or, with None, clear) what the model carries besides its weights, all three at once.

        ``scaler``: a ``fastnet.preprocessing.fit_scaler(...)`` fitted on the training data, as wide as
        the model's input; ``fit``, ``evaluate``, ``predict``, ``loss_and_grad``, ``train_step`` and
        ``to_onnx`` then take raw x and apply it first. ``columns``: the names of the inputs, in
        order. ``classes``: the original class labels (strings or numbers), one per class, in the
        order of the outputs (two for a one-output BinaryCrossEntropy), which ``predict_labels``
        gives back. All three are saved and loaded with the model. ConfigError, in one line and
        changing nothing, for one that does not fit the model.
        """
        self.preprocessing, self.columns, self.classes = _preprocessing.checked(self, scaler, columns, classes)

    def _inputs(self, x) -> tuple[np.ndarray, float]:
        """``x`` ready for the kernels and its batch divisor (``inputs.check_x``), after ``preprocessing``
        (one float copy of x, made once per call), the model built for its width if it had none."""
        self._build_for(x)
        x = inputs.flat_images(x, self.input_shape)
        if self.preprocessing is not None:  # the shape first, so a bad x gets the message it gets without
            x = self.preprocessing.transform(inputs.check_shape(x, self.n_in))
        return inputs.check_x(x, self.n_in, self.dtype)

    def fit(self, x, y, epochs: int = 1, batch_size: int = 32, optimizer: Optimizer | None = None,
            validation_data=None, shuffle: bool = True, progress: bool | None = None,
            callbacks=(), comm=None, sample_weight=None, class_weight=None, validation_split: float = 0.0,
            verbose: int | None = None) -> History:
        """Train for ``epochs`` more epochs and return the model's ``History``.

        Parameters
        ----------
        x : (n, features) numbers, used as they are: floats, or integers converted batch by batch
            (every dataset's ``x`` is float32 in [0, 1]). Images (``fn.datasets.Images(x)``) are
            uint8 pixels that carry their scale: each batch is scaled to [0, 1] as it is gathered,
            so the data is never copied to floats. A plain uint8 array is not scaled.
            With ``preprocessing`` set (``set_preprocessing``), x is raw data: the scaler is
            applied first, to the stored numbers (an Images array's pixels).
        y : (n,) integer labels for SoftmaxCrossEntropy; (n, outputs) targets otherwise.
        epochs, batch_size : int
            Epochs to train on top of those already in ``history``; samples per update.
        optimizer : Optimizer or str, optional
            Defaults to the model's current one (e.g. restored by ``fn.load``), else SGD(lr=0.1).
            "sgd" or "adam" (Keras's names) is a new SGD() or Adam() with fastnet's defaults.
        validation_data : (x_val, y_val), optional
            Evaluated after every epoch as val_loss / val_accuracy.
        shuffle : bool
            Reshuffle every epoch, with the model's seeded generator.
        progress : bool
            A compile notice (only when numba compiles) and one line per epoch on stderr, with a progress
            bar when stderr is a terminal (default True).
        callbacks : list of Callback, e.g. [EarlyStopping(patience=3)].
        comm : mpi4py communicator, optional
            Train data-parallel on its ranks (``MPI.COMM_WORLD`` under ``mpiexec -n N``), each rank
            calling ``fit`` with the same model (same seed or checkpoint), data and arguments; see
            ``fastnet.distributed``. ``batch_size`` is the global batch, split between the ranks, and
            the weights stay bit-identical on every rank. Rank 0 alone shows progress and runs
            ``Checkpoint`` callbacks. An error on any rank raises the same error on every rank; so do
            models (layers, loss, dtype, backend, seed, weights, optimizer and its state) or data that
            differ between ranks: a DistributedError naming what differs, before training.
        sample_weight : (n,) numbers >= 0, optional
            Each sample's weight, as in Keras: a batch's loss is sum(weight · loss) / batch size
            (Keras's "sum_over_batch_size"), in the kernels, without copying rows. ``loss`` in the
            history is weighted so; ``accuracy`` is not. See ``fastnet.weights``.
        class_weight : dict {class label: weight}, optional
            The weight of each class (1 for classes left out), for SoftmaxCrossEntropy or a one-output
            BinaryCrossEntropy; a sample weighs its class's weight. Not together with ``sample_weight``.
        validation_split : float in [0, 1)
            As in Keras: the last fraction of ``x`` and ``y`` (and ``sample_weight``), taken before any
            shuffling, is held out of training and scored as ``validation_data`` would be. Not
            together with ``validation_data`` (which Keras would silently prefer).
        verbose : 0, 1, 2 or "auto", optional
            Keras's name for ``progress``: 0 silent, 1 (or "auto") as ``progress=True``, 2 the same
            without the progress bars. Given with ``progress``, the two must agree.

        Ctrl-C or SIGTERM (in the main thread) stops training after the batch under way and raises
        ``TrainingInterrupted``, a KeyboardInterrupt; a second one stops at once. Stopped
        between batches, the model can be saved, loaded and fitted again to end bit for bit where
        the uninterrupted run would have: the next ``fit`` first finishes the interrupted epoch
        (it counts as one of ``epochs``), with the same data and ``batch_size``.

        Raises
        ------
        ConfigError, ShapeError, DTypeError, InputError
            A bad argument, refused before training; training that would not fit in memory;
            an epoch that would train at learning rate 0, e.g. past the end of a CosineLR schedule
            (stretch it with ``optimizer.schedule.t_max = ...`` or pass a new optimizer); or ``x``
            or ``batch_size`` that differ from those of an interrupted epoch.
        DivergenceError
            If the loss becomes NaN or Inf, or more than a million times both its first value in this
            call and 1 (the rule of ``fastnet.divergence``). The weights are left at the last finite state.
        """
        progress = from_verbose(progress, verbose)
        if comm is not None:
            from fastnet.distributed import DataParallel
            return DataParallel(comm, self).fit(x, y, epochs, batch_size, optimizer, validation_data, shuffle,
                                                progress, callbacks, sample_weight=sample_weight,
                                                class_weight=class_weight, validation_split=validation_split)
        return self._fit(x, y, epochs, batch_size, optimizer, validation_data, shuffle, progress, callbacks,
                         sample_weight=sample_weight, class_weight=class_weight, validation_split=validation_split)

    def _fit(self, x, y, epochs, batch_size, optimizer, validation_data, shuffle, progress, callbacks,
             parallel=None, sample_weight=None, class_weight=None, validation_split=0.0) -> History:
        """``fit``, on this process alone or, with ``parallel`` (a DataParallel), as one of its ranks."""
        if not inputs.is_whole(epochs) or epochs < 0:
            raise ConfigError(f"epochs must be a whole number >= 0, got {epochs!r}")
        if not inputs.is_whole(batch_size) or batch_size < 1:
            raise ConfigError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        if not (inputs.is_number(validation_split) and 0 <= validation_split < 1):
            raise ConfigError(f"validation_split must be a number in [0, 1), got {validation_split!r}")
        if validation_split and validation_data is not None:
            raise ConfigError("pass validation_data or validation_split, not both")
        x, divisor = self._inputs(x)
        y = inputs.check_y(y, len(x), self.n_out, self.loss, self.dtype)
        if len(x) == 0:
            raise inputs.InputError("x is empty: fit needs at least one sample")
        weights = sample_weights(sample_weight, class_weight, y, self.loss, self.n_out, self.dtype)
        val = val_weights = None
        if validation_split:
            x, y, weights, val, val_weights = _split_off(validation_split, x, y, divisor, weights,
                                                         sample_weight is not None)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                got = type(validation_data).__name__
                got += f" of {len(validation_data)}" if isinstance(validation_data, (tuple, list)) else ""
                raise ConfigError(f"validation_data must be a pair (x_val, y_val), got a {got}")
            xv, yv = validation_data
            xv, val_divisor = self._inputs(xv)
            val = (xv, inputs.check_y(yv, len(xv), self.n_out, self.loss, self.dtype), val_divisor)
        self._use_optimizer(optimizer)
        if isinstance(callbacks, Callback) or not isinstance(callbacks, Iterable):
            raise ConfigError(f"callbacks must be a list of callbacks, e.g. callbacks=[EarlyStopping(patience=3)], "
                              f"got {callbacks!r}")
        callbacks = list(callbacks)
        metrics = ["loss", "accuracy"] if self.loss.hits else ["loss"]
        metrics += [f"val_{m}" for m in metrics] if val is not None else []
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise ConfigError(f"{cb!r} is not a fastnet Callback")
            cb.params = {"epochs": epochs, "batch_size": batch_size, "metrics": metrics}
            if isinstance(cb, Checkpoint):
                _refuse_unwritable(cb)
        val_batch = 0 if val is None else min(self.eval_batch, len(val[0]))
        self._check_fit_fits(self.optimizer, min(batch_size, len(x)), val_batch)
        self.optimizer.bind(self.params.size, self.dtype, owner=self)
        self._check_partial_epoch(len(x), batch_size)
        self.optimizer.check_lr(len(self.history), len(self.history) + epochs)

        report = progress if isinstance(progress, Progress) else Progress(enabled=bool(progress))
        if parallel is not None:
            report, callbacks = parallel.start(report, callbacks, (x, y, divisor), val, samples=len(x),
                                               batch_size=batch_size, epochs=epochs, shuffle=shuffle,
                                               sample_weight=parallel.weights_digest(weights))
        with kernel_threads(self.backend):
            report.compiling(lambda: self.compile_kernels(x.dtype, y.dtype if self.loss.integer_targets else np.int64))
            self.stop_training = False
            for cb in callbacks:
                cb.on_train_begin(self)
            with DeferredInterrupt() as interrupt:
                if parallel is not None:
                    interrupt = parallel.shared(interrupt)
                watch = divergence.LossWatch()
                for _ in range(epochs):
                    epoch = len(self.history)
                    with threads_for_load(self.backend):  # an epoch's threads: the cores others leave free
                        record = self._fit_epoch(x, y, divisor, batch_size, shuffle, epoch, report, callbacks,
                                                 interrupt, parallel, watch, weights)
                    if val is not None:
                        record.update({f"val_{k}": v for k, v in self._evaluate(*val, parallel, val_weights).items()})
                    self.history.append(record)
                    report.epoch(record)
                    for cb in callbacks:
                        cb.on_epoch_end(self, record)
                    if parallel is not None:
                        parallel.agree_interrupt(interrupt)
                    if interrupt.requested:
                        raise TrainingInterrupted(f"training stopped after epoch {epoch + 1}")
                    if self.stop_training:
                        break
            for cb in callbacks:
                cb.on_train_end(self)
        return self.history

    def _check_partial_epoch(self, n: int, batch_size: int) -> None:
        """An interrupted epoch is finished on the same samples in the same batches, or not at all."""
        part = self.partial_epoch
        if part is None:
            return
        where = f"this model stopped in the middle of epoch {part['epoch'] + 1}"
        if n != part["samples"]:
            raise ConfigError(f"{where}, training on {part['samples']} samples; fit it on the same data to "
                              f"finish that epoch, not on {n} samples")
        if batch_size != part["batch_size"]:
            raise ConfigError(f"{where} at batch_size={part['batch_size']}; pass batch_size={part['batch_size']} "
                              f"to finish it exactly, not {batch_size}")

    def _epoch_order(self, part: dict, n: int) -> np.ndarray:
        """The sample order of an interrupted epoch, drawn again from the generator state it started with."""
        if part["order"] is None:
            return np.arange(n)
        rng = np.random.Generator(type(self.shuffle_rng.bit_generator)())
        rng.bit_generator.state = part["order"]
        return rng.permutation(n)

    def _fit_epoch(self, x, y, divisor, batch_size, shuffle, epoch, report, callbacks, interrupt,
                   parallel=None, watch=None, weights=None) -> dict:
        """Train one epoch, or the rest of an interrupted one; raise TrainingInterrupted between
        batches once ``interrupt.requested``, leaving ``partial_epoch`` to resume from, and
        DivergenceError when ``watch`` (a ``divergence.LossWatch``) judges a batch loss diverged."""
        watch = watch or divergence.LossWatch()
        n = len(x)
        part, self.partial_epoch = self.partial_epoch, None
        if part is None:
            part = {"epoch": epoch, "batch": 0, "batch_size": batch_size, "samples": n,
                    "order": self.shuffle_rng.bit_generator.state if shuffle else None,
                    "loss": 0.0, "hits": 0, "seconds": 0.0}
            order = self.shuffle_rng.permutation(n) if shuffle else np.arange(n)
        else:
            order = self._epoch_order(part, n)
        first = part["batch"]
        if parallel is not None:
            parallel.start_epoch(epoch, first, batch_size)
        lr = self.optimizer.lr_at(epoch)
        snapshot = self.params.copy()  # the last finite state, should the weights themselves overflow
        total_loss, total_hits, done = part["loss"], part["hits"], first * batch_size
        bar = report.bar(epoch, math.ceil(n / batch_size) - first)
        start = time.perf_counter()
        try:
            for j, idx in enumerate(self._batches(n - done, batch_size, order[done:]), first):
                if parallel is None:
                    loss, hits = self._loss_and_grad(x, y, idx, divisor, weights=weights)
                else:  # this rank's shard, then the sums over the ranks
                    loss, hits = parallel.loss_and_grad(x, y, idx, divisor, interrupt, weights)
                why = watch.problem(loss)
                if why:
                    self._diverged(epoch, j, why, snapshot)
                self._update(self.optimizer, lr)
                total_loss += loss * len(idx)
                total_hits += hits
                done += len(idx)
                bar.update(loss)
                for cb in callbacks:
                    cb.on_batch_end(self, j, loss)
                if interrupt.requested and done < n:
                    self.partial_epoch = {**part, "batch": j + 1, "loss": total_loss, "hits": total_hits,
                                          "seconds": part["seconds"] + time.perf_counter() - start}
                    raise TrainingInterrupted(f"training stopped in epoch {epoch + 1} after batch {j + 1}")
            if not np.isfinite(self.params).all():
                self._diverged(epoch, j, "the weights are NaN or Inf", snapshot)
        finally:
            bar.close()
        seconds = part["seconds"] + time.perf_counter() - start
        record = {"epoch": epoch + 1, "loss": total_loss / done}
        if self.loss.hits:
            record["accuracy"] = total_hits / (done * (1 if self.loss.integer_targets else self.n_out))
        record.update(lr=lr, seconds=seconds)
        return record

    def _diverged(self, epoch: int, batch: int, why: str, snapshot: np.ndarray):
        where = f"epoch {epoch + 1}, batch {batch + 1}"
        if np.isfinite(self.params).all():
            kept = "the weights are left as they were before this batch"
        else:
            self.params[...] = snapshot
            kept = f"the weights overflowed, so they were restored to the start of epoch {epoch + 1}"
        raise DivergenceError(f"training diverged at {where}: {why}; {kept}. "
                              "Lower the learning rate or check the inputs' scale.")

    def _evaluate(self, x, y, divisor, parallel=None, weights=None) -> dict:
        total_loss, total_hits, n = 0.0, 0, len(x)
        order = np.arange(n) if parallel is None else parallel.shard(np.arange(n))
        for idx in self._batches(len(order), self.eval_batch, order):
            loss, hits = self._program.run(x, y, idx, divisor, train=False, weights=weights)
            total_loss += loss * len(idx)
            total_hits += hits
        if parallel is not None:
            total_loss, total_hits = parallel.sum_scores(total_loss, total_hits)
        out = {"loss": total_loss / n if n else math.nan}
        if self.loss.hits:
            out["accuracy"] = total_hits / (n * (1 if self.loss.integer_targets else self.n_out)) if n else math.nan
        return out

    def evaluate(self, x, y, comm=None, sample_weight=None, verbose: int = 0) -> dict:
        """Mean loss (without weight penalties) and, for classification, accuracy: ``{"loss", "accuracy"}``.

        Dropout is off; the result is deterministic. With ``comm`` (an mpi4py communicator, see ``fit``)
        each rank evaluates its share of the samples and every rank gets the totals. ``sample_weight``
        (n,) weighs each sample's loss as in ``fit``: the loss is sum(weight · loss) / n, as Keras's
        ``evaluate`` gives it; accuracy stays unweighted. ``verbose`` 1 or 2 (or "auto") prints the
        result in one line on stderr (on rank 0 alone with ``comm``); 0 prints nothing.
        """
        shown = verbosity(verbose) > 0
        if comm is not None:
            from fastnet.distributed import DataParallel
            scores = DataParallel(comm, self).evaluate(x, y, sample_weight)
            shown = shown and comm.Get_rank() == 0
        else:
            scores = self._evaluate_data(x, y, sample_weight=sample_weight)
        if shown:
            print(format_scores(scores), file=sys.stderr, flush=True)
        return scores

    def _evaluate_data(self, x, y, parallel=None, sample_weight=None) -> dict:
        """``evaluate``, on this process alone or, with ``parallel`` (a DataParallel), as one of its ranks."""
        x, divisor = self._inputs(x)
        y = inputs.check_y(y, len(x), self.n_out, self.loss, self.dtype)
        weights = sample_weights(sample_weight, None, y, self.loss, self.n_out, self.dtype)
        if parallel is not None:
            parallel.start_evaluation(x, y, divisor, weights)
        with kernel_threads(self.backend):
            return self._evaluate(x, y, divisor, parallel, weights)

    def predict(self, x, verbose: int = 0) -> np.ndarray:
        """Outputs for ``x``: class probabilities (n, classes) for SoftmaxCrossEntropy,
        probabilities for BinaryCrossEntropy, raw outputs for MSE. Dropout is off.
        ``verbose`` (0, 1, 2, as Keras takes it) is checked; predict has nothing to report."""
        verbosity(verbose)
        x, divisor = self._inputs(x)
        out = np.empty((len(x), self.n_out), self.dtype)
        k = self.kernels.raw
        with kernel_threads(self.backend):
            for idx in self._batches(len(x), self.eval_batch, np.arange(len(x))):
                logits = self._program.outputs(x, idx, divisor)
                rows = out[idx[0]:idx[-1] + 1]
                if self.loss.output == "softmax":
                    k.softmax(rows, logits)
                else:
                    k.activation_forward(rows, logits, *self.loss.output)
        return out

    def predict_labels(self, x) -> np.ndarray:
        """The class of each sample: ``classes[argmax(predict(x))]`` (p > 0.5 for one sigmoid output), or the
        class indices when ``classes`` is not set. ConfigError for a model that is no classifier."""
        return _preprocessing.labels(self, x)

    def compile_kernels(self, x_dtype=np.uint8, y_dtype=np.int64) -> float:
        """Compile (or load from numba's cache) every kernel a training step uses; returns seconds.

        Runs one step on a scratch batch of 2 rows and leaves the model untouched.
        ``x_dtype`` and ``y_dtype`` are the dtypes of the data and of the integer labels the batches will
        be gathered from (numba compiles the step once per pair: uint8 labels are a step of their own).
        """
        self._require_built("compile_kernels()")
        start = time.perf_counter()
        saved_grads, saved_rng = self.grads.copy(), self.dropout_rng.bit_generator.state  # params are not written
        zeros = np.zeros((2, self.n_in), x_dtype)
        target = np.zeros(2, y_dtype) if self.loss.integer_targets else np.zeros((2, self.n_out), self.dtype)
        self._program.run(zeros, target, np.arange(2), 1.0, train=True)
        self._program.run(zeros, target, np.arange(2), 1.0, train=False)
        if self.optimizer is not None:
            self.optimizer.compile_kernels(self.kernels.raw, self.dtype)
        self.grads[...] = saved_grads
        self.dropout_rng.bit_generator.state = saved_rng
        return time.perf_counter() - start

    def summary(self) -> Summary:
        """A table of layers, output shapes and parameter counts.

        Returns a ``str`` that shows as the table at a prompt or in a notebook;
        ``print(model.summary())`` prints it, ``str(model.summary())`` is the plain text.
        """
        self._require_built("summary()")
        rows = [("layer", "output shape", "params")]
        shape = self.input_shape
        for layer in self.layers:
            shape = layer.out_shape(shape)
            rows.append((repr(layer), f"(None, {', '.join(map(str, shape))})", str(getattr(layer, "n_params", 0))))
        rows.append((f"loss: {self.loss!r}", f"backend: {self.backend}", f"dtype: {self.dtype}"))
        cols = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{a:<{cols[0]}}  {b:<{cols[1]}}  {c:>{cols[2]}}" for a, b, c in rows]
        rule = "-" * len(lines[0])
        total = f"total params: {self.n_params:,}"
        return Summary("\n".join([lines[0], rule, *lines[1:-1], rule, total, lines[-1]]))

    def __repr__(self) -> str:
        inner = ", ".join(map(repr, self.layers))
        return f"Sequential({inner}, loss={self.loss!r}, backend={self.backend!r}, dtype={str(self.dtype)!r})"

    def to_onnx(self, path) -> None:
        """Write the model as an ONNX graph (opset 17) computing what ``predict`` returns, atomically.

        The graph takes ``x`` (batch, n_in) in the model's dtype, raw when the model has
        ``preprocessing`` (the graph applies it), else as ``fit`` saw it (a dataset's ``x`` as it is),
        and gives ``y`` (batch, n_out). Needs ``pip install onnx onnxruntime``; see
        ``fastnet.onnx_export``.
        """
        self._require_built("to_onnx()")
        from fastnet.onnx_export import export
        export(self, path)

    def __getstate__(self) -> tuple[dict, dict]:
        """Pickle as ``checkpoint.describe`` does for files: configuration, parameters, optimizer state,
        history and generator states; never the compiled kernel calls, which ``__setstate__`` rebuilds."""
        self._require_built("pickle")
        return checkpoint.describe(self)

    def __setstate__(self, state: tuple[dict, dict]) -> None:
        checkpoint.rebuild(*state, into=self)

    def save(self, path, include_optimizer: bool = True) -> None:
        """Write weights, architecture and (optionally) optimizer state to a safetensors file, atomically."""
        self._require_built("save()")
        checkpoint.save(self, path, include_optimizer=include_optimizer)


def _split_off(fraction: float, x, y, divisor, weights, weigh_val: bool):
    """``fit``'s ``validation_split``, as Keras takes it: the last ``fraction`` of the samples, before any
    shuffling. Returns the training x, y and weights, the validation (x, y, divisor) and its weights
    (the sample weights' share; class weights weigh training only, as in Keras)."""
    n = len(x)
    split = math.floor(n * (1 - fraction))
    if split < 1 or split == n:
        raise ConfigError(f"validation_split={fraction} of {n} samples leaves {split} to train on and "
                          f"{n - split} to validate; give more samples or another fraction")
    cut = (lambda a, part: None if a is None else a[part])
    train, held = slice(None, split), slice(split, None)
    return (x[train], y[train], cut(weights, train), (x[held], y[held], divisor),
            cut(weights, held) if weigh_val else None)


def _refuse_keras_sigmoid(last_dense: Dense, last_layer: Layer, loss: Loss) -> None:
    """Keras's Dense(1, activation="sigmoid") before binary_crossentropy would apply the sigmoid twice here."""
    if isinstance(loss, BinaryCrossEntropy) and last_layer is last_dense.activation \
            and isinstance(last_layer, Sigmoid):
        raise ConfigError("BinaryCrossEntropy applies the sigmoid itself (Keras's from_logits=True) and predict "
                          "gives probabilities; leave activation='sigmoid' off the last Dense")


def _refuse_unwritable(callback: Checkpoint) -> None:
    """ConfigError before training, not after its first epoch, when a Checkpoint could not write its file."""
    problem = checkpoint.unwritable(callback.path)
    if problem:
        raise ConfigError(f"Checkpoint({str(callback.path)!r}) cannot write there: {problem}; "
                          "give it the path of a file in a writable folder")


def load(path, backend: str | None = None) -> Sequential:
    """Read a model saved with ``model.save`` (weights, architecture, optimizer state, history and
    generator states, so ``fit`` resumes exactly). ``backend`` overrides the saved one.

    Raises CheckpointError, naming the file, for anything that is not a fastnet model file; the
    file is checked in full before any of its arrays is read or any layer allocated.
    """
    return checkpoint.load_into(Sequential.__new__(Sequential), path, backend)
