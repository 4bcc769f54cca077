"""Which parallel kernel calls of a training step run on all threads, and which on one: measured.

numba's threads spin for about 0.1 ms after a parallel kernel, then sleep (fastnet sets
GOMP_SPINCOUNT=10000, so that they soon hold no core another process needs; see threads.py),
and a parallel kernel must wake them if they sleep. What a wake costs depends on the machine
and its load: on the 2-vCPU cloud VM fastnet is benchmarked on, 90-160 µs when idle (``python
bench/region_cost.py``), as long as the forward of a 784x128 layer on 32 samples takes on one
thread; on other machines a few µs. No fixed size threshold fits them all, so a ``StepTuner``
measures, for each batch size:

1. steps with every call on one thread (time T for each call) alternate with steps with every
   call on all n threads (time P). A call is chosen to run on all threads if P is under ``MARGIN``
   of T. (P - T/n is what waking the threads cost it: little where the previous call left them
   spinning, a whole wake where they had gone to sleep.)
2. if that chose any call, steps with that choice alternate with steps on one thread: the choice
   stands only if its whole steps (from one ``step()`` to the next) take under ``STEP_MARGIN`` of
   those, else every call runs on one thread. Threads that spin after a call (``GOMP_SPINCOUNT``) take a core that the
   rest of the step, or another process, needed: a cost no call's own time shows, which the
   step's does.

The two kinds of step alternate in runs of ``RUN``, the first of each run untimed (it finds the
threads as the other kind left them), until each kind has ``SAMPLES`` timed steps. On a shared
machine the speed drifts over a few milliseconds (on the 2-vCPU VM, the median of 9 steps on one
thread moved between 0.82 and 1.10 ms within one epoch at B=128); alternating puts each drift on
both kinds alike. Timing one kind after the other let a drift decide: in an ad hoc trace, a split
that took 0.55x of the call's time as a rule measured 0.87x on a slow patch, and the step ran on one
thread for the next 1000 steps, twice as slow.

Every ``RETUNE_EVERY`` steps it measures again, as the load changes; and sooner while a split
stands, as soon as the median of ``SAMPLES`` steps is ``WATCH`` times what step 2 measured:
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
"""Timed steps of each kind in each comparison."""

RUN = 4
"""Steps of one kind in a row while comparing; the first of each run is not timed."""

PHASE_STEPS = 2 * RUN * -(-SAMPLES // (RUN - 1))
"""Steps in each of a measurement's two comparisons (24): runs of both kinds, SAMPLES timed of each."""

RETUNE_EVERY = 1000
"""Steps between measurements (about two per 60,000-sample epoch at B=32)."""

WATCH = 1.25
"""A split that stands is measured again once a median step takes this many times its measured one."""

MARGIN = 0.8
"""A call runs on all threads only if that takes under this fraction of its one-thread time:
one thread also leaves the other cores to other work, and the estimate is rough (on the 2-vCPU VM,
one call's time on 2 threads ranged over 2x within 9 steps)."""

STEP_MARGIN = 0.9
"""The choice stands only if its whole steps take under this fraction of those on one thread. A
call too small for its kernel to split runs a little faster "on all threads", as no thread count is
switched around it, and can be chosen by that alone; a choice that gains so little is not worth
watching (next to one busy process at B=32, noise then set off a measurement every few hundred
steps, each costing about 30 ms of split steps that waited for the busy core)."""

CALLS, STEPS = 1, 2  # the two comparisons of a measurement: each call's time, then whole steps'


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

