"""scikit-learn estimators over fastnet: drop-in ``MLPClassifier`` and ``MLPRegressor``.

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from fastnet.sklearn import MLPClassifier
    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), random_state=0)).fit(X, y)

They take ``sklearn.neural_network``'s parameter names and defaults where the meaning matches,
and work in ``clone``, ``Pipeline``, ``GridSearchCV``, ``cross_val_score`` and joblib/Dask pools
(they pickle). A thin adapter over ``fastnet.Sequential``: fastnet's core never imports this module,
and scikit-learn is an optional extra (``pip install 'scikit-learn>=1.6'``; SciPy comes with it).

``learning_rate`` ("constant", "invscaling" with ``power_t``, "adaptive"), ``warm_start``, ``max_fun``
and ``fit(X, y, sample_weight=...)`` follow scikit-learn's rules: its learning rate after each epoch,
a new optimizer on each ``fit`` (``warm_start`` keeps the weights, ``t_`` and ``loss_curve_``), and its
attributes. ``solver="lbfgs"`` is its SciPy L-BFGS-B call (``maxiter=max_iter``, ``maxfun=max_fun``,
``gtol=tol``) on the full-batch objective over the network's flat parameter vector.

Where they differ from scikit-learn's MLP:

* ``MLPRegressor(loss=...)`` is "squared_error" only: fastnet has no Poisson loss.
* ``sample_weight``: negative weights are refused (scikit-learn takes them). scikit-learn divides a
  batch's weighted loss, and its penalty, by the batch's weight sum; fastnet's loss kernels divide
  by the batch size, and the estimator scales that back by the mean weight of the training data. The
  two agree exactly on a full batch ("lbfgs", or ``batch_size`` >= the samples), and for any batch
  whose mean weight is the data's; on other mini-batches the step is larger or smaller by that ratio.
* ``alpha``: scikit-learn adds alpha/2·||W||²/n_batch to each batch's loss. fastnet's penalty is fixed
  per layer, so ``alpha`` becomes ``Dense(l2=alpha / batch_size)`` with the batch size of the first
  ``fit``/``partial_fit``: the same penalty for every full batch, a slightly weaker one on a short last batch.
* Initialisation: Glorot-uniform weights as in scikit-learn (also for "logistic", where scikit-learn
  narrows the range), and biases start at 0 (scikit-learn draws them too).
* Adam adds ``epsilon`` to the bias-corrected sqrt(v) (scikit-learn: to the uncorrected one).
* ``loss_curve_`` and ``loss_`` are the objective the gradients follow, as in scikit-learn: mean log-loss
  summed over outputs, or half the squared error summed over outputs (scikit-learn reports that mean
  over the outputs, which is the same number for a single output; its "lbfgs" then minimises a loss
  whose gradient is not the one it is given). fastnet's own loss kernels average over outputs, so their
  gradients are scaled back to this objective (through the SGD learning rate, Adam's epsilon and l2).
* Inputs are numbers, used as they are, never rescaled: scale them in a Pipeline (StandardScaler,
  MinMaxScaler). Sparse input is refused; the network computes in ``dtype``: by default
  ("auto") float32 for float32 input and float64 for any other, as scikit-learn does; ``dtype="float32"``
  is about twice as fast on float64 input.

Threads: each fit, predict and score runs on ``n_threads`` numba threads (BLAS threads for
``backend="numpy"``), set for the call and restored after it. ``n_threads=None`` means 1 thread when
called from a worker (a thread other than the main thread, or a child process, as joblib's ``n_jobs``
and Dask workers run fits), so side-by-side fits do not oversubscribe the cores; otherwise the current
setting (all cores, unless ``fastnet.set_num_threads`` changed it).
"""
from __future__ import annotations

import contextlib
import inspect
import multiprocessing
import threading
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
except ImportError:  # pragma: no cover - exercised by a test that hides scikit-learn
    raise ImportError("fastnet.sklearn needs scikit-learn: pip install 'scikit-learn>=1.6'") from None
