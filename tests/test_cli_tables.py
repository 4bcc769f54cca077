"""The fastnet command on users' own tables: train, predict, evaluate and export on CSV, .npz and .npy files.

Run in process (fastnet.cli.main) with tiny nets on the NumPy backend, to stay fast; the data sets are
scikit-learn's, written to files by the tests.
"""
import csv
import io
import json

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_wine

import fastnet as fn
from fastnet.cli import main

TINY = ["--hidden", "8", "--epochs", "2", "--backend", "numpy", "--dropout", "0"]


def run(capsys, *argv):
    """(exit status, stdout, stderr) of ``fastnet *argv``."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(capsys, *argv, needles=()):
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fastnet {argv[0]}: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def write_csv(path, x, y, names, target="target"):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*names, target])
        writer.writerows([[*map(repr, row), label] for row, label in zip(x.tolist(), y.tolist())])
    return path


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """scikit-learn's wine as a CSV whose classes are text."""
    data = load_wine()
    labels = np.array(["barolo", "grignolino", "barbera"])[data.target]
    return write_csv(tmp_path_factory.mktemp("wine") / "wine.csv", data.data, labels, data.feature_names)


@pytest.fixture(scope="module")
def wine_model(wine):
    path = wine.parent / "wine.safetensors"
    assert main(["train", "--data", str(wine), *TINY, "--save", str(path), "-q"]) == 0
    return path


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    data = load_diabetes()
    return write_csv(tmp_path_factory.mktemp("diabetes") / "diabetes.csv", data.data, data.target,
                     data.feature_names, target="progression")