class StepTuner:
    """Chooses, for one batch size's step, which ``sites`` run on all threads. Call ``step()``
    as each step begins: it counts steps and moves the measurement on."""

    def __init__(self):
        self.sites: list[Site] = []
        self.wake_seconds: float | None = None  # what waking the threads cost the slowest call, as last measured
        self._left = 0  # steps before the next measurement
        self._phase = 0  # 0: not measuring; CALLS or STEPS: comparing
        self._steps = 0  # steps into the comparison
        self._step_start = 0.0  # when the last step began
        self._timed = False  # whether the step under way is timed
        self._split = False  # the kind of step under way: False on one thread, True split (all, or the choice)
        self._step_times: tuple[list, list] = ([], [])  # the comparison's timed steps of each kind
        self._call_times: dict[Site, tuple[list, list]] = {}  # CALLS: each site's times of each kind
        self._chosen: set[Site] = set()  # the calls CALLS chose to split
        self._recent: list[float] = []  # while a split stands: its latest steps, watched
        self._split_step = 0.0  # the median split step STEPS measured, if that split stands; else 0

    def site(self, fn) -> Site:
        """``fn`` as one of the step's calls, run as this tuner chooses."""
        self.sites.append(Site(fn))
        return self.sites[-1]

    def step(self) -> None:
        now = time.perf_counter()
        elapsed, self._step_start = now - self._step_start, now
        if self._phase:
            if self._timed:
                self._step_times[self._split].append(elapsed)
            self._steps += 1
            if self._steps < PHASE_STEPS:
                self._set_up_step()
            elif self._phase == CALLS:
                self._chose_calls()
            else:
                self._chose_steps()
            return
        if self._split_step:
            self._recent.append(elapsed)
        if self._left:
            self._left -= 1
            if not self._split_slowed():
                return
        self._threads = numba.get_num_threads()  # this also starts numba's threads, if no kernel has
        if self._threads == 1:  # nothing to choose
            self._choose(set(self.sites))
            return
        self._call_times = {site: ([], []) for site in self.sites}
        self._begin(CALLS)

    def _chose_calls(self) -> None:
        """The end of CALLS: the calls that run faster split, to be checked as whole steps."""
        serial = {site: _median(times[False]) for site, times in self._call_times.items()}
        split = {site: _median(times[True]) for site, times in self._call_times.items()}
        slowest = max(self.sites, key=serial.get)
        self.wake_seconds = max(split[slowest] - serial[slowest] / self._threads, 0.0)
        self._chosen = {site for site in self.sites if split[site] < MARGIN * serial[site]}
        if self._chosen:
            self._begin(STEPS)
        else:
            self._choose(set())

    def _chose_steps(self) -> None:
        """The end of STEPS: the choice stands if its whole steps beat those on one thread by STEP_MARGIN."""
        serial_step, split_step = (_median(times) for times in self._step_times)
        if split_step < STEP_MARGIN * serial_step:
            self._choose(self._chosen)
            self._split_step = split_step
        else:
            self._choose(set())

    def _split_slowed(self) -> bool:
        """Whether the latest ``SAMPLES`` steps of a standing split took ``WATCH`` times as long as measured."""
        if len(self._recent) < SAMPLES:
            return False
        recent, self._recent = statistics.median(self._recent), []
        return recent > WATCH * self._split_step

    def _begin(self, phase: int) -> None:
        self._phase, self._steps, self._step_times = phase, 0, ([], [])
        self._set_up_step()

    def _set_up_step(self) -> None:
        """The comparison's next step: its kind alternates in runs of RUN, whose first is not timed."""
        self._split, self._timed = (self._steps // RUN) % 2 == 1, self._steps % RUN != 0
        for site in self.sites:
            if self._phase == CALLS:
                site.parallel, site.timed = self._split, self._timed
                site.times = self._call_times[site][self._split]
            else:
                site.parallel, site.timed = self._split and site in self._chosen, False

    def _choose(self, on_all: set) -> None:
        for site in self.sites:
            site.parallel, site.timed, site.times = site in on_all, False, []
        self._timed = False
        self._phase, self._left, self._recent, self._split_step = 0, RETUNE_EVERY, [], 0.0


def _median(times: list) -> float:
    """The median of ``times``; 0 if there are none (a call ``loss_and_grad`` without ``update`` never makes)."""
    return statistics.median(times) if times else 0.0
