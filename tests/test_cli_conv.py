"""The command line's convolutional networks (issue 24): ``--model lenet``, stacks written with --conv and
--pool, their one-line errors, what --json and --resume record of them, and evaluate, predict and export
on the model they save."""
import json
import subprocess
import sys

import numpy as np
import pytest

import fastnet as fn
from fastnet import cli, cli_data
from test_cli import run
from test_idx import idx_bytes
from test_mpi import ENV, MISSING, MPIEXEC, ROOT
from test_trust_data_loss import STEMS, assert_refused, fastnet


def flags(*argv):
    """The train flags parsed, the defaults filled in as ``fastnet train`` fills them."""
    args = cli.build_parser().parse_args(["train", *argv])
    cli.fill_defaults(args)
    return args


def write_idx_folder(folder, train_x, train_y, test_x, test_y):
    """An MNIST-style folder of the four raw IDX files: images (n, rows, cols) uint8, labels (n,)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(STEMS, (train_x, train_y, test_x, test_y)):
        (folder / stem).write_bytes(idx_bytes(array))
    return folder


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A small MNIST-style folder cut from the bundled sample: 1,200 train and 300 test digits."""
    train, test = fn.datasets.load("mnist-sample", pixels=True)
    images = [d.x.reshape(-1, 28, 28) for d in (train, test)]
    return write_idx_folder(tmp_path_factory.mktemp("digits"), images[0][:1200], train.y[:1200],
                            images[1][:300], test.y[:300])


# ---- the network the flags build ------------------------------------------------------------------------

def test_conv_and_pool_flags_build_their_layers_in_the_order_given():
    args = flags("--conv", "8:3", "--pool", "2", "--conv", "4:3:1:same", "--pool", "3:2", "--hidden", "20",
                 "--activation", "tanh")
    model = cli.build_model(args, 784, 10)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "Tanh", "MaxPool2D", "Conv2D", "Tanh", "MaxPool2D", "Flatten", "Dense", "Tanh", "Dense"]
    first, second = model.weighted[:2]
    assert first.weight.shape == (8, 1, 3, 3) and (first.stride, first.padding) == (1, 0)
    assert second.weight.shape == (4, 8, 3, 3) and second.padding == 1  # "same" for a 3x3 kernel
    assert model.layers[5].size == 3 and model.layers[5].stride == 2
    assert model.input_shape == (1, 28, 28)
    assert model.dense[0].n_in == 4 * 6 * 6  # 28 -> conv 26 -> pool 13 -> same 13 -> pool 3:2 6
    assert cli.conv_flags(model) == args.conv == ["conv 8:3:1:0", "pool 2:2", "conv 4:3:1:1", "pool 3:2"]
    assert model.weighted[0].init == "xavier"  # tanh: xavier, as for the Dense layers


def test_model_lenet_builds_the_lenet5_class_network():
    model = cli.build_model(flags("--model", "lenet"), 784, 10)
    assert [layer.weight.shape for layer in model.weighted] == [(6, 1, 5, 5), (16, 6, 5, 5), (120, 400), (84, 120),
                                                                 (10, 84)]
    assert model.n_params == 61_706
    assert [type(layer).__name__ for layer in model.layers].count("ReLU") == 4
    assert not any(isinstance(layer, fn.Dropout) for layer in model.layers)
    assert {layer.init for layer in model.weighted[:-1]} == {"he"}


def test_flags_given_override_the_presets_defaults():
    args = flags("--model", "lenet", "--hidden", "50", "--epochs", "3", "--dropout", "0.2")
    assert args.conv == cli.PRESETS["lenet"]["conv"] and args.hidden == [50]
    assert (args.epochs, args.dropout) == (3, 0.2)
    assert args.lr == cli.PRESETS["lenet"]["lr"]
    model = cli.build_model(args, 784, 10)
    assert [layer.n_out for layer in model.dense] == [50, 10] and model.dense[0].n_in == 400


def test_conv_or_pool_without_model_take_lenets_defaults_and_no_flags_the_mlps():
    conv = flags("--pool", "2", "--conv", "8:3")
    assert conv.model == "lenet" and conv.conv == ["pool 2:2", "conv 8:3:1:0"]
    assert (conv.hidden, conv.epochs, conv.dropout) == tuple(cli.PRESETS["lenet"][k] for k in
                                                             ("hidden", "epochs", "dropout"))
    plain = flags()
    assert plain.model == "mlp" and plain.conv == [] and plain.hidden == cli.DEFAULTS["hidden"]
    model = cli.build_model(conv, 784, 10)  # a pool first: the conv takes one channel, 14x14
    assert model.input_shape == (1, 28, 28) and model.dense[0].n_in == 8 * 12 * 12


