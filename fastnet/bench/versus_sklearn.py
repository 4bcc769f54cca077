"""fastnet's MLPClassifier against scikit-learn's: ``fastnet bench --sklearn``.

Each contender (a library on a thread count) lives in its own worker process (``fastnet.bench.workers``),
started once and sent one fit at a time, so rounds interleave without any contender sharing a process,
a BLAS or numba's pool. The worker times ``fit`` alone: the data is made, split and scaled before, and a
one-epoch warm-up fit (numba's compile or cache load) is timed apart.
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastnet as fn
from fastnet.bench.machine import machine_record
from fastnet.bench.workers import Worker, native_blas_env, rotation, worker_pool

SKLEARN_DATASETS = ("digits", "breast_cancer", "classification-100k")
SKLEARN_EPOCHS = {"digits": 200, "breast_cancer": 200, "classification-100k": 10}
SKLEARN_SETTINGS = {"hidden_layer_sizes": (100,), "activation": "relu", "solver": "adam", "alpha": 1e-4,
                    "batch_size": 200, "learning_rate_init": 1e-3, "random_state": 0}


def sklearn_data(name: str, quick: bool = False):
    """(X_train, X_test, y_train, y_test) in float32: a stratified 75/25 split, scaled by a StandardScaler
    fitted on the training part (fastnet never rescales). ``quick`` shrinks the generated set to 2,000 rows."""
    from sklearn.datasets import load_breast_cancer, load_digits, make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if name == "digits":
        x, y = load_digits(return_X_y=True)
    elif name == "breast_cancer":
        x, y = load_breast_cancer(return_X_y=True)
    elif name == "classification-100k":
        x, y = make_classification(2_000 if quick else 100_000, 50, n_informative=20, n_classes=5, random_state=0)
    else:
        raise ValueError(f"unknown dataset {name!r}: use one of {', '.join(SKLEARN_DATASETS)}")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train).astype(np.float32), scaler.transform(x_test).astype(np.float32), y_train, y_test


def sklearn_estimator(library: str, threads: int, epochs: int):
    """The classifier under test: the same settings for both, a fixed number of epochs (no early stop)."""
    fixed = {**SKLEARN_SETTINGS, "max_iter": epochs, "tol": 0.0, "n_iter_no_change": epochs}
    if library == "sklearn":
        from sklearn.neural_network import MLPClassifier
        return MLPClassifier(**fixed)
    from fastnet.sklearn import MLPClassifier
    return MLPClassifier(**fixed, n_threads=threads)


def sklearn_job(spec: dict):
    """Worker job (see ``fastnet.bench.workers``): spec {library, threads, quick, epochs}. Makes every data set,
    times a one-epoch warm-up fit on each, then answers {"dataset": name} with a timed fit:
    {"seconds", "accuracy", "n_iter"}."""
    import hashlib
    import warnings

    warnings.simplefilter("ignore")  # max_iter is reached on purpose: ConvergenceWarning says nothing here
    threads = spec["threads"]
    threadpool_limits(limits=threads, user_api="blas")
    fn.set_num_threads(min(threads, fn.get_num_threads()))
    data = {name: sklearn_data(name, spec["quick"]) for name in SKLEARN_DATASETS}
    warmup = {}
    for name, (x_train, _, y_train, _) in data.items():
        start = time.perf_counter()
        sklearn_estimator(spec["library"], threads, 1).fit(x_train, y_train)
        warmup[name] = time.perf_counter() - start
    digest = hashlib.sha256(b"".join(a.tobytes() for parts in data.values() for a in parts)).hexdigest()[:16]

    def fit(request: dict) -> dict:
        x_train, x_test, y_train, y_test = data[request["dataset"]]
        est = sklearn_estimator(spec["library"], threads, spec["epochs"][request["dataset"]])
        start = time.perf_counter()
        est.fit(x_train, y_train)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "accuracy": float(est.score(x_test, y_test)), "n_iter": int(est.n_iter_)}

    return {"warmup_s": warmup, "data_sha256": digest, "numba_threads": fn.get_num_threads()}, fit


def sklearn_worker(library: str, threads: int, quick: bool, epochs: dict) -> Worker:
    """One contender's process. scikit-learn's MLP runs on NumPy's BLAS: its process runs without the
    variables that force BLAS kernels, so OpenBLAS picks its native ones."""
    name = f"{'fastnet' if library == 'fastnet' else 'scikit-learn'} ({threads} thread{'s' * (threads > 1)})"
    env = native_blas_env(os.environ)[0] if library == "sklearn" else None
    return Worker(name, "fastnet.bench.versus_sklearn:sklearn_job",
                  {"library": library, "threads": threads, "quick": quick, "epochs": epochs}, env)


def run_sklearn(rounds: int = 3, quick: bool = False, threads: int | None = None, say=print) -> dict:
    """fastnet's MLPClassifier against scikit-learn's, each on 1 thread and on all cores, interleaved;
    returns a JSON-able dict with one row per dataset and contender (median seconds) and the ratios."""
    import numba

    threads = threads or numba.config.NUMBA_NUM_THREADS
    epochs = {name: 5 if quick else SKLEARN_EPOCHS[name] for name in SKLEARN_DATASETS}
    results = {"machine": {**machine_record(vector_width=False),
                           "forced_blas_env": native_blas_env(os.environ)[1]}, "rounds": rounds, "quick": quick, "epochs": epochs,
               "settings": {**SKLEARN_SETTINGS, "tol": 0.0, "n_iter_no_change": "max_iter", "dtype": "float32",
                            "split": "stratified 75/25, random_state=0, StandardScaler on the training part"}}
    with worker_pool() as workers:
        for library in ("sklearn", "fastnet"):
            for n in sorted({1, threads}):
                workers.append(sklearn_worker(library, n, quick, epochs))  # in turn: the first compiles for the next
                blas = workers[-1].info["blas"][:1]
                say(f"started {workers[-1].name}" + "".join(f": NumPy's BLAS {b['internal_api']} {b['version']}, "
                                                         f"{b['architecture']} kernels" for b in blas))
        if len({w.info["data_sha256"] for w in workers}) != 1:
            raise RuntimeError("the contenders' processes made different data: the comparison would be unfair")
        fits = {(w.name, d): [] for w in workers for d in SKLEARN_DATASETS}
        for r in range(rounds):
            for dataset in SKLEARN_DATASETS:
                for w in rotation(workers, r):
                    fits[w.name, dataset].append(w.request(dataset=dataset))
            say(f"round {r + 1}/{rounds} done")
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["contenders"] = {w.name: {"library": w.spec["library"], "threads": w.spec["threads"], **w.info}
                             for w in workers}
    results["datasets"] = [summarise_sklearn(d, fits, workers, threads) for d in SKLEARN_DATASETS]
    return results


def summarise_sklearn(dataset: str, fits: dict, workers: list, threads: int) -> dict:
    """Median seconds and accuracy per contender, and scikit-learn ÷ fastnet on 1 thread and on all cores
    (against scikit-learn's faster thread count, as a user would pick it)."""
    rows = {}
    for w in workers:
        runs = fits[w.name, dataset]
        rows[w.name] = {"library": w.spec["library"], "threads": w.spec["threads"],
                        "median_s": statistics.median(r["seconds"] for r in runs), "times": [r["seconds"] for r in runs],
                        "accuracy": statistics.median(r["accuracy"] for r in runs), "n_iter": runs[0]["n_iter"]}
    by = {(r["library"], r["threads"]): r for r in rows.values()}
    sk_best = min(by["sklearn", 1]["median_s"], by["sklearn", threads]["median_s"])
    gap = 100 * abs(by["fastnet", 1]["accuracy"] - by["sklearn", 1]["accuracy"])
    return {"dataset": dataset, "rows": rows, "accuracy_gap_points": gap, "equal_accuracy": gap <= 1.0,
            "speedup_1_thread": by["sklearn", 1]["median_s"] / by["fastnet", 1]["median_s"],
            "speedup_all_cores": sk_best / by["fastnet", threads]["median_s"]}


def _target(value: float, target: float, equal_accuracy: bool) -> str:
    met = value >= target and equal_accuracy
    return f"{value:.1f}× (≥ {target:g}×) {'✓' if met else '✗'}"


def format_sklearn_table(results: dict) -> str:
    """The machine line, then one row per dataset: seconds, accuracy, speed-ups against the targets
    (a target counts as met only at equal accuracy, within 1 point)."""
    m = results["machine"]
    blas = next(c["blas"] for c in results["contenders"].values() if c["library"] == "sklearn")
    blas = blas[0] if blas else {"internal_api": "no BLAS found", "version": "", "architecture": "?"}
    forced = m["forced_blas_env"]
    lines = [f"{m['cpu']} (LLVM target {m['llvm_cpu']}), {m['cores']} cores, load average "
             f"{m['load_average'][0]:.2f} at the start, {m['load_average_end'][0]:.2f} at the end; "
             f"scikit-learn {m['scikit-learn']} on {blas['internal_api']} {blas['version']} "
             f"({blas['architecture']} kernels{', ' + ' and '.join(forced) + ' unset for it' if forced else ''}); "
             f"median of {results['rounds']} interleaved fits each, float32, fit time only", "",
             "| data | epochs | scikit-learn 1 thr. | scikit-learn all | fastnet 1 thr. | fastnet all "
             "| accuracy sklearn / fastnet | speed-up 1 thr. | speed-up all cores |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for d in results["datasets"]:
        by = {}
        for r in d["rows"].values():  # 1 thread first, then the most threads
            by.setdefault((r["library"], "1" if r["threads"] == 1 else "all"), r)
            by[r["library"], "all"] = r
        ok = d["equal_accuracy"]
        every = _target(d["speedup_all_cores"], 10, ok) if d["dataset"] == "classification-100k" \
            else f"{d['speedup_all_cores']:.1f}×"
        lines.append(f"| {d['dataset']} | {results['epochs'][d['dataset']]} | {by['sklearn', '1']['median_s']:.3f} s | "
                     f"{by['sklearn', 'all']['median_s']:.3f} s | {by['fastnet', '1']['median_s']:.3f} s | "
                     f"{by['fastnet', 'all']['median_s']:.3f} s | {by['sklearn', '1']['accuracy']:.3f} / "
                     f"{by['fastnet', '1']['accuracy']:.3f} | {_target(d['speedup_1_thread'], 5, ok)} | {every} |")
    return "\n".join(lines)