def test_csv_train_json_reports_the_test_set_once(capsys, wine):
    code, out, err = run(capsys, "train", "--data", wine, *TINY, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert {"val_loss", "val_accuracy"} <= set(report["history"][-1])
    assert 0 <= report["test"]["accuracy"] <= 1
    assert "data: wine 127 train / 15 validation / 36 test, 3 classes" in err  # 0.2 test, 0.1 of the rest val


def test_predict_gives_the_original_string_labels(capsys, wine, wine_model):
    code, out, err = run(capsys, "predict", wine_model, wine)
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["prediction"] and len(rows) == 179
    assert {r[0] for r in rows[1:]} <= {"barolo", "grignolino", "barbera"}
    model = fn.load(wine_model)  # the CLI's answer is the model's, on raw data
    x = np.loadtxt(wine, delimiter=",", skiprows=1, usecols=range(13), dtype=np.float32)
    assert [r[0] for r in rows[1:]] == model.predict_labels(x).tolist()


def test_predict_proba_names_a_column_per_label(capsys, wine, wine_model):
    code, out, err = run(capsys, "predict", wine_model, wine, "--proba")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["barbera", "barolo", "grignolino"]  # the sorted labels
    p = np.array(rows[1:], dtype=float)
    assert p.shape == (178, 3) and np.allclose(p.sum(axis=1), 1, atol=1e-5)


def test_predict_writes_npy_with_labels_and_probabilities(capsys, wine, wine_model):
    out = wine.parent / "labels.npy"
    code, _, err = run(capsys, "predict", wine_model, wine, "--out", out)
    assert code == 0, err
    labels = np.load(out, allow_pickle=False)
    assert labels.shape == (178,) and set(labels) <= {"barolo", "grignolino", "barbera"}
    code, _, err = run(capsys, "predict", wine_model, wine, "--out", out, "--proba")
    assert code == 0, err
    assert np.load(out, allow_pickle=False).shape == (178, 3)


def test_predict_in_chunks_writes_what_one_pass_does(capsys, wine, wine_model, monkeypatch):
    from fastnet import tables

    whole = run(capsys, "predict", wine_model, wine, "--proba")[1]
    reader = tables.iter_chunks
    monkeypatch.setattr(tables, "iter_chunks", lambda *a, **k: reader(*a, **{**k, "chunk_rows": 7}))
    assert run(capsys, "predict", wine_model, wine, "--proba")[1] == whole


def test_evaluate_and_export_a_csv_model(capsys, wine, wine_model):
    code, out, err = run(capsys, "evaluate", wine_model, "--data", wine, "--json")
    assert code == 0, err
    assert 0 <= json.loads(out)["accuracy"] <= 1
    pytest.importorskip("onnx")
    code, _, err = run(capsys, "export", wine_model, wine.parent / "wine.onnx")
    assert code == 0, err


def test_regression_reports_r2(capsys, diabetes):
    model = diabetes.parent / "diabetes.safetensors"
    code, out, err = run(capsys, "train", "--data", diabetes, "--task", "regression", *TINY,
                         "--save", model, "--json")
    assert code == 0, err
    test = json.loads(out)["test"]
    assert set(test) == {"loss", "r2"}
    code, out, err = run(capsys, "evaluate", model, "--data", diabetes, "--json")
    assert code == 0, err
    assert "r2" in json.loads(out)
    code, out, err = run(capsys, "predict", model, diabetes)
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["prediction"] and len(rows) == 443 and float(rows[1][0]) == float(rows[1][0])


def test_npz_and_npy_pair(capsys, tmp_path):
    data = load_wine()
    np.savez(tmp_path / "wine.npz", x=data.data, y=data.target)
    np.save(tmp_path / "x.npy", data.data)
    np.save(tmp_path / "y.npy", data.target)
    model = tmp_path / "m.safetensors"
    assert run(capsys, "train", "--data", tmp_path / "wine.npz", *TINY, "--save", model)[0] == 0
    code, out, err = run(capsys, "predict", model, tmp_path / "x.npy")
    assert code == 0, err
    assert {int(r) for r in out.split()[1:]} <= {0, 1, 2}
    code, _, err = run(capsys, "train", "--data", tmp_path / "x.npy", "--target", tmp_path / "y.npy", *TINY)
    assert code == 0, err


def test_parquet_trains_and_predicts_like_the_csv(capsys, tmp_path, wine):
    """The same table as Parquet (pyarrow, the parquet extra) gives the same model and predictions as the CSV."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(wine)
    frame.to_parquet(tmp_path / "wine.parquet")
    models = {kind: tmp_path / f"{kind}.safetensors" for kind in ("csv", "parquet")}
    outputs = {}
    for kind, data in (("csv", wine), ("parquet", tmp_path / "wine.parquet")):
        assert run(capsys, "train", "--data", data, *TINY, "--save", models[kind])[0] == 0
        code, outputs[kind], err = run(capsys, "predict", models[kind], data, "--proba")
        assert code == 0, err
    assert outputs["parquet"] == outputs["csv"] and "barolo" in outputs["csv"].splitlines()[0]


def test_validation_comes_from_the_training_part(capsys, tmp_path):
    """The test file's labels are the opposite of the rule the training file follows: the validation
    accuracy is high, the test accuracy (scored once, at the end) low."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    train = write_csv(tmp_path / "train.csv", x, (x[:, 0] > 0).astype(int), ["a", "b"])
    test = write_csv(tmp_path / "test.csv", x[:100], (x[:100, 0] <= 0).astype(int), ["a", "b"])
    code, out, err = run(capsys, "train", "--data", train, "--test", test, "--hidden", "8", "--epochs", "20",
                         "--backend", "numpy", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["history"][-1]["val_accuracy"] > 0.8 and report["test"]["accuracy"] < 0.2


def test_images_validation_is_carved_from_the_training_set(capsys, tmp_path):
    model = tmp_path / "digits.safetensors"
    code, out, err = run(capsys, "train", "--hidden", "8", "--epochs", "1", "--backend", "numpy", "--json",
                         "--save", model)
    assert code == 0, err
    assert "7,200 train / 800 validation / 2,000 test" in err
    report = json.loads(out)
    assert report["test"]["accuracy"] != report["history"][-1]["val_accuracy"]
    _, test = fn.datasets.load(pixels=True)  # raw uint8 pixels in a .npy: the model keeps the division by 255
    np.save(tmp_path / "pixels.npy", np.asarray(test.x[:50]))
    code, out, err = run(capsys, "predict", model, tmp_path / "pixels.npy")
    assert code == 0, err
    assert [int(v) for v in out.split()[1:]] == fn.load(model).predict(test.x[:50]).argmax(axis=1).tolist()


def test_width_and_columns_that_do_not_match_are_refused(capsys, tmp_path, wine, wine_model):
    data = load_wine()
    short = write_csv(tmp_path / "short.csv", data.data[:, 1:], data.target, data.feature_names[1:])
    one_line_error(capsys, "predict", wine_model, short, needles=("alcohol",))
    np.save(tmp_path / "narrow.npy", data.data[:, :5])
    one_line_error(capsys, "predict", wine_model, tmp_path / "narrow.npy", needles=("5 feature columns", "13"))
    extra = write_csv(tmp_path / "extra.csv", np.hstack([data.data, data.data[:, :1]]), data.target,
                      [*data.feature_names, "more"])
    one_line_error(capsys, "predict", wine_model, extra, needles=("'more'",))


@pytest.mark.parametrize("text, needles", [
    ("a,b,target\n1,2,x\n3,,y\n", ("row 3", "'b'", "missing")),
    ("a,b,target\n1,2,x\n3,oops,y\n", ("row 3", "'b'", "not a number")),
    ("a,b,target\n1,2,x\n3,4\n", ("row 3",)),
])
def test_bad_rows_are_one_line(capsys, tmp_path, text, needles):
    (tmp_path / "bad.csv").write_text(text)
    one_line_error(capsys, "train", "--data", tmp_path / "bad.csv", *TINY, needles=needles)


def test_bad_flags_and_paths_are_one_line(capsys, wine, wine_model, diabetes, tmp_path):
    one_line_error(capsys, "train", "--data", wine, "--target", "colour", *TINY, needles=("colour",))
    one_line_error(capsys, "train", "--data", wine, "--test-split", "1.5", needles=("--test-split",))
    one_line_error(capsys, "train", "--scale", "minmax", *TINY, needles=("--scale", "tables"))
    one_line_error(capsys, "train", "--data", wine, *TINY, "--save", wine, needles=("--data",))
    one_line_error(capsys, "train", "--data", wine, "--test", wine_model, "--save", wine_model, *TINY,
                   needles=("--test",))
    one_line_error(capsys, "predict", wine_model, wine, "--out", wine, needles=("DATA",))
    one_line_error(capsys, "predict", wine_model, wine, "--out", wine_model, needles=("MODEL",))
    one_line_error(capsys, "predict", wine_model, wine, "--out", tmp_path / "p.parquet", needles=(".npy",))
    one_line_error(capsys, "predict", wine_model, "", needles=("empty",))
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    one_line_error(capsys, "train", "--data", tmp_path / "x.npy", *TINY, needles=("--target y.npy",))


def test_columns_are_matched_by_name_in_evaluate_and_test(capsys, wine, wine_model, tmp_path):
    data = load_wine()
    order = np.arange(13)[::-1]  # the same columns, the other way round
    reversed_csv = write_csv(tmp_path / "reversed.csv", data.data[:, order],
                             np.array(["barolo", "grignolino", "barbera"])[data.target],
                             [data.feature_names[j] for j in order])
    same = [json.loads(run(capsys, "evaluate", wine_model, "--data", path, "--json")[1]) for path in (wine, reversed_csv)]
    assert same[0]["accuracy"] == same[1]["accuracy"] and same[0]["loss"] == pytest.approx(same[1]["loss"])
    code, out, err = run(capsys, "train", "--data", wine, "--test", reversed_csv, *TINY)
    assert code == 0, err
    short = write_csv(tmp_path / "short.csv", data.data[:, 1:], data.target, data.feature_names[1:])
    one_line_error(capsys, "evaluate", wine_model, "--data", short, needles=("13",))
    one_line_error(capsys, "train", "--data", wine, "--test", short, *TINY, needles=("--data",))


def test_a_resumed_run_splits_with_the_checkpoints_seed(capsys, wine, tmp_path):
    """--seed 3 chose the validation and test rows: resumed without the flag, the run trains on the same rows
    and ends bit for bit where the uninterrupted run does."""
    straight, resumed = tmp_path / "straight.safetensors", tmp_path / "resumed.safetensors"
    assert run(capsys, "train", "--data", wine, *TINY, "--seed", "3", "--save", straight)[0] == 0
    one_epoch = ["--hidden", "8", "--epochs", "1", "--backend", "numpy", "--dropout", "0"]
    assert run(capsys, "train", "--data", wine, *one_epoch, "--seed", "3", "--save", resumed)[0] == 0
    assert run(capsys, "train", "--resume", resumed, "--data", wine, "--epochs", "2")[0] == 0
    assert np.array_equal(fn.load(resumed).params, fn.load(straight).params)


def test_a_test_label_unseen_in_training_is_refused(capsys, wine, tmp_path):
    test = write_csv(tmp_path / "t.csv", np.ones((2, 13)), np.array(["nebbiolo", "barolo"]), load_wine().feature_names)
    one_line_error(capsys, "train", "--data", wine, "--test", test, *TINY, needles=("'nebbiolo'",))
