"""The step tuner: which calls of a training step run on all threads is measured, and changes only the time.

The decision logic runs on a fake clock and fake kernels whose time depends on how many
threads they are given; the real thing is checked for what must never change: the bits of
the weights, and the thread count the user set.
"""
import numpy as np
import pytest

import fastnet as fn
from fastnet import _thread_tuning as tuning


class FakeMachine:
    """A clock, numba's per-thread count, and kernels that take t on one thread, t/n + wake on n."""

    def __init__(self, monkeypatch, threads: int, wake: float, spin_tax: float = 0.0, spin: float = 0.0):
        self.now, self.threads, self.top, self.wake = 0.0, threads, threads, wake
        self.spin_tax = spin_tax  # added to a step that split a call: what spinning threads cost the rest of it
        self.spin = spin  # for this long after a split call the threads still spin: the next one wakes them for free
        self.split = False  # whether the step so far split a call
        self.split_ended = -1.0
        monkeypatch.setattr(tuning.time, "perf_counter", lambda: self.now)
        monkeypatch.setattr(tuning.numba, "get_num_threads", lambda: self.threads)
        monkeypatch.setattr(tuning.parallel, "_get_num_threads", lambda: self.threads, raising=False)
        monkeypatch.setattr(tuning.parallel, "_set_num_threads", self._set, raising=False)

    def _set(self, n):
        self.threads = n

    def kernel(self, seconds: float):
        def run(*args):
            if self.threads == 1:
                self.now += seconds
                return
            spinning = self.now - self.split_ended < self.spin
            self.now += seconds / self.threads + (0.0 if spinning else self.wake)
            self.split, self.split_ended = True, self.now
        return run

    def end_step(self):
        self.now += self.spin_tax if self.split else 0.0
        self.split = False


MEASURE = 3 * tuning.SAMPLES + 1  # steps until a measurement's choice is final


def run_steps(tuner, sites, n, machine=None):
    for _ in range(n):
        tuner.step()
        for site in sites:
            site()
        if machine:
            machine.end_step()


def choices(sites):
    return [site.parallel for site in sites]


@pytest.mark.parametrize("wake, expect", [
    (2e-6, [True, True, True, False]),  # cheap wakes: all but the 4 µs call are worth splitting
    (150e-6, [True, False, False, False]),  # a VM's idle wake: only the 1 ms call
    (5e-3, [False, False, False, False]),  # a loaded machine: nothing
])
def test_calls_split_only_where_waking_the_threads_pays(monkeypatch, wake, expect):
    machine = FakeMachine(monkeypatch, threads=2, wake=wake)
    tuner = tuning.StepTuner()
    sites = [tuner.site(machine.kernel(t)) for t in (1e-3, 200e-6, 50e-6, 4e-6)]
    run_steps(tuner, sites, MEASURE)
    assert choices(sites) == expect
    assert tuner.wake_seconds == pytest.approx(wake)
    assert machine.threads == 2


def test_a_call_split_after_another_is_timed_as_it_will_run_with_the_threads_still_spinning(monkeypatch):
    # waking sleeping threads costs 150 µs, more than the 100 µs call saves; right after the 1 ms call
    # they are still spinning, and splitting it saves 50 µs
    machine = FakeMachine(monkeypatch, threads=2, wake=150e-6, spin=50e-6)
    tuner = tuning.StepTuner()
    sites = [tuner.site(machine.kernel(t)) for t in (1e-3, 100e-6)]
    run_steps(tuner, sites, MEASURE, machine)
    assert choices(sites) == [True, True]


def test_a_split_that_slows_the_whole_step_is_dropped(monkeypatch):
    # each call is faster split, but threads that spin afterwards slow the rest of the step more
    machine = FakeMachine(monkeypatch, threads=2, wake=2e-6, spin_tax=2e-3)
    tuner = tuning.StepTuner()
    sites = [tuner.site(machine.kernel(t)) for t in (1e-3, 200e-6)]
    run_steps(tuner, sites, 2 * tuning.SAMPLES + 1, machine)
    assert choices(sites) == [True, True]  # the calls' own times chose this; the whole steps are timed next
    run_steps(tuner, sites, tuning.SAMPLES, machine)
    assert choices(sites) == [False, False]
    run_steps(tuner, sites, 5, machine)
    assert choices(sites) == [False, False] and not any(site.timed for site in sites)


def test_a_split_that_speeds_the_whole_step_stands(monkeypatch):
    machine = FakeMachine(monkeypatch, threads=2, wake=2e-6, spin_tax=100e-6)
    tuner = tuning.StepTuner()
    sites = [tuner.site(machine.kernel(t)) for t in (1e-3, 200e-6)]
    run_steps(tuner, sites, MEASURE + 5, machine)
    assert choices(sites) == [True, True] and not any(site.timed for site in sites)