def test_shift_adds_copies_moved_by_each_distance_in_four_directions():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (5, 6, 6)).astype(np.uint8)
    data = fn.datasets.Dataset(images.reshape(5, 36), np.arange(5), [str(i) for i in range(5)], "dots", "train")
    out = cli_data.shifted(data, 2)
    assert out.x.shape == (9 * 5, 36) and out.x.dtype == np.uint8
    np.testing.assert_array_equal(out.y, np.tile(np.arange(5), 9))
    got = {tuple(out.x[5 * k:5 * k + 5].ravel()) for k in range(9)}
    expected = set()
    for dy, dx in [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (2, 0), (-2, 0), (0, 2), (0, -2)]:
        moved = np.zeros_like(images)  # pixel (r, c) comes from (r - dy, c - dx), or is blank off the image
        for r in range(6):
            for c in range(6):
                if 0 <= r - dy < 6 and 0 <= c - dx < 6:
                    moved[:, r, c] = images[:, r - dy, c - dx]
        expected.add(tuple(moved.ravel()))
    assert got == expected
    np.testing.assert_array_equal(out.x[:5], data.x)  # the originals first


def test_shift_auto_shifts_small_training_sets_only(digits):
    small = flags("--model", "lenet", "--data", str(digits))
    data = cli.training_data(small)
    assert small.shift == cli_data.AUTO_SHIFT and len(data.train) == (1 + 4 * cli_data.AUTO_SHIFT) * 1080
    assert len(data.val) == 120  # the validation set is not shifted
    plain = flags("--data", str(digits))
    assert plain.shift == 0 and len(cli.training_data(plain).train) == 1080


# ---- one-line errors, exit status 2 ---------------------------------------------------------------------

@pytest.mark.parametrize("flag, spec, needle", [
    ("--conv", "32", "MAPS:KERNEL"),
    ("--conv", "a:3", "MAPS:KERNEL"),
    ("--conv", "8:3:1:2:0", "MAPS:KERNEL"),
    ("--conv", "8:-3", "MAPS:KERNEL"),
    ("--conv", "0:3", "out_channels"),
    ("--conv", "8:3:0", "stride"),
    ("--conv", "8:5:1:5", "padding"),
    ("--conv", "8:4:1:same", "odd kernel"),
    ("--conv", "8:3:1:x", "PADDING"),
    ("--conv", "8:３", "MAPS:KERNEL"),  # a digit, but not one int() should take from a flag
    ("--pool", "0", "size"),
    ("--pool", "2:2:2", "SIZE[:STRIDE]"),
    ("--pool", "99", "at most"),
    ("--pool", "", "SIZE[:STRIDE]"),
    ("--shift", "15", "0 to 14"),
    ("--shift", "-1", "0 to 14"),
    ("--shift", "some", "auto or a whole number"),
])
def test_a_bad_spec_is_one_line_naming_its_flag(capsys, flag, spec, needle):
    assert_refused(fastnet(capsys, "train", flag, spec), f"argument {flag}", needle)


def test_model_mlp_with_conv_flags_is_refused(capsys):
    assert_refused(fastnet(capsys, "train", "--model", "mlp", "--pool", "2"), "--pool 2:2", "--model mlp")


def test_a_stack_the_images_cannot_take_names_the_flags(capsys, digits):
    assert_refused(fastnet(capsys, "train", "--data", digits, "--conv", "4:5", "--pool", "4", "--conv", "4:7"),
                   "--conv 4:5:1:0 --pool 4:4 --conv 4:7:1:0 on 1x28x28 images", "does not fit")


def test_conv_models_refuse_tables(capsys, tmp_path):
    table = tmp_path / "table.csv"
    table.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    for argv in (["--model", "lenet"], ["--conv", "4:3"]):
        assert_refused(fastnet(capsys, "train", "--data", table, *argv), "trains on images", str(table))
    assert_refused(fastnet(capsys, "train", "--data", table, "--shift", "1"), "--shift 1 moves images", str(table))


def test_images_that_are_not_square_are_refused(capsys, tmp_path):
    rng = np.random.default_rng(0)
    folder = write_idx_folder(tmp_path / "wide", rng.integers(0, 255, (200, 20, 30)), np.arange(200) % 10,
                              rng.integers(0, 255, (10, 20, 30)), np.arange(10))
    assert_refused(fastnet(capsys, "train", "--data", folder, "--conv", "4:3"), "square", "600 pixels")


# ---- a LeNet trained for an epoch: what --json records, and the commands that read its checkpoint -------

@pytest.fixture(scope="module")
def lenet(tmp_path_factory, digits):
    """``fastnet train --model lenet --epochs 1`` on the small folder, saved, with --json."""
    path = tmp_path_factory.mktemp("lenet") / "lenet.safetensors"
    done = run("train", "--model", "lenet", "--epochs", "1", "--data", str(digits), "--save", str(path), "--json")
    assert done.returncode == 0, done.stderr
    return path, done


def test_json_records_the_model_and_its_conv_flags(lenet):
    _, done = lenet
    config = json.loads(done.stdout)["config"]
    assert config["model"] == "lenet"
    assert config["conv"] == ["conv 6:5:1:2", "pool 2:2", "conv 16:5:1:0", "pool 2:2"]
    assert config["hidden"] == [120, 84] and config["dropout"] == 0.0
    assert config["shift"] == 2 and " 9,720 train / 120 validation / 300 test" in done.stderr
    assert "model: 1x28x28 conv 6:5:1:2 pool 2:2 conv 16:5:1:0 pool 2:2 400-120-84-10 ReLU, 61,706 parameters" \
        in done.stderr


