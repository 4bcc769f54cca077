"""Data-parallel training over MPI: every rank holds the whole model and computes a shard of each batch.

``model.fit(..., comm=MPI.COMM_WORLD)``, ``model.evaluate(..., comm=...)`` and ``mpiexec -n N fastnet train``
run through ``DataParallel``. One step on N ranks:

* every rank draws the same shuffled order (the model's shuffle generator, from the same seed) and
  takes the same global batch of ``batch_size`` samples; rank r computes its contiguous share of it
  with ``loss_and_grad(scale=n_shard / n_batch, penalties=rank == 0)``;
* the shards' gradients are summed into ``model.grads`` on every rank, bit-identically (``sum``), with
  the loss, the accuracy hits and a Ctrl-C flag in a second, tiny sum;
* every rank applies the same update to the same weights.

Failures: every collective sequence opens with ``agree``, where a rank that failed before it (bad data, a
bad flag) meets the others, and every rank raises the same error (a ``DistributedError`` naming the rank
when the ranks did not all fail alike); the first, under ``mpiexec``, comes right after argument parsing
(``set_up``). Ranks that would not compute the same thing stop there too, on every rank with a
``DistributedError`` naming what differs: the command's flags (``agree_on_flags``), and when ``fit`` or
``evaluate`` starts, the model (``DataParallel.described``, its weights, optimizer and generators) and a
digest of the data (``digest``). In training, divergence
and Ctrl-C are decided on summed values, so every rank stops at the same batch; any other error on one
rank prints one line and ends every rank with ``MPI_Abort``, as no rank may be left in a collective.

mpi4py is imported here only, and only when a communicator is given or an MPI launcher started the process.
"""
from __future__ import annotations

import os
import sys
import zlib

import numpy as np

from fastnet._interrupt import TrainingInterrupted
from fastnet.callbacks import Checkpoint
from fastnet.errors import ConfigError, DistributedError, DivergenceError
from fastnet.progress import Progress

# What MPI launchers put in each process's environment: MPICH's and Intel's hydra (PMI_*), Open MPI
# (OMPI_*), MVAPICH (MV2_*), PMIx launchers such as Slurm's srun --mpi=pmix (PMIX_RANK).
LAUNCHER_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_RANK")
RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
DROPOUT_KEY = 3  # the spawn key of the ranks' dropout streams: past the 3 children Sequential spawns
INSTALL = "pip install mpi4py mpich"
SHOWN = 80  # the most characters of a value a disagreement between ranks shows


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ConfigError(f"data-parallel training needs mpi4py and an MPI library: {INSTALL}") from None
    return MPI


def launched_comm():
    """``MPI.COMM_WORLD`` when an MPI launcher (``mpiexec -n N``, N > 1) started this process, else None.

    A plain run never imports mpi4py (which would start MPI). Raises ConfigError when a launcher
    started the process but mpi4py is not installed.
    """
    if not any(name in os.environ for name in LAUNCHER_VARS):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise ConfigError(f"mpiexec started this process, but mpi4py is not installed: {INSTALL}") from None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def launcher_rank() -> int:
    """This process's rank as the launcher's environment gives it (0 when none does), without MPI."""
    for name in RANK_VARS:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def ranks_here(comm) -> int:
    """How many ranks of ``comm`` run on this machine (1 without ``comm``). Collective."""
    if comm is None:
        return 1
    local = comm.Split_type(_mpi().COMM_TYPE_SHARED)
    try:
        return local.Get_size()
    finally:
        local.Free()


def agree(comm, error: BaseException | str | None = None, **settings) -> None:
    """Collective: each rank says whether it failed (``error``) and what it is about to run (``settings``).

    If any rank failed, every rank raises: the error itself when all ranks failed alike, else a
    DistributedError with the first failing rank's message, naming that rank. Settings that differ
    between ranks are a DistributedError on every rank too, naming the first setting that differs and
    its values on rank 0 and on the first rank that differs. A rank that fails before a collective
    sequence calls this (or ``exit_status``) where the others call the sequence's opening ``agree``.
    """
    message = None if error is None else error if isinstance(error, str) else _one_line(error)
    everyone = comm.allgather((message, settings))
    common = _first_failure(everyone)
    if common is not None:
        if isinstance(error, BaseException) and all(m == message for m, _ in everyone):
            raise error
        raise DistributedError(common)
    disagreement = _disagreement([theirs for _, theirs in everyone])
    if disagreement is not None:
        raise DistributedError(disagreement)