def test_it_measures_again_every_so_many_steps(monkeypatch):
    machine = FakeMachine(monkeypatch, threads=2, wake=5e-3)  # a loaded machine: nothing is split
    tuner = tuning.StepTuner()
    sites = [tuner.site(machine.kernel(t)) for t in (1e-3, 100e-6)]
    run_steps(tuner, sites, MEASURE)
    assert choices(sites) == [False, False]
    machine.wake = 2e-6  # the other processes are gone
    run_steps(tuner, sites, tuning.RETUNE_EVERY)
    assert choices(sites) == [False, False]  # not measured yet: nothing split, nothing watched
    run_steps(tuner, sites, MEASURE)
    assert choices(sites) == [True, True]


def test_a_split_that_slows_down_is_measured_again_at_once(monkeypatch):
    machine = FakeMachine(monkeypatch, threads=2, wake=2e-6)
    tuner = tuning.StepTuner()
    sites = [tuner.site(machine.kernel(t)) for t in (1e-3, 100e-6)]
    run_steps(tuner, sites, MEASURE + 3 * tuning.SAMPLES)
    assert choices(sites) == [True, True]  # steady steps: the split stands
    machine.wake = 5e-3  # another process now holds a core
    run_steps(tuner, sites, tuning.SAMPLES + MEASURE)
    assert choices(sites) == [False, False] and not any(site.timed for site in sites)


def test_with_one_thread_nothing_is_timed_or_switched(monkeypatch):
    machine = FakeMachine(monkeypatch, threads=1, wake=0.0)
    monkeypatch.setattr(tuning.parallel, "_set_num_threads", lambda n: pytest.fail("switched threads"))
    tuner = tuning.StepTuner()
    sites = [tuner.site(machine.kernel(1e-3))]
    run_steps(tuner, sites, 3)
    assert choices(sites) == [True] and not sites[0].timed


def test_a_call_the_steps_did_not_make_is_left_alone(monkeypatch):
    # loss_and_grad without update: the update site is never called while measuring
    machine = FakeMachine(monkeypatch, threads=2, wake=2e-6)
    tuner = tuning.StepTuner()
    used, unused = tuner.site(machine.kernel(1e-3)), tuner.site(machine.kernel(1e-3))
    run_steps(tuner, [used], MEASURE)
    assert choices([used, unused]) == [True, False]


def test_a_call_on_one_thread_gives_the_threads_back_even_if_it_raises(monkeypatch):
    machine = FakeMachine(monkeypatch, threads=2, wake=0.0)

    def broken():
        assert machine.threads == 1
        raise KeyboardInterrupt

    site = tuning.StepTuner().site(broken)
    site.parallel = False
    with pytest.raises(KeyboardInterrupt):
        site()
    assert machine.threads == 2


def two_threads():
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here (one core, or NUMBA_NUM_THREADS=1): nothing to switch")
    fn.set_num_threads(2)


def mnist_like(n=512, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n)


def model(backend="numba"):
    return fn.Sequential(fn.Dense(784, 200), fn.ReLU(), fn.Dropout(0.2), fn.Dense(200, 10),
                         loss=fn.SoftmaxCrossEntropy(), backend=backend, seed=3)


def test_switching_threads_on_every_step_gives_the_same_weights_as_one_thread(monkeypatch):
    two_threads()
    monkeypatch.setattr(tuning, "SAMPLES", 1)
    monkeypatch.setattr(tuning, "RETUNE_EVERY", 1)  # measure all the time: the choices keep changing
    x, y = mnist_like()
    tuned = model()
    tuned.fit(x, y, epochs=2, batch_size=64, optimizer=fn.SGD(lr=0.05, momentum=0.9), progress=False)
    assert fn.get_num_threads() == 2, "the tuner must give the user's thread count back"
    steps = tuned._plan.steps(64)
    assert steps.tuner.wake_seconds is not None, "the tuner never finished a measurement"
    fn.set_num_threads(1)
    try:
        plain = model()
        plain.fit(x, y, epochs=2, batch_size=64, optimizer=fn.SGD(lr=0.05, momentum=0.9), progress=False)
    finally:
        fn.set_num_threads(2)
    assert np.array_equal(tuned.params, plain.params)


def test_the_numpy_backend_has_nothing_to_tune():
    x, y = mnist_like(64)
    m = model("numpy")
    m.train_step(x[:32], y[:32])
    assert m._plan.steps(32).tuner is None