def test_evaluate_scores_the_saved_lenet_as_training_did(lenet, digits):
    path, done = lenet
    evaluated = run("evaluate", str(path), "--data", str(digits), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["accuracy"] == json.loads(done.stdout)["test"]["accuracy"]
    assert report["accuracy"] > 0.5  # one epoch of 1,080 digits and their shifted copies: far above chance
    assert set(report["per_class"]) == {str(d) for d in range(10)}


@pytest.mark.parametrize("shape", [(784,), (1, 28, 28)], ids=["flat rows", "images"])
def test_predict_takes_pixels_as_flat_rows_or_images(lenet, tmp_path, shape):
    path, _ = lenet
    _, test = fn.datasets.load("mnist-sample", pixels=True)
    rows = tmp_path / "rows.npy"
    np.save(rows, test.x[:50].reshape(-1, *shape))  # uint8 pixels, as trained on: the model divides by 255 itself
    out = tmp_path / "labels.npy"
    done = run("predict", str(path), str(rows), "--out", str(out))
    assert done.returncode == 0, done.stderr
    model = fn.load(path)
    expected = model.predict(test.x[:50].reshape(-1, 1, 28, 28)).argmax(axis=1)
    np.testing.assert_array_equal(np.load(out), expected)


def test_export_writes_an_onnx_graph_that_predicts_as_the_model(lenet, tmp_path):
    path, _ = lenet
    out = tmp_path / "lenet.onnx"
    done = run("export", str(path), str(out))
    assert done.returncode == 0, done.stderr
    assert "1x28x28 conv 6:5:1:2" in done.stdout and out.stat().st_size > 0
    ort = pytest.importorskip("onnxruntime")
    model = fn.load(path)
    _, test = fn.datasets.load("mnist-sample", pixels=True)
    raw = test.x[:64].astype(np.float32)  # the graph takes raw pixels: the model's divide scaler is in it
    session = ort.InferenceSession(str(out))
    graph_input = session.get_inputs()[0]
    feed = raw.reshape(-1, 1, 28, 28) if len(graph_input.shape) == 4 else raw  # flat rows or images
    probs = session.run(None, {graph_input.name: feed})[0]
    expected = model.predict(raw)
    assert np.abs(probs - expected).max() <= 1e-5 * np.abs(expected).max()


# ---- --resume compares the conv flags as it compares --hidden --------------------------------------------

def test_resume_refuses_conv_flags_that_contradict_the_checkpoint(lenet, capsys):
    path, _ = lenet
    assert_refused(fastnet(capsys, "train", "--resume", path, "--conv", "8:3", "--save", path.with_name("x.st")),
                   "--conv 8:3:1:0 contradicts", "trained with --conv 6:5:1:2 --pool 2:2 --conv 16:5:1:0 --pool 2:2")


def test_resume_refuses_model_mlp_for_a_conv_checkpoint(lenet, capsys):
    path, _ = lenet
    assert_refused(fastnet(capsys, "train", "--resume", path, "--model", "mlp", "--save", path.with_name("x.st")),
                   "--model mlp contradicts", "convolutional network")


def test_resume_refuses_model_lenet_and_conv_flags_for_an_mlp_checkpoint(tmp_path, capsys):
    path = tmp_path / "mlp.safetensors"
    done = run("train", "--hidden", "8", "--epochs", "1", "--backend", "numpy", "--save", str(path), "-q")
    assert done.returncode == 0, done.stderr
    assert_refused(fastnet(capsys, "train", "--resume", path, "--model", "lenet"), "--model lenet contradicts",
                   "multilayer perceptron")
    assert_refused(fastnet(capsys, "train", "--resume", path, "--pool", "2"), "--pool 2:2 contradicts",
                   "trained with no --conv")


def test_resume_with_the_same_flags_trains_on(lenet, digits, tmp_path):
    path, _ = lenet
    again = tmp_path / "again.safetensors"
    done = run("train", "--resume", str(path), "--model", "lenet", "--conv", "6:5:1:same", "--pool", "2",
               "--conv", "16:5", "--pool", "2:2", "--epochs", "2", "--data", str(digits), "--save", str(again),
               "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [record["epoch"] for record in report["history"]] == [1, 2]
    assert report["config"]["conv"] == ["conv 6:5:1:2", "pool 2:2", "conv 16:5:1:0", "pool 2:2"]
    assert report["config"]["batch_size"] == cli.PRESETS["lenet"]["batch_size"]  # the preset of the model resumed


# ---- under mpiexec the ranks compare the conv flags --------------------------------------------------------

@pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
def test_ranks_that_disagree_on_the_conv_flags_stop_before_training(digits):
    common = [sys.executable, "-m", "fastnet", "train", "--data", str(digits), "--epochs", "1", "-q"]
    done = subprocess.run([MPIEXEC, "-n", "1", *common, "--conv", "4:3", ":", "-n", "1", *common, "--conv", "4:5"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "ranks disagree on --conv" in lines[0], done.stderr
    assert "conv 4:3:1:0" in lines[0] and "conv 4:5:1:0" in lines[0]