def set_up(setup, settings=lambda result: {}):
    """``setup()`` (a command's argument parsing), then, when an MPI launcher started this process, the
    first collective of the run: returns (``setup``'s result, the communicator or None).

    Every rank joins the agreement whether its ``setup`` succeeded or raised, so that a rank given a bad
    flag that the others were not stops them all (``agree``: a DistributedError naming it) instead of
    leaving them waiting in their first collective; the ranks also agree on ``settings(result)``. Only the
    launcher's environment variables decide whether to join (``launched_comm``). Raises ``setup``'s own
    error when it failed on every rank alike, or in a plain run.
    """
    try:
        result, error = setup(), None
    except (Exception, SystemExit) as e:  # SystemExit: --help or --version, printed on this rank
        result, error = None, e
    try:
        comm = launched_comm()
    except ConfigError:
        if error is not None:
            raise error from None
        raise
    if comm is not None:
        agree(comm, error, **({} if error is not None else settings(result)))
    if error is not None:
        raise error
    return result, comm


# The train flags each rank may set for itself: they change how one rank runs or reports, never what
# is computed. --threads: the kernels give the same bits on any thread count; --json, --quiet: what this
# rank prints; --save, --plot: rank 0 alone writes; --resume, --data, --dataset, --download: where this
# rank reads its model and data from, which may be a copy of its own on each machine: what it reads is
# compared instead, when fit starts (the model, its weights and state, and the data's content).
PER_RANK_FLAGS = frozenset({"threads", "json", "quiet", "save", "plot", "resume", "data", "dataset", "download"})


def agree_on_flags(comm, flags: dict) -> None:
    """Collective (nothing without ``comm``): the ranks compare ``flags`` (a command's flags, name to
    value, defaults filled in), all but ``PER_RANK_FLAGS``; any that differs is a DistributedError on every
    rank naming the flag, e.g. "ranks disagree on --activation: rank 0 relu, rank 1 tanh; ..."."""
    if comm is not None:
        agree(comm, **{f"--{name.replace('_', '-')}": value for name, value in flags.items()
                       if name not in PER_RANK_FLAGS})


def _disagreement(settings: list[dict]) -> str | None:
    """The line every rank reports when the ranks' ``settings`` (one dict a rank) differ, else None:
    the first key that differs between rank 0 and the first rank that differs, with both values."""
    ours = settings[0]
    for rank, theirs in enumerate(settings[1:], 1):
        keys = list(ours) + [key for key in theirs if key not in ours]
        differ = [key for key in keys if ours.get(key) != theirs.get(key)]
        if differ:
            what, a, b = _difference(differ[0], ours.get(differ[0]), theirs.get(differ[0]))
            more = f" (and on {', '.join(differ[1:])})" if differ[1:] else ""
            return (f"ranks disagree on {what}: rank 0 {a}, rank {rank} {b}{more}; every rank must build the same "
                    "model (same flags and seed, or the same checkpoint) and pass the same data and settings")
    return None


def _difference(key: str, a, b) -> tuple[str, str, str]:
    """What differs and the two values, as text short enough for one line: in long lists (a model's
    layers), the first item that differs, "nothing" past a list's end."""
    if isinstance(a, list) and isinstance(b, list) and max(len(str(a)), len(str(b))) > SHOWN:
        i = next(i for i in range(max(len(a), len(b))) if a[i:i + 1] != b[i:i + 1])
        a, b = (items[i] if i < len(items) else None for items in (a, b))
        return f"{key} (item {i + 1})", _shown(a), _shown(b)
    return key, _shown(a), _shown(b)


def _shown(value) -> str:
    text = "nothing" if value is None else " ".join(str(value).split())
    return text if len(text) <= SHOWN else text[:SHOWN - 3] + "..."