import scipy.optimize  # after the check above: SciPy comes with scikit-learn
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)
from threadpoolctl import threadpool_limits

import fastnet as fn
from fastnet.inputs import is_number, is_whole
from fastnet.threads import kernel_threads

ACTIVATIONS = {"relu": fn.ReLU, "tanh": fn.Tanh, "logistic": fn.Sigmoid, "identity": None}
SOLVERS = ("lbfgs", "sgd", "adam")
LEARNING_RATES = ("constant", "invscaling", "adaptive")


class _BaseMLP(BaseEstimator):
    """What both estimators share: parameters, the network, the training loop's bookkeeping, threads."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dropout=0.0, dtype="auto", backend="numba",
                 n_threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.dtype = dtype
        self.backend = backend
        self.n_threads = n_threads

    # ---- parameters, checked in fit (scikit-learn's rule: __init__ stores them unchanged) ----

    def _hidden(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if np.iterable(sizes) else [sizes]
        if not all(is_whole(s) and s >= 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive whole numbers, e.g. (100,), "
                             f"got {self.hidden_layer_sizes!r}")
        return [int(s) for s in sizes]

    def _check_params(self) -> None:
        """ValueError naming the first bad scikit-learn-side parameter; fastnet checks its own ones."""
        def need(ok, name, what):
            if not ok:
                raise ValueError(f"{name} must be {what}, got {getattr(self, name)!r}")

        self._hidden()
        need(self.activation in ACTIVATIONS, "activation", f"one of {', '.join(map(repr, ACTIVATIONS))}")
        need(self.solver in SOLVERS, "solver", f"one of {', '.join(map(repr, SOLVERS))}")
        need(self.learning_rate in LEARNING_RATES, "learning_rate", f"one of {', '.join(map(repr, LEARNING_RATES))}")
        need(is_number(self.power_t) and self.power_t >= 0, "power_t", "a number >= 0")
        need(is_whole(self.max_fun) and self.max_fun >= 1, "max_fun", "a whole number >= 1")
        need(self.solver != "lbfgs" or not self.dropout, "dropout",
             "0 with solver='lbfgs', whose full-batch objective must not be random")
        need(is_number(self.alpha) and self.alpha >= 0, "alpha", "a number >= 0")
        need(self.batch_size == "auto" or (is_whole(self.batch_size) and self.batch_size >= 1), "batch_size",
             "'auto' or a whole number >= 1")
        need(is_whole(self.max_iter) and self.max_iter >= 1, "max_iter", "a whole number >= 1")
        need(is_number(self.tol) and self.tol >= 0, "tol", "a number >= 0")
        need(is_whole(self.n_iter_no_change) and self.n_iter_no_change >= 1 or self.n_iter_no_change == np.inf,
             "n_iter_no_change", "a whole number >= 1 or np.inf")
        need(is_number(self.validation_fraction) and 0 < self.validation_fraction < 1, "validation_fraction",
             "a number in (0, 1)")
        need(self.n_threads is None or (is_whole(self.n_threads) and self.n_threads >= 1), "n_threads",
             "None or a whole number >= 1")
        for name in ("shuffle", "nesterovs_momentum", "early_stopping", "warm_start"):  # as scikit-learn's 'boolean'
            need(isinstance(getattr(self, name), (bool, np.bool_)), name, "True or False")
        need(isinstance(self.verbose, (bool, np.bool_)) or is_whole(self.verbose), "verbose", "a bool or an int")
        need(is_number(self.learning_rate_init) and self.learning_rate_init > 0, "learning_rate_init",
             "a number > 0")
        need(is_number(self.momentum) and 0 <= self.momentum <= 1, "momentum", "a number in [0, 1]")
        for name in ("beta_1", "beta_2"):
            need(is_number(getattr(self, name)) and 0 <= getattr(self, name) < 1, name, "a number in [0, 1)")
        need(is_number(self.epsilon) and self.epsilon > 0, "epsilon", "a number > 0")

    # ---- threads ----------------------------------------------------------------------------

    def _thread_count(self) -> int | None:
        """Threads for this call: n_threads, else 1 in a worker thread or process, else None (leave as is)."""
        if self.n_threads is not None:
            return int(self.n_threads)
        in_worker = threading.current_thread() is not threading.main_thread() \
            or multiprocessing.parent_process() is not None
        return 1 if in_worker else None

    @contextlib.contextmanager
    def _threads(self):
        """Run the block on ``_thread_count()`` threads; numba's setting is per thread, so restore it after."""
        n = self._thread_count()
        if n is None:
            yield
        elif self.backend == "numba":
            before = fn.get_num_threads()
            fn.set_num_threads(n)
            try:
                yield
            finally:
                fn.set_num_threads(before)
        else:
            with threadpool_limits(limits=n, user_api="blas"):
                yield

    # ---- fitting ----------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Train on X, y (a new network, or with ``warm_start`` the current one); returns self.

        The stochastic solvers run up to ``max_iter`` epochs and stop early, as scikit-learn does, once
        the training loss (or with ``early_stopping``, the validation score on a held-out
        ``validation_fraction``) has not improved by ``tol`` for more than ``n_iter_no_change`` epochs in
        a row (with ``learning_rate="adaptive"``, SGD first divides its rate by 5, stopping only below
        1e-6); ``early_stopping`` then keeps the best epoch's weights. "lbfgs" minimises the full-batch
        objective with SciPy's L-BFGS-B, for up to ``max_iter`` iterations and ``max_fun`` evaluations.
        ``sample_weight`` (n,) weighs each sample's loss, as scikit-learn does (see the module docstring).
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def _fit(self, X, y, incremental: bool, classes=None, sample_weight=None):
        self._check_params()
        first = not hasattr(self, "model_") or not (incremental or self.warm_start)
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        X, y = self._validate_xy(X, y, reset=first)
        if first:
            self._dtype = self._compute_dtype(X)
        weights = self._sample_weight(sample_weight, X)
        targets = self._targets(y, first, classes, incremental)
        rng = check_random_state(self.random_state)
        if self.solver == "lbfgs":
            if first:
                self._initialize(X.shape[1], targets, len(X), int(rng.randint(np.iinfo(np.int32).max)))
            return self._fit_lbfgs(X, targets, weights)
        val = None
        if self.early_stopping:
            X, targets, weights, val = self._hold_out(X, y, targets, weights, rng)
        batch = self._batch(len(X))
        if first:
            self._initialize(X.shape[1], targets, batch, int(rng.randint(np.iinfo(np.int32).max)))
        if not incremental or not hasattr(self, "_lr"):  # as scikit-learn, each fit starts a new optimizer
            self._new_optimizer()
        self._weight_scale = _mean_weight(weights)
        self._tune_optimizer()
        self.n_iter_ = 0
        epochs = 1 if incremental else self.max_iter
        with self._threads():
            self.model_.fit(X, targets, epochs=epochs, batch_size=batch, shuffle=bool(self.shuffle),
                            progress=bool(self.verbose), callbacks=[_Epochs(self, val, len(X))],
                            sample_weight=weights)
        if self._best_params is not None:
            np.copyto(self.model_.params, self._best_params)  # early stopping keeps the best epoch
        if not incremental and not self.model_.stop_training and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        return self

    def _sample_weight(self, sample_weight, X):
        """``sample_weight`` checked as scikit-learn checks it (which refuses all zeros), as float64, or None;
        negative weights are refused too."""
        if sample_weight is None:
            return None
        return _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)

    def _hold_out(self, X, y, targets, weights, rng):
        """Split off ``validation_fraction`` (stratified for single-label classes), as scikit-learn does:
        returns the training X, targets and weights and the held-out (X, y, weights)."""
        stratify = y if y.ndim == 1 and isinstance(self, ClassifierMixin) else None
        train, held = train_test_split(np.arange(len(X)), random_state=rng, test_size=self.validation_fraction,
                                       stratify=stratify)
        if len(held) < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        if weights is None:
            return X[train], targets[train], None, (X[held], y[held], None)
        if not weights[train].any():
            raise ValueError("sample_weight is 0 for every sample left for training after the validation split")
        return X[train], targets[train], weights[train], (X[held], y[held], weights[held])

    def _compute_dtype(self, X):
        """The network's dtype: ``dtype``, or with "auto" X's, as scikit-learn's MLPs keep float32 input in
        float32 and compute everything else in float64."""
        if isinstance(self.dtype, str) and self.dtype == "auto":
            return "float32" if X.dtype == np.float32 else "float64"
        return self.dtype

    def _validate_xy(self, X, y, reset: bool):
        X, y = validate_data(self, X, y, multi_output=True, dtype="numeric", reset=reset,
                             y_numeric=not isinstance(self, ClassifierMixin))
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _batch(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
        return int(min(self.batch_size, n))

    def _initialize(self, n_features: int, targets: np.ndarray, batch: int, seed: int) -> None:
        """A new fastnet network, and scikit-learn's fitted attributes, reset."""
        loss, n_out, self.out_activation_, self._loss_scale = self._output(targets)
        l2 = self.alpha / (self._loss_scale * batch)
        layers, width = [], n_features
        for size in self._hidden():
            layers.append(fn.Dense(width, size, l2=l2))
            if ACTIVATIONS[self.activation] is not None:
                layers.append(ACTIVATIONS[self.activation]())
            if self.dropout:
                layers.append(fn.Dropout(self.dropout))
            width = size
        layers.append(fn.Dense(width, n_out, l2=l2))
        self.model_ = fn.Sequential(*layers, loss=loss, backend=self.backend, dtype=self._dtype, seed=seed)
        self.n_outputs_ = targets.shape[1] if targets.ndim == 2 else n_out
        self.n_layers_ = len(self._hidden()) + 2
        self.n_iter_, self.t_ = 0, 0
        if self.solver == "lbfgs":  # scikit-learn's lbfgs has no loss curve nor stopping bookkeeping
            return
        self.loss_curve_, self._no_improvement_count, self._best_params = [], 0, None
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
        else:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf

    def _new_optimizer(self) -> None:
        """A fresh fastnet optimizer for the network, at scikit-learn's initial learning rate."""
        self._lr = float(self.learning_rate_init)  # scikit-learn's current rate, which its schedules change
        if self.solver == "sgd":
            self.model_.optimizer = fn.SGD(lr=self._lr, momentum=self.momentum,
                                           nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)
        else:
            self.model_.optimizer = fn.Adam(lr=self._lr, betas=(self.beta_1, self.beta_2), eps=self.epsilon)

    def _tune_optimizer(self) -> None:
        """Make fastnet's step scikit-learn's. fastnet's gradient is scikit-learn's times the mean sample
        weight (fastnet divides a batch's weighted loss by its size, scikit-learn by its weight) and over
        the loss scale (fastnet's loss kernels average over outputs). SGD's rate makes up for both; Adam's
        step does not depend on the gradient's scale but through epsilon, so epsilon is scaled alike."""
        to_sklearn = self._loss_scale / self._weight_scale
        opt = self.model_.optimizer
        if self.solver == "sgd":
            lr = self._lr * to_sklearn
            if "velocity" in opt.state:  # fastnet's velocity is in gradient units, scikit-learn's in steps:
                opt.state["velocity"] *= opt.lr / lr  # a new rate must not rescale the steps already taken
            opt.lr = lr
        else:
            opt.eps = self.epsilon / to_sklearn

    def _fit_lbfgs(self, X, targets, weights):
        """scikit-learn's lbfgs: SciPy's L-BFGS-B over the flat parameter vector, on the full-batch
        objective, with scikit-learn's options."""
        model = self.model_
        objective = self._lbfgs_objective(X, targets, weights)
        # no "iprint" for verbose: SciPy >= 1.15 ignores it (so scikit-learn's lbfgs prints nothing there either)
        options = {"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol}
        with self._threads(), kernel_threads(model.backend):
            result = scipy.optimize.minimize(objective, model.params.astype(np.float64), method="L-BFGS-B",
                                             jac=True, options=options)
        model.params[...] = result.x  # the last evaluation may have been elsewhere on the line search
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = float(result.fun)
        if not np.isfinite(model.params).all():
            raise ValueError("Solver produced non-finite parameter weights. The input data may contain large "
                             "values and need to be preprocessed.")
        return self

    def _lbfgs_objective(self, X, targets, weights):
        """scikit-learn's full-batch objective as a function of the flat parameters (float64), which it
        sets in the network: p -> (weighted mean loss + alpha/2·||W||² / weight sum, its gradient)."""
        model = self.model_
        x, divisor, y = model._check_batch(X, targets)
        rows = np.arange(len(x))
        w = None if weights is None else weights.astype(model.dtype)
        to_sklearn = self._loss_scale / _mean_weight(weights)

        def objective(p):
            model.params[...] = p
            loss = model._loss_and_grad(x, y, rows, divisor, weights=w)[0]
            return loss * to_sklearn, model.grads.astype(np.float64) * to_sklearn
        return objective

    def _end_epoch(self, loss: float, val, n: int) -> bool:
        """scikit-learn's per-epoch bookkeeping and learning-rate schedule; True when it would stop (no
        improvement by ``tol`` and, with "adaptive", a learning rate already at 1e-6 or below)."""
        self.n_iter_ += 1
        self.t_ += n
        self.loss_ = loss
        self.loss_curve_.append(loss)
        if val is not None:
            score = self._score_arrays(*val)
            self.validation_scores_.append(score)
            self._no_improvement_count = self._no_improvement_count + 1 \
                if score < self.best_validation_score_ + self.tol else 0
            if score > self.best_validation_score_:
                self.best_validation_score_, self._best_params = score, self.model_.params.copy()
        else:
            self._no_improvement_count = self._no_improvement_count + 1 if loss > self.best_loss_ - self.tol else 0
            self.best_loss_ = min(self.best_loss_, loss)
        schedule = self.learning_rate if self.solver == "sgd" else "constant"  # Adam ignores it, as in sklearn
        if schedule == "invscaling":
            self._lr = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
            self._tune_optimizer()
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        watched = "Validation score" if val is not None else "Training loss"
        msg = f"{watched} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs."
        if schedule == "adaptive" and self._lr > 1e-6:
            self._lr /= 5.0
            self._tune_optimizer()
            self._no_improvement_count = 0
            if self.verbose:
                print(f"{msg} Setting learning rate to {self._lr:f}")
            return False
        if self.verbose:
            print(msg + (" Learning rate too small. Stopping." if schedule == "adaptive" else " Stopping."))
        return True

    # ---- predicting -------------------------------------------------------------------------

    def _forward(self, X) -> np.ndarray:
        """The network's outputs (probabilities for classifiers) for new X, checked as scikit-learn does."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype="numeric", reset=False)
        with self._threads():
            return self.model_.predict(X)

    def to_onnx(self, path) -> None:
        """Write the fitted network as an ONNX graph (opset 17) computing ``predict_proba`` for a classifier
        and ``predict`` for a regressor, as (batch, n) in the estimator's dtype; see ``Sequential.to_onnx``."""
        from fastnet.onnx_export import export
        check_is_fitted(self)
        export(self.model_, path, both_classes=True)

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weights as scikit-learn lays them out: coefs_[i] is (n_in, n_out), a view of the network's."""
        return [layer.weight.T for layer in self.model_.dense]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Biases: intercepts_[i] is (n_out,), a view of the network's."""
        return [layer.bias for layer in self.model_.dense]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _with_parameter(function, name: str, default, after: str) -> inspect.Signature:
    """``function``'s signature with one more keyword-only parameter ``name`` after ``after``."""
    sig = inspect.signature(function)
    params = list(sig.parameters.values())
    at = [p.name for p in params].index(after) + 1
    extra = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
    return sig.replace(parameters=params[:at] + [extra] + params[at:])


def _mean_weight(weights) -> float:
    """The mean sample weight, 1 without weights: fastnet's weighted loss over scikit-learn's (fastnet
    divides a batch's weighted loss by its size, scikit-learn by its weight sum)."""
    return 1.0 if weights is None else float(weights.mean())


def _stochastic(estimator) -> bool:
    """partial_fit's gate, as scikit-learn's: only the stochastic solvers train incrementally."""
    if estimator.solver == "lbfgs":
        raise AttributeError("partial_fit is only available for stochastic optimizers. lbfgs is not stochastic.")
    return True


class _Epochs(fn.Callback):
    """Hands each epoch's loss to the estimator's bookkeeping and stops training when it says so."""

    def __init__(self, estimator: _BaseMLP, val, n: int):
        self.estimator, self.val, self.n = estimator, val, n

    def on_epoch_end(self, model, record):
        est = self.estimator
        if est._end_epoch(record["loss"] * est._loss_scale / est._weight_scale, self.val, self.n):
            model.stop_training = True


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastnet; drop-in for sklearn.neural_network's.

    Labels may be of any type (strings, non-contiguous integers), or a 0/1 indicator matrix for
    multilabel problems. Two classes or multilabel: logistic outputs with binary cross-entropy;
    more: softmax with cross-entropy.

    Parameters
    ----------
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, learning_rate_init, power_t,
    max_iter, shuffle, random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
    early_stopping, validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As in ``sklearn.neural_network.MLPClassifier``, with its defaults; see this module's docstring
        for the few differences. ``max_iter`` counts epochs (iterations for "lbfgs").
    dropout : float in [0, 1)
        Dropout after every hidden layer while training (0: none; not with "lbfgs").
    dtype : {"auto", "float32", "float64"}
        "auto": X's, float32 for float32 input, else float64 (as scikit-learn); "float32" is faster.
    backend : {"numba", "numpy"}
    n_threads : int or None
        Threads per fit/predict; None: 1 inside a worker (joblib n_jobs, Dask), else the current setting.

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_, n_outputs_, n_layers_, out_activation_, loss_, loss_curve_,
    best_loss_, validation_scores_, best_validation_score_, n_iter_, t_, coefs_, intercepts_
        As in scikit-learn (the stochastic solvers' ones not set by "lbfgs"); ``coefs_[i]`` is (n_in, n_out),
        a view of the network's weights.
    model_ : fastnet.Sequential
        The trained network (``model_.save(path)`` writes it as a safetensors file).
    """

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over X, y, continuing from the current network (a new one on the first call).

        ``classes`` (every label y will ever hold) is required on the first call.
        """
        if not hasattr(self, "classes_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, incremental=True, classes=classes, sample_weight=sample_weight)

    def _targets(self, y, first: bool, classes, incremental: bool) -> np.ndarray:
        """Labels as the loss wants them: class indices (softmax) or 0/1 floats (logistic outputs)."""
        check_classification_targets(y)
        if first:
            known = unique_labels(y if classes is None else classes)
            if len(known) < 2 and y.ndim == 1:
                raise ValueError(f"MLPClassifier needs at least 2 classes to learn, but y holds one class: "
                                 f"{known[0]!r}")
            self._label_binarizer = LabelBinarizer().fit(known if y.ndim == 1 else y)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(f"classes={classes!r} is not the same as on the first call, {self.classes_!r}")
        elif self.warm_start and not np.array_equal(unique_labels(y), self.classes_):
            raise ValueError(f"warm_start can only be used where `y` has the same classes as in the previous "
                             f"call to fit. Previously got {self.classes_}, `y` has {unique_labels(y)}")
        unseen = np.setdiff1d(unique_labels(y), self.classes_) if y.ndim == 1 else []
        if len(unseen):
            raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                             f"'y' has {unique_labels(y)}.")
        if self._label_binarizer.y_type_ == "multiclass":
            return np.searchsorted(self.classes_, y)
        return self._label_binarizer.transform(y).astype(self._dtype)

    def _output(self, targets):
        """(loss, outputs, scikit-learn's out_activation_, sklearn objective ÷ fastnet loss)."""
        if targets.ndim == 1:
            return fn.SoftmaxCrossEntropy(), len(self.classes_), "softmax", 1.0
        return fn.BinaryCrossEntropy(), targets.shape[1], "logistic", float(targets.shape[1])

    def _score_arrays(self, X, y, sample_weight=None) -> float:
        return accuracy_score(y, self._labels(self.model_.predict(X)), sample_weight=sample_weight)

    def _labels(self, out: np.ndarray) -> np.ndarray:
        return self._label_binarizer.inverse_transform(out.ravel() if out.shape[1] == 1 else out)

    def predict(self, X):
        """Predicted labels, (n,), or (n, n_labels) for multilabel."""
        return self._labels(self._forward(X))

    def predict_proba(self, X):
        """Class probabilities, (n, n_classes) in the order of ``classes_``."""
        out = self._forward(X)
        if self.out_activation_ == "logistic" and self.n_outputs_ == 1:
            return np.hstack([1 - out, out])
        return out

    def predict_log_proba(self, X):
        """The logarithm of ``predict_proba``."""
        return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastnet (squared error); drop-in for scikit-learn's.

    Parameters and attributes are those of ``MLPClassifier`` (without ``classes_``), and ``loss``, which
    is "squared_error" (fastnet has no "poisson"); targets may be (n,) or (n, n_outputs). ``predict``
    returns float64, as scikit-learn's regressors do.
    """

    def __init__(self, *args, loss="squared_error", **params):
        super().__init__(*args, **params)
        self.loss = loss

    # scikit-learn reads the parameters from the signature: the base class's, with scikit-learn's `loss`
    __init__.__signature__ = _with_parameter(_BaseMLP.__init__, "loss", "squared_error", after="activation")

    def _check_params(self) -> None:
        super()._check_params()
        if self.loss != "squared_error":
            raise ValueError(f"loss must be 'squared_error' (fastnet has no Poisson loss; scikit-learn's own "
                             f"MLPRegressor has loss='poisson'), got {self.loss!r}")

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over X, y, continuing from the current network (a new one on the first call)."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _targets(self, y, first: bool, classes, incremental: bool) -> np.ndarray:
        if not first and y.reshape(len(y), -1).shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y.reshape(len(y), -1).shape[1]} outputs, but the network was fitted "
                             f"with {self.n_outputs_}")
        return y.reshape(len(y), -1)

    def _output(self, targets):
        return fn.MSE(), targets.shape[1], "identity", targets.shape[1] / 2

    def _score_arrays(self, X, y, sample_weight=None) -> float:
        return r2_score(y, self._values(self.model_.predict(X)), sample_weight=sample_weight)

    @staticmethod
    def _values(out: np.ndarray) -> np.ndarray:
        out = out.astype(np.float64)
        return out.ravel() if out.shape[1] == 1 else out

    def predict(self, X):
        """Predicted values, (n,) for a single output, else (n, n_outputs)."""
        return self._values(self._forward(X))
