"""Training speed under load: fastnet's thread settings with 0, 1 and 2 competing busy processes.

The target (docs/performance.md): with 1 and with 2 CPU-bound processes competing, the default settings
take at most 1.25x fastnet's own 1-thread time under the same load, at B=32 and B=128 (784-128-10
sigmoid, SGD, float32). This script measures that, and the same for other settings: OpenMP spin counts
and wait policies, and numba's other threading layers.

Each configuration (a thread count and environment variables, since numba's threading layer and
OpenMP's wait policy are fixed when a process starts them) lives in its own worker process, started
once and sent one timing job at a time. For each busy count, N processes spinning in pure Python
are started, then every configuration trains the same epoch at each batch size, in interleaved
rounds (the order rotates each round). Medians are reported, with each configuration's ratio to
the 1-thread configuration under the same load, and the load average. The runs and the table are
written as JSON to --out (default: bench-load.json in fastnet.bench.output.default_output_dir()).

    python bench/bench_load.py --quick                      # 12,000 samples, 3 rounds
    python bench/bench_load.py --samples 60000 --rounds 5   # full epochs
    python bench/bench_load.py --configs "1 thread,default,passive" --busy 0,2 --out load.json
    python bench/bench_load.py --configs "1 thread,default,default @ ../old" --busy 0,1   # this code vs ../old

Run it from the repository root (it imports fastnet from there). Not a pytest-benchmark suite:
it runs as a script only (pytest finds nothing to collect in it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The environment each configuration adds its own settings to: this process's as it started, before it
# imports fastnet, so that nothing fastnet's import may put in os.environ overrides a configuration.
BASE_ENV = dict(os.environ)
ROOT = Path(__file__).resolve().parent.parent

# name -> (numba threads, or None for fastnet's default; environment variables to set)
CONFIGS = {
    "1 thread": (1, {}),
    "default": (None, {}),  # fastnet's default, whatever the code under test sets
    # libgomp's own default when no wait policy is set: spin 300,000 times
    "spin 300k (libgomp default)": (None, {"GOMP_SPINCOUNT": "300000"}),
    "passive": (None, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "spin 30k": (None, {"GOMP_SPINCOUNT": "30000"}),
    "spin 10k": (None, {"GOMP_SPINCOUNT": "10000"}),
    "spin 3k": (None, {"GOMP_SPINCOUNT": "3000"}),
    "spin 1k": (None, {"GOMP_SPINCOUNT": "1000"}),
    "active": (None, {"OMP_WAIT_POLICY": "ACTIVE"}),
    "workqueue": (None, {"NUMBA_THREADING_LAYER": "workqueue"}),
    "tbb": (None, {"NUMBA_THREADING_LAYER": "tbb"}),
}
QUICK = ["1 thread", "default", "spin 300k (libgomp default)"]
SPIN = "while True: pass"


def config(name: str) -> tuple[int | None, dict, str]:
    """(threads, environment, the fastnet checkout to run) of a configuration: one of CONFIGS, run on the
    code beside this script, or "NAME @ DIR", the same run on the checkout in DIR (to compare two versions)."""
    base, _, root = name.partition(" @ ")
    return (*CONFIGS[base], str(Path(root).resolve()) if root else str(ROOT))


def worker() -> None:
    """A configuration's process: reads a batch size per line on stdin, answers one JSON line per job."""
    spec = json.loads(sys.argv[2])
    sys.path.insert(0, spec["root"])
    import numba

    import fastnet as fn
    from fastnet.bench.contenders import Case, epoch_data, fastnet_model

    if spec["threads"]:
        fn.set_num_threads(spec["threads"])
    x, y = epoch_data(spec["samples"])
    models = {}
    for line in sys.stdin:
        batch = int(line)
        if batch not in models:  # build once per batch size and warm up (compile or load the kernels)
            models[batch] = fastnet_model(Case((128,), "sigmoid", batch), "numba")
            models[batch].fit(x[:4 * batch], y[:4 * batch], epochs=1, batch_size=batch,
                              optimizer=fn.SGD(lr=0.01), progress=False)
        start = time.perf_counter()
        models[batch].fit(x, y, epochs=1, batch_size=batch, progress=False)
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "load": os.getloadavg()[0], "threads": fn.get_num_threads(),
                          "layer": numba.threading_layer()}), flush=True)