def digest(a: np.ndarray) -> str:
    """Shape, dtype and a CRC-32 of the bytes of ``a``: what ranks compare to learn they hold the same
    data. Read in slices of about 1 MB, so a non-contiguous array is never copied whole."""
    a = np.asarray(a)
    crc = 0
    if a.flags.c_contiguous:
        crc = zlib.crc32(a.reshape(-1).view(np.uint8))
    else:
        rows = max(1, (1 << 20) // max(1, a[:1].nbytes))
        for start in range(0, len(a), rows):
            crc = zlib.crc32(np.ascontiguousarray(a[start:start + rows]).reshape(-1).view(np.uint8), crc)
    return f"{'x'.join(map(str, a.shape))} {a.dtype}, crc32 {crc:08x}"


def shard_slice(n: int, rank: int, size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` items split between ``size`` ranks. The first ``n % size``
    ranks take one more, so rank 0's share (which carries the penalties) is empty only when n is 0."""
    q, extra = divmod(n, size)
    start = rank * q + min(rank, extra)
    return slice(start, start + q + (rank < extra))


def share(n: int, comm) -> slice:
    """This rank's contiguous share of ``n`` items: all of them without ``comm``."""
    return slice(0, n) if comm is None else shard_slice(n, comm.Get_rank(), comm.Get_size())


def total(counts: np.ndarray, comm) -> np.ndarray:
    """Integer ``counts`` summed over the ranks of ``comm`` (as they are without it). Collective."""
    if comm is not None:
        comm.Allreduce(_mpi().IN_PLACE, counts, op=_mpi().SUM)
    return counts


def exit_status(comm, code: int, error: str | None) -> tuple[int, str | None]:
    """Collective, where a command ends on every rank (or fails on some before ``agree``): the exit
    status and the error line all ranks report, the first failing rank's (else the highest status)."""
    everyone = comm.allgather((error, {"exit": code}))
    common = _first_failure(everyone)
    if common is not None:
        return next(s["exit"] for m, s in everyone if m is not None and "exit" in s), common
    return max(s["exit"] for _, s in everyone), None


def _first_failure(everyone: list) -> str | None:
    """The message all ranks report for the (message, settings) pairs ``everyone`` sent: the first
    failing rank's, naming it unless every rank failed alike; None if none failed."""
    failed = [(rank, message) for rank, (message, _) in enumerate(everyone) if message is not None]
    if not failed:
        return None
    rank, message = failed[0]
    if len(failed) < len(everyone) or any(m != message for _, m in failed):
        message = f"on rank {rank} of {len(everyone)}: {message}"
    return message


def sum_over_ranks(comm, buf: np.ndarray) -> None:
    """Replace ``buf`` by its sum over the ranks, bit-identical on every rank.

    MPI does not promise that every rank of an Allreduce gets the same bits: an algorithm may add
    the ranks' values in a different order on different ranks. On 2 ranks each element is one sum
    a + b, which is commutative in IEEE arithmetic, so the in-place Allreduce is exact everywhere.
    On more, Reduce_scatter sums each slice once, on the rank that owns it, and Allgatherv copies
    those bits to every rank: the same traffic as a ring Allreduce, in two collectives.
    """
    MPI = _mpi()
    if comm.Get_size() <= 2:
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return
    counts = [len(s) for s in np.array_split(np.arange(len(buf)), comm.Get_size())]
    starts = np.cumsum([0] + counts[:-1]).tolist()
    mine = np.empty(counts[comm.Get_rank()], buf.dtype)
    comm.Reduce_scatter(buf, mine, recvcounts=counts, op=MPI.SUM)
    comm.Allgatherv(mine, [buf, (counts, starts)])


class SharedInterrupt:
    """Ctrl-C as all ranks see it: ``requested`` turns True only through a sum over the ranks, so every
    rank stops after the same batch; ``local`` is this rank's own ``DeferredInterrupt``."""

    def __init__(self, local):
        self.local, self.requested = local, False


class DataParallel:
    """One model trained (``fit``) or evaluated (``evaluate``) on the ranks of ``comm``, an mpi4py
    intracommunicator. ``Sequential.fit`` and ``evaluate`` build it when given ``comm``."""

    def __init__(self, comm, model):
        MPI = _mpi()
        if not isinstance(comm, MPI.Intracomm):
            raise ConfigError(f"comm must be an mpi4py communicator such as MPI.COMM_WORLD, got {comm!r}")
        self.MPI, self.comm, self.model = MPI, comm, model
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.stats = np.zeros(3)  # a step's loss, accuracy hits and Ctrl-C requests, summed over the ranks
        self.agreed = False

    # ---- the collective sequences, guarded -------------------------------------------------------

    def fit(self, *args, **kwargs):
        """``model._fit`` on every rank; errors as the module docstring says."""
        return self._guarded(self.model._fit, *args, parallel=self, **kwargs)

    def evaluate(self, x, y, sample_weight=None) -> dict:
        """``model.evaluate`` on every rank, each evaluating its share of the samples."""
        return self._guarded(self.model._evaluate_data, x, y, parallel=self, sample_weight=sample_weight)

    def _guarded(self, run, *args, **kwargs):
        try:
            return run(*args, **kwargs)
        except (DistributedError, DivergenceError, TrainingInterrupted):
            raise  # decided together: every rank raises it at the same point
        except BaseException as e:
            if not self.agreed:  # failed before the opening agreement, where the other ranks wait
                self.agree(error=e)
            self.abort(e)

    def agree(self, error: str | None = None, **settings) -> None:
        """The opening agreement (see ``agree``), once per sequence."""
        self.agreed = True
        agree(self.comm, error, **settings)

    def abort(self, error: BaseException) -> None:
        """Print ``error`` as one line and end every rank: other ranks may be waiting in a collective."""
        print(f"fastnet: error on rank {self.rank} of {self.size}, stopping all ranks: {_one_line(error)}",
              file=sys.stderr, flush=True)
        self.comm.Abort(2)

    def fingerprint(self) -> int:
        return zlib.crc32(self.model.params.view(np.uint8))

    def described(self) -> dict:
        """What every rank's model must share besides its weights: layers (with their dropout and
        penalties, and a convolution's or pooling's geometry), one sample's input shape (an image a first
        Conv2D took from the data), loss, dtype, backend (the update's bits depend on it) and seed (shuffle
        and dropout)."""
        model = self.model
        return {"input_shape": model.input_shape, "layers": [repr(layer) for layer in model.layers],
                "loss": repr(model.loss), "dtype": str(model.dtype), "backend": model.backend, "seed": model.seed}

    def start_evaluation(self, x, y, divisor: float, sample_weight=None) -> None:
        self.agree(**self.described(), **_data("", x, y, divisor), weights=self.fingerprint(),
                   sample_weight=self.weights_digest(sample_weight))

    @staticmethod
    def weights_digest(sample_weight) -> str:
        """What must agree of the per-sample weights: their digest, or "none"."""
        return "none" if sample_weight is None else digest(sample_weight)

    def start(self, report, callbacks: list, data: tuple, validation: tuple | None = None, **settings):
        """Check that every rank runs the same training: the same model (``described``, weights, optimizer
        and its state, generators), the same data (x, y, divisor) and validation data, the same
        ``settings``. Rank 0 alone reports and writes checkpoints."""
        model = self.model
        val = {} if validation is None else _data("validation ", *validation)
        self.agree(**self.described(), **_data("training ", *data), **val, weights=self.fingerprint(),
                   epochs_done=len(model.history), optimizer=model.optimizer.config(), steps=model.optimizer.steps,
                   optimizer_state=[digest(state) for state in model.optimizer.state.values()],
                   shuffle_state=str(model.shuffle_rng.bit_generator.state), **settings)
        if self.rank == 0:
            return report, callbacks
        return Progress(enabled=False), [cb for cb in callbacks if not isinstance(cb, Checkpoint)]

    # ---- sharding and sums ------------------------------------------------------------------------

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This rank's contiguous share of ``idx`` (see ``share``)."""
        return idx[shard_slice(len(idx), self.rank, self.size)]

    def sum(self, buf: np.ndarray) -> None:
        """Replace ``buf`` by its sum over the ranks, bit-identical on every rank (``sum_over_ranks``)."""
        sum_over_ranks(self.comm, buf)

    def _summed(self, loss: float, hits: int, requested: bool = False) -> tuple[float, int, bool]:
        """A step's loss, hits and Ctrl-C request, each summed over the ranks in one small collective."""
        self.stats[:] = loss, hits, requested
        self.sum(self.stats)
        return float(self.stats[0]), int(self.stats[1]), bool(self.stats[2])

    def sum_scores(self, loss: float, hits: int) -> tuple[float, int]:
        return self._summed(loss, hits)[:2]

    # ---- the step -----------------------------------------------------------------------------------

    def shared(self, interrupt) -> SharedInterrupt:
        return SharedInterrupt(interrupt)

    def agree_interrupt(self, interrupt: SharedInterrupt) -> None:
        """At an epoch's end: a Ctrl-C any rank got since the last step stops every rank here, and so does
        ``model.stop_training`` set on any rank (by a callback that runs on some ranks only, say), so that
        no rank goes on to a step the others will not join."""
        _, stops, requested = self._summed(0.0, int(self.model.stop_training), interrupt.local.requested)
        interrupt.requested = requested or interrupt.requested
        self.model.stop_training = stops > 0

    def start_epoch(self, epoch: int, first_batch: int, batch_size: int) -> None:
        """Point this rank's dropout masks for ``epoch`` at a stream of its own.

        Rank 0 draws from the model's own generator, so one rank is exactly a plain ``fit`` and the
        checkpoints it writes continue as any other. Rank r > 0 draws from a stream derived from the seed,
        the epoch and r; an epoch resumed at ``first_batch`` skips the draws of the batches before it.
        """
        widths = sum(op.width for op in self.model._program.ops if op.kind == "dropout")
        if self.rank == 0 or not widths:
            return
        model = self.model
        seq = np.random.SeedSequence(model.seed, spawn_key=(DROPOUT_KEY, epoch, self.rank))
        rng = model.dropout_rng
        rng.bit_generator.state = type(rng.bit_generator)(seq).state
        skip = first_batch * len(self.shard(np.arange(batch_size))) * widths
        while skip:  # float32 draws, as the masks are drawn; in pieces, to bound the memory
            n = min(skip, 1 << 22)
            rng.random(n, dtype=np.float32)
            skip -= n

    def loss_and_grad(self, x, y, idx, divisor, interrupt: SharedInterrupt, weights=None) -> tuple[float, int]:
        """The global batch ``idx``: its gradient in ``model.grads`` on every rank; its loss and hits.
        With sample ``weights``, each rank's sum(weight · loss) / n_shard, scaled by n_shard / len(idx),
        sums to the global batch's sum(weight · loss) / len(idx)."""
        model, rows = self.model, self.shard(idx)
        if len(rows):
            loss, hits = model._loss_and_grad(x, y, rows, divisor, len(rows) / len(idx), self.rank == 0, weights)
        else:  # a batch smaller than the rank count leaves this rank nothing: it adds zeros
            model.grads[...] = 0
            loss, hits = 0.0, 0
        self.sum(model.grads)
        loss, hits, stop = self._summed(loss, hits, interrupt.local.requested)
        interrupt.requested = stop or interrupt.requested
        return loss, hits


def _data(label: str, x, y, divisor: float) -> dict:
    """The settings that say which data a rank holds: its samples' and targets' digests and the scale."""
    scale = "" if divisor == 1 else f", divided by {divisor:.6g}"
    return {f"{label}x": digest(x) + scale, f"{label}y": digest(y)}


def _one_line(error: BaseException) -> str:
    if isinstance(error, SystemExit):  # argparse's --help or --version: printed, then stopped
        return "it was given --help or --version, which print and stop; give them to every rank or to none"
    text = " ".join(str(error).split())
    if isinstance(error, OSError) and error.strerror:
        text = f"{error.strerror}: {error.filename or ''}".rstrip(": ")
    return text or type(error).__name__
