"""``fastnet bench``: the command's work, behind its flags in ``fastnet/cli.py``."""
from __future__ import annotations

import fastnet as fn
from fastnet.bench import mpi
from fastnet.bench.harness import CASES, LENET_CASES, QUICK_CASES, format_table, run, write_outputs
from fastnet.bench.output import output_path
from fastnet.bench.versus_sklearn import SKLEARN_DATASETS, format_sklearn_table, run_sklearn
from fastnet.errors import ConfigError
from fastnet.plot import has_matplotlib


def run_bench(args, say) -> int:
    """``fastnet bench`` with its parsed flags; returns the exit status."""
    if args.comm is not None and not args.mpi:  # every rank would start its own contenders on the same cores
        raise ConfigError("fastnet bench starts its contenders as processes of its own: run it without mpiexec, "
                          "or add --mpi to time data-parallel training over these ranks")
    if args.sklearn:
        return bench_sklearn(args, say)
    if args.mpi:
        given = {"--rounds": args.rounds, "--out": args.out, "--threads": args.threads}
        return mpi.main([str(a) for flag, value in given.items() if value for a in (flag, value)])
    args.rounds = args.rounds or 5
    if args.threads:
        fn.set_num_threads(args.threads)  # checked here, so a bad count is a one-line error
    prefix = output_path(args.out, "fastnet-bench", ".json")
    cases = LENET_CASES if args.lenet else QUICK_CASES if args.quick else CASES
    # the compile-time and memory lines measure the MLP cases: not part of a LeNet-only run
    extras = not (args.quick or args.lenet)
    say(f"fastnet bench: {len(cases)} cases, {args.rounds} interleaved epochs of {args.samples:,} samples each "
        f"per contender" + (f", {args.busy} busy processes" if args.busy else ""))
    results = run(cases, rounds=args.rounds, samples=args.samples, busy=args.busy, numba_threads=args.threads,
                  with_torch=not args.no_torch, with_jax=not args.no_jax, extras=extras,
                  vector_width=not args.quick, say=say)
    say("")
    say(format_table(results))
    write_outputs(results, f"{prefix}.json", f"{prefix}.png")
    say(f"\nresults written to {prefix}.json" + (f" and {prefix}.png" if has_matplotlib() else ""))
    return 0


def bench_sklearn(args, say) -> int:
    """``fastnet bench --sklearn``: fastnet's MLPClassifier against scikit-learn's."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError("fastnet bench --sklearn needs scikit-learn: pip install 'scikit-learn>=1.6'") from None
    rounds, prefix = args.rounds or 3, output_path(args.out, "fastnet-bench-sklearn", ".json")
    say(f"fastnet bench --sklearn: {rounds} interleaved rounds on {', '.join(SKLEARN_DATASETS)}"
        + (" (quick: small data, 5 epochs)" if args.quick else ""))
    results = run_sklearn(rounds=rounds, quick=args.quick, threads=args.threads, say=say)
    say("")
    say(format_sklearn_table(results))
    write_outputs(results, f"{prefix}.json")
    say(f"\nresults written to {prefix}.json")
    return 0
