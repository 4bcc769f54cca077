"""Which parallel kernel calls of a training step run on all threads, and which on one: measured.

numba's threads spin for about 0.1 ms after a parallel kernel, then sleep (fastnet sets
GOMP_SPINCOUNT=10000, so that they soon hold no core another process needs; see threads.py),
and a parallel kernel must wake them if they sleep. What a wake costs depends on the machine
and its load: on the 2-vCPU cloud VM fastnet is benchmarked on, 90-160 µs when idle (``python
bench/region_cost.py``), as long as the forward of a 784x128 layer on 32 samples takes on one
thread; on other machines a few µs. No fixed size threshold fits them all, so a ``StepTuner``
measures, for each batch size:

1. ``SAMPLES`` steps with every call on one thread, timing each call: its time T;
2. ``SAMPLES`` steps with every call on all n threads, timing each: its time P. A call is
   chosen to run on all threads if P is under ``MARGIN`` of T. (P - T/n is what waking the
   threads cost it: little where the previous call left them spinning, a whole wake where
   they had gone to sleep.)
3. if that chose any call, ``SAMPLES`` whole steps with that choice: it stands only if a whole
   step (from one ``step()`` to the next) is faster than in phase 1, else every call runs on one
   thread. Threads that spin after a call (``GOMP_SPINCOUNT``) take a core that the rest of the
   step, or another process, needed: a cost no call's own time shows, which the step's does;
   and a call that ran after a split one in phase 2 may find the threads asleep now.

Every ``RETUNE_EVERY`` steps it measures again, as the load changes; and sooner while a split
stands, as soon as the median of ``SAMPLES`` steps is ``WATCH`` times what phase 3 measured:
another process has taken a core, and threads that wait for it (or spin) can make a step
several times slower than one thread would.

Calls are timed in place with ``time.perf_counter``, and medians are compared, since a shared
machine's timings have long tails. Results do not depend on the choice: every kernel gives the
same bits on any number of threads, so switching mid-training changes only the time.
"""
from __future__ import annotations

import statistics
import time

import numba
from numba.np.ufunc import parallel

SAMPLES = 9
"""Steps timed in each phase of a measurement."""

RETUNE_EVERY = 1000
"""Steps between measurements (about two per 60,000-sample epoch at B=32)."""

WATCH = 1.25
"""A split that stands is measured again once a median step takes this many times phase 3's."""

MARGIN = 0.8
"""A call runs on all threads only if that takes under this fraction of its one-thread time:
one thread also leaves the other cores to other work, and the estimate is rough (on the 2-vCPU VM,
one call's time on 2 threads ranged over 2x within 9 steps)."""


class Site:
    """One kernel call of the step (``fn``), on all threads or, as ``StepTuner`` says, on one."""

    __slots__ = ("fn", "parallel", "timed", "times")

    def __init__(self, fn):
        self.fn = fn
        self.parallel = True  # before any measurement: as the kernel itself decides
        self.timed = False  # record this call's times in ``times``
        self.times: list[float] = []

    def __call__(self, *args):
        if self.timed:
            start = time.perf_counter()
            self._run(args)
            self.times.append(time.perf_counter() - start)
        else:
            self._run(args)

    def _run(self, args) -> None:
        if self.parallel:
            self.fn(*args)
        else:  # numba's own C setters, as numba.set_num_threads calls them after its checks (2.7 µs
            # a call there, 0.7 here; a jitted setter is faster still, but it cannot be cached and
            # takes 0.9 s to compile). They exist once numba's threads have started (StepTuner.step).
            threads = parallel._get_num_threads()
            parallel._set_num_threads(1)
            try:
                self.fn(*args)
            finally:
                parallel._set_num_threads(threads)

    def median(self) -> float:
        """The median of ``times``; 0 if the call was not made (``loss_and_grad`` without ``update``)."""
        return statistics.median(self.times) if self.times else 0.0


class StepTuner:
    """Chooses, for one batch size's step, which ``sites`` run on all threads. Call ``step()``
    as each step begins: it counts steps and moves the measurement on."""

    def __init__(self):
        self.sites: list[Site] = []
        self.wake_seconds: float | None = None  # what waking the threads cost the slowest call, as last measured
        self._left = 0  # steps before the next measurement
        self._phase = 0  # 0: not measuring; 1: all on one thread; 2: all on all threads; 3: the choice
        self._steps = 0  # steps into the phase
        self._step_start = 0.0  # when the last step began
        self._step_times: list[float] = []  # the phase's whole steps, or (not measuring) the latest ones
        self._serial_step = 0.0  # a whole step's median time in phase 1
        self._split_step = 0.0  # the same in phase 3, if that split stands; else 0: nothing to watch

    def site(self, fn) -> Site:
        """``fn`` as one of the step's calls, run as this tuner chooses."""
        self.sites.append(Site(fn))
        return self.sites[-1]

    def step(self) -> None:
        now = time.perf_counter()
        if self._phase or self._split_step:
            self._step_times.append(now - self._step_start)
        self._step_start = now
        if self._left:
            self._left -= 1
            if not self._split_slowed():
                return
            self._left = 0  # the load changed: measure again now
        if self._phase == 0:
            self._threads = numba.get_num_threads()  # this also starts numba's threads, if no kernel has
            if self._threads == 1:  # nothing to choose
                self._choose(lambda site: True)
                return
            self._begin(1, lambda site: False)
        elif self._steps + 1 < SAMPLES:
            self._steps += 1
        elif self._phase == 1:
            self._serial = {site: site.median() for site in self.sites}
            self._serial_step = statistics.median(self._step_times)
            self._begin(2, lambda site: True)
        elif self._phase == 2:
            slowest = max(self.sites, key=self._serial.get)
            self.wake_seconds = max(slowest.median() - self._serial[slowest] / self._threads, 0.0)
            chosen = {site for site in self.sites if site.median() < MARGIN * self._serial[site]}
            if chosen:
                self._begin(3, lambda site: site in chosen, timed=False)
            else:
                self._choose(lambda site: False)
        else:  # the choice, timed as whole steps: it stands if they beat phase 1's
            split_step = statistics.median(self._step_times)
            if split_step < self._serial_step:
                self._choose(lambda site: site.parallel)
                self._split_step = split_step
            else:
                self._choose(lambda site: False)

    def _split_slowed(self) -> bool:
        """Whether the latest ``SAMPLES`` steps of a standing split took ``WATCH`` times as long as in phase 3."""
        if len(self._step_times) < SAMPLES:
            return False
        recent, self._step_times = statistics.median(self._step_times), []
        return recent > WATCH * self._split_step

    def _begin(self, phase: int, on_all, timed: bool = True) -> None:
        """Start timing a phase: on all threads where ``on_all(site)``, each call timed if ``timed``."""
        self._phase, self._steps, self._step_times = phase, 0, []
        for site in self.sites:
            site.parallel, site.timed, site.times = on_all(site), timed, []

    def _choose(self, on_all) -> None:
        for site in self.sites:
            site.parallel, site.timed, site.times = on_all(site), False, []
        self._phase, self._left, self._step_times, self._split_step = 0, RETUNE_EVERY, [], 0.0