class Worker:
    def __init__(self, name: str, samples: int, tbb_lib: str | None):
        self.name = name
        self.threads, self.env, self.root = config(name)
        full = dict(BASE_ENV, **self.env)
        if self.env.get("NUMBA_THREADING_LAYER") == "tbb" and tbb_lib:
            full["LD_LIBRARY_PATH"] = ":".join(filter(None, [tbb_lib, os.environ.get("LD_LIBRARY_PATH")]))
        spec = json.dumps({"threads": self.threads, "samples": samples, "root": self.root})
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", spec], env=full, cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, batch: int) -> dict:
        self.proc.stdin.write(f"{batch}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name!r} died (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def start_busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def measure(configs: list[str], busy_counts: list[int], batches: list[int], rounds: int, samples: int,
            tbb_lib: str | None, say=print) -> dict:
    workers = [Worker(name, samples, tbb_lib) for name in configs]
    runs = []
    try:
        for w in workers:  # warm up every batch size once before timing anything
            for batch in batches:
                info = w.run(batch)
            say(f"# {w.name}: layer {info['layer']}, {info['threads']} threads, env {w.env}")
        for busy in busy_counts:
            spinners = start_busy(busy)
            try:
                time.sleep(2)  # let the spinners get going
                load_start = os.getloadavg()
                for r in range(rounds):
                    order = workers[r % len(workers):] + workers[:r % len(workers)]
                    for w in order:
                        for batch in batches:
                            res = w.run(batch)
                            runs.append({"config": w.name, "busy": busy, "batch": batch, "round": r, **res})
                            say(f"busy {busy} round {r} B={batch:<4} {w.name:<28} {res['seconds']:7.3f} s  "
                                f"load {res['load']:.2f}")
                load_end = os.getloadavg()
                say(f"# busy {busy}: load average {load_start} -> {load_end}")
            finally:
                stop(spinners)
    finally:
        for w in workers:
            w.close()
    return {"configs": {w.name: {"threads": w.threads, "env": w.env, "root": w.root} for w in workers},
            "samples": samples, "rounds": rounds, "cpus": os.cpu_count(), "runs": runs,
            "table": summarise(runs, configs, busy_counts, batches)}


def summarise(runs: list[dict], configs: list[str], busy_counts: list[int], batches: list[int]) -> list[dict]:
    """Median seconds per (config, busy, batch), and the ratio to '1 thread' under the same load."""
    rows = []
    for busy in busy_counts:
        for batch in batches:
            def med(name):
                times = [r["seconds"] for r in runs if (r["config"], r["busy"], r["batch"]) == (name, busy, batch)]
                return statistics.median(times) if times else None
            base = med("1 thread")
            loads = [r["load"] for r in runs if (r["busy"], r["batch"]) == (busy, batch)]
            for name in configs:
                m = med(name)
                rows.append({"config": name, "busy": busy, "batch": batch, "median_s": m,
                             "ratio_to_1_thread": m / base if base and m else None,
                             "load_min": min(loads), "load_max": max(loads)})
    return rows


def print_table(table: list[dict], say=print) -> None:
    say(f"{'busy':>4} {'B':>4}  {'config':<28} {'median s':>9} {'÷ 1 thread':>10}  load avg")
    for row in table:
        ratio = f"{row['ratio_to_1_thread']:.2f}" if row["ratio_to_1_thread"] else "-"
        say(f"{row['busy']:>4} {row['batch']:>4}  {row['config']:<28} {row['median_s']:9.3f} {ratio:>10}  "
            f"{row['load_min']:.2f}-{row['load_max']:.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12,000 samples, 3 rounds, 3 configurations")
    parser.add_argument("--configs", help=f"comma-separated, from: {', '.join(CONFIGS)}; "
                                          "'NAME @ DIR' runs NAME on the fastnet checkout in DIR")
    parser.add_argument("--busy", default="0,1,2", help="busy-process counts (default 0,1,2)")
    parser.add_argument("--batch", default="32,128", help="batch sizes (default 32,128)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--tbb-lib", help="folder holding libtbb.so.12, for the tbb configuration")
    parser.add_argument("--out", metavar="FILE", help="write the runs and the table here, as JSON (default: "
                        "bench-load.json in fastnet.bench.output.default_output_dir(), e.g. ~/.local/share/fastnet/bench)")
    args = parser.parse_args(argv)
    configs = args.configs.split(",") if args.configs else (QUICK if args.quick else list(CONFIGS))
    unknown = [c for c in configs if c.partition(" @ ")[0] not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}, each optionally "
                     "followed by ' @ DIR' to run a fastnet checkout in DIR")
    missing = [root for c in configs if " @ " in c and not Path(root := config(c)[2], "fastnet").is_dir()]
    if missing:
        parser.error(f"no fastnet checkout in {missing}")
    if "1 thread" not in configs:
        configs.insert(0, "1 thread")  # every ratio is to it
    # fastnet is imported here, not at the top: each worker imports the fastnet of its own checkout
    from fastnet.bench.output import output_path, write_json
    from fastnet.errors import ConfigError

    try:
        out = output_path(args.out, "bench-load.json")
    except ConfigError as e:
        parser.error(str(e))
    results = measure(configs, [int(b) for b in args.busy.split(",")], [int(b) for b in args.batch.split(",")],
                      args.rounds or (3 if args.quick else 5), args.samples or (12_000 if args.quick else 60_000),
                      args.tbb_lib)
    print_table(results["table"])
    write_json(out, results, indent=1)
    print(f"\nresults written to {out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker()
    else:
        main()
