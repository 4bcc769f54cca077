"""fastnet.tables: a user's CSV, TSV, .npy, .npz and Parquet files read into what training needs,
in chunks, with every bad file a one-line error naming the row or the column."""
import os
import sys
import tracemalloc

import numpy as np
import pytest

from fastnet import tables
from fastnet.errors import ConfigError, DataError


def write(path, text: str):
    path.write_text(text)
    return path


def refused(path, *args, error=DataError, blamed=None, **kwargs) -> str:
    """The one-line message with which reading ``path`` is refused; it names the file (or ``blamed``)."""
    with pytest.raises(error) as caught:
        tables.read(path, *args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert str(blamed or path) in message
    return message


@pytest.fixture
def penguins(tmp_path):
    return write(tmp_path / "penguins.csv", "bill,flipper,species\n39.1,181,Adelie\n46.5,195,Gentoo\n"
                                            "38.8,190,Adelie\n50.0,220,Chinstrap\n")


# --- formats --------------------------------------------------------------------------------------

def test_csv_target_is_the_last_column_and_text_labels_are_kept(penguins):
    table = tables.read(penguins)
    assert table.columns == ["bill", "flipper"] and table.target == "species"
    assert table.x.dtype == np.float32
    assert np.array_equal(table.x, np.float32([[39.1, 181], [46.5, 195], [38.8, 190], [50.0, 220]]))
    assert table.task == "classification"
    assert table.classes.tolist() == ["Adelie", "Chinstrap", "Gentoo"]
    assert table.y.tolist() == [0, 2, 0, 1] and table.y.dtype == np.int64
    assert table.classes[table.y].tolist() == ["Adelie", "Gentoo", "Adelie", "Chinstrap"]
    assert len(table) == 4


def test_the_target_option_names_any_column(tmp_path):
    table = tables.read(write(tmp_path / "d.csv", "a,price,b\n1,2.5,3\n4,5.5,6\n"), target="price", dtype="float64")
    assert table.columns == ["a", "b"] and table.target == "price" and table.x.tolist() == [[1, 3], [4, 6]]
    assert table.task == "regression" and table.classes is None and table.y.tolist() == [2.5, 5.5]


def test_a_text_feature_column_is_refused_by_name(penguins):
    message = refused(penguins, target="bill")
    assert "row 2, column 'species'" in message and "'Adelie' is not a number" in message


@pytest.mark.parametrize("name, text", [
    ("data.tsv", "a\tb\ty\n1\t2\t0\n3\t4\t1\n"),
    ("data.txt", "a;b;y\n1;2;0\n3;4;1\n"),
    ("data.csv", "a;b;y\n1;2;0\n3;4;1\n"),  # Excel in a comma-decimal locale
    ("data.dat", "a|b|y\n1|2|0\n3|4|1\n"),
    ("data.csv", '\ufeff"a", "b" ,"y"\r\n1,2,0\r\n\r\n"3",4,1\r\n'),  # BOM, quotes, spaces, CRLF, a blank line
])
def test_delimiters_from_the_extension_or_the_header(tmp_path, name, text):
    table = tables.read(write(tmp_path / name, text), dtype="float64", task="classification")
    assert table.columns == ["a", "b"] and table.target == "y"
    assert table.x.tolist() == [[1, 2], [3, 4]] and table.y.tolist() == [0, 1]


def test_npy_pair(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    table = tables.read(tmp_path / "x.npy", target=str(tmp_path / "y.npy"), dtype="float64")
    assert np.array_equal(table.x, x) and table.columns == ["x0", "x1", "x2", "x3"]
    assert table.task == "classification" and np.array_equal(table.classes[table.y], y)


def test_npy_in_fortran_order_images_and_a_column_of_targets(tmp_path):
    x = np.arange(24, dtype=np.uint8).reshape(4, 2, 3)
    np.save(tmp_path / "images.npy", x)
    np.save(tmp_path / "xf.npy", np.asfortranarray(x.reshape(4, 6).astype(np.float64)))
    np.save(tmp_path / "y.npy", np.array([[0.5], [1.5], [2.5], [3.0]]))
    for name in ("images.npy", "xf.npy"):
        table = tables.read(tmp_path / name, target=str(tmp_path / "y.npy"), chunk_rows=3)
        assert np.array_equal(table.x, x.reshape(4, 6)) and table.x.dtype == np.float32
        assert table.task == "regression" and table.y.tolist() == [0.5, 1.5, 2.5, 3.0]


@pytest.mark.parametrize("features", ["x", "X"])
def test_npz_x_and_y(tmp_path, features):
    x, y = np.arange(12.0).reshape(6, 2), np.array(["no", "yes", "no", "yes", "no", "no"])
    np.savez_compressed(tmp_path / "d.npz", **{features: x, "y": y})
    table = tables.read(tmp_path / "d.npz", dtype="float64")
    assert np.array_equal(table.x, x) and table.target == "y"
    assert table.classes.tolist() == ["no", "yes"] and table.y.tolist() == [0, 1, 0, 1, 0, 0]


def test_npz_target_names_another_array(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), y=np.zeros(4), price=np.array([1.5, 2.5, 3.5, 4.5]))
    table = tables.read(tmp_path / "d.npz", target="price")
    assert table.task == "regression" and table.y.tolist() == [1.5, 2.5, 3.5, 4.5]


def test_column_names_reads_the_header_alone(tmp_path, penguins):
    assert tables.column_names(penguins) == ["bill", "flipper", "species"]
    np.save(tmp_path / "x.npy", np.ones((2, 3)))
    assert tables.column_names(tmp_path / "x.npy") == ["x0", "x1", "x2"]


# --- the task ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("y, task", [
    (np.array([0, 1, 2, 1, 0, 2]), "classification"),
    (np.array([0.0, 1.0, 1.0, 0.0]), "classification"),  # whole numbers stored as floats
    (np.array([True, False, True]), "classification"),
    (np.array(["cat", "dog"]), "classification"),
    (np.array([0.5, 1.5, 0.5, 1.5]), "regression"),
    (np.arange(6), "regression"),  # every value once: a measurement, not classes
    (np.arange(2 * (tables.MAX_CLASSES + 1)) // 2, "regression"),  # too many distinct values
    (np.arange(2 * tables.MAX_CLASSES) // 2, "classification"),
])
def test_infer_task(y, task):
    assert tables.infer_task(y) == task


def test_whole_numbers_from_text_are_integer_classes(tmp_path):
    table = tables.read(write(tmp_path / "d.csv", "a,y\n1,3\n2,1.0\n3,3\n4,1\n"))
    assert table.task == "classification" and table.classes.dtype == np.int64
    assert table.classes.tolist() == [1, 3] and table.y.tolist() == [1, 0, 1, 0]


def test_task_overrides_the_inference(tmp_path):
    path = write(tmp_path / "d.csv", "a,y\n1,0\n2,1\n3,1\n4,0\n")
    assert tables.read(path).task == "classification"
    table = tables.read(path, task="regression")
    assert table.task == "regression" and table.y.dtype == np.float32 and table.y.tolist() == [0, 1, 1, 0]
    assert tables.read(write(tmp_path / "e.csv", "a,y\n1,0\n2,1\n"), task="classification").classes.tolist() \
        == [0, 1]


def test_fractional_targets_are_no_classes(tmp_path):
    message = refused(write(tmp_path / "d.csv", "a,y\n1,0.5\n2,1\n"), task="classification")
    assert "target column 'y'" in message and "0.5" in message and "task='regression'" in message


def test_text_targets_are_no_regression(penguins):
    message = refused(penguins, task="regression")
    assert "row 2, target column 'species'" in message and "'Adelie' is not a number" in message


def test_text_labels_after_numbers_are_read_as_text(tmp_path):
    """The first chunks look numeric: the reader starts again and keeps every label as text."""
    path = write(tmp_path / "d.csv", "a,y\n1,1\n2,1\n3,2\n4,2\n5,cat\n6,cat\n")
    table = tables.read(path, chunk_rows=2)
    assert table.classes.tolist() == ["1", "2", "cat"] and table.y.tolist() == [0, 0, 1, 1, 2, 2]
    assert table.x.ravel().tolist() == [1, 2, 3, 4, 5, 6]


# --- chunks -----------------------------------------------------------------------------------------

def mixed_table(tmp_path):
    """A CSV whose chunks take both ways through the reader: plain rows (NumPy's parser) and quoted
    ones (the csv module's), with values that round differently to float32."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3)) * 10.0 ** rng.integers(-8, 8, (40, 3))
    lines = ["a,b,c,label"]
    for i, row in enumerate(x):
        cells = [repr(float(v)) for v in row]
        if i % 9 == 4:
            cells[1] = f'"{cells[1]}"'
        label = ["setosa", "versicolor", "virginica", '"virginica"', '"say ""hi"""', ' "setosa"'][i % 6]
        lines.append(",".join(cells + [label]))
        if i % 13 == 0:
            lines.append("")
    return write(tmp_path / "mixed.csv", "\n".join(lines) + "\n"), x


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunked_reading_equals_whole_reading(tmp_path, dtype):
    path, x = mixed_table(tmp_path)
    whole = tables.read(path, dtype=dtype)
    assert np.array_equal(whole.x, x.astype(dtype)) and whole.x.dtype == dtype
    assert whole.classes.tolist() == ['say "hi"', "setosa", "versicolor", "virginica"]
    assert whole.classes[whole.y].tolist() == (["setosa", "versicolor", "virginica", "virginica", 'say "hi"',
                                                "setosa"] * 7)[:40]
    for rows in (1, 2, 5, 7, 39, 1000):
        part = tables.read(path, dtype=dtype, chunk_rows=rows)
        assert np.array_equal(part.x, whole.x) and np.array_equal(part.y, whole.y)
        assert np.array_equal(part.classes, whole.classes)
    chunks = list(tables.iter_chunks(path, columns=["c", "a"], dtype=dtype, chunk_rows=7))
    assert max(len(c) for c in chunks) <= 7
    assert np.array_equal(np.concatenate(chunks), x[:, [2, 0]].astype(dtype))


def test_the_output_grows_when_the_row_estimate_is_short(tmp_path, monkeypatch):
    path, _ = mixed_table(tmp_path)
    whole = tables.read(path, dtype="float64")
    monkeypatch.setattr(tables._Text, "rows_hint", lambda self: 1)
    short = tables.read(path, dtype="float64", chunk_rows=3)
    assert np.array_equal(short.x, whole.x) and np.array_equal(short.y, whole.y)


def test_iter_chunks_of_every_format(tmp_path):
    x = np.arange(30.0).reshape(10, 3)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(10))
    np.savetxt(tmp_path / "d.csv", x, delimiter=",", header="x0,x1,x2", comments="")
    for name in ("x.npy", "d.npz", "d.csv"):
        chunks = list(tables.iter_chunks(tmp_path / name, dtype="float64", chunk_rows=4))
        assert [len(c) for c in chunks] == [4, 4, 2] and np.array_equal(np.concatenate(chunks), x)
        assert np.array_equal(np.concatenate(list(tables.iter_chunks(tmp_path / name, columns=["x2"]))), x[:, 2:])


def test_reading_holds_the_output_and_one_chunk(tmp_path):
    """Not the whole text, nor a float64 copy of it: the arrays returned plus one chunk's worth."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 20))
    path = tmp_path / "big.csv"
    np.savetxt(path, np.column_stack([x, np.arange(20_000) % 3]), fmt="%.6f", delimiter=",",
               header=",".join(f"f{i}" for i in range(21)), comments="")
    assert path.stat().st_size > 3_000_000
    tracemalloc.start()
    try:
        table = tables.read(path, chunk_rows=500)
        read_peak = tracemalloc.get_traced_memory()[1] - table.x.nbytes - table.y.nbytes
        tracemalloc.reset_peak()
        rows = sum(len(c) for c in tables.iter_chunks(path, chunk_rows=500))
        chunks_peak = tracemalloc.get_traced_memory()[1] - table.x.nbytes - table.y.nbytes
    finally:
        tracemalloc.stop()
    assert len(table) == rows == 20_000
    assert read_peak < 1_000_000 and chunks_peak < 1_000_000


# --- errors: one line, naming the file and the row or column ------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("a,b,y\n1,2,0\n3,4\n", "row 3 has 2 fields but the header has 3"),
    ("a,b,y\n1,2,0\n3,4,1,5\n", "row 3 has 4 fields but the header has 3"),
    ("a,b,y\n1,,0\n", "row 2, column 'b': a missing value (an empty field)"),
    ("a,b,y\n1,2,0\n\n3,NA,1\n", "row 4, column 'b': a missing value ('NA')"),
    ("a,b,y\n1,nan,0\n", "row 2, column 'b': a missing value ('nan')"),
    ("a,b,y\n1,2,0\n3,4,\n", "row 3, target column 'y': a missing value"),
    ("a,b,y\n1,2,0\n3,N/A,cat\n", "row 3, column 'b': a missing value ('N/A')"),
    ("a,b,y\n1,two,0\n", "row 2, column 'b': 'two' is not a number"),
    ("a,b,y\n1,inf,0\n", "row 2, column 'b': 'inf' is not a finite number"),
    ("a,b,y\n1,2,inf\n", "row 2, target column 'y': 'inf' is not a finite number"),
    ('a,b,y\n1,"2\n3",0\n', "row 2: a quoted field runs onto the next line"),
    ('a,b,y\n1,2,cat\n3,4,"cat" \n', "row 3: "),  # a space after the closing quote
    ("", "the file is empty"),
    ("\n\n", "the file is empty"),
    ("a,b,y\n", "has no data rows"),
    ("a,b,y\n\n\n", "has no data rows"),
    ("a,b,a\n1,2,3\n", "the header names column 'a' twice (columns 1 and 3)"),
    (",a,y\n0,1,2\n", "column 1 of the header has no name"),
    ("1,2,3\n4,5,6\n", "the first line holds numbers, not column names"),
    ("y\n1\n2\n", "has only the target column 'y'"),
    ("a b y\n1 2 0\n", "has only the target column 'a b y'; add columns of features (or is the delimiter not"),
])
def test_bad_text_tables(tmp_path, text, expected):
    assert expected in refused(write(tmp_path / "bad.csv", text))


def test_iter_chunks_of_no_rows(tmp_path):
    with pytest.raises(DataError, match="has no data rows"):
        list(tables.iter_chunks(write(tmp_path / "d.csv", "a,b\n\n")))


def test_a_bad_row_far_down_is_named_by_its_line(tmp_path):
    lines = ["a,y"] + [f"{i},{i % 2}" for i in range(1, 100)] + ["", "oops,1"]
    path = write(tmp_path / "d.csv", "\n".join(lines) + "\n")
    for rows in (None, 1, 8, 64):
        assert "row 102, column 'a': 'oops' is not a number" in refused(path, chunk_rows=rows)


def test_a_missing_target_column_lists_the_columns(penguins):
    message = refused(penguins, target="mass")
    assert "no column 'mass'; its columns are 'bill', 'flipper', 'species'" in message
    with pytest.raises(DataError, match="no column 'mass'"):
        tables.iter_chunks(penguins, columns=["bill", "mass"])  # at the call, before any chunk is asked for


def test_not_utf8_text(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("größe,y\n1,0\n".encode("latin-1"))
    assert "is not UTF-8 text" in refused(path)


def test_a_missing_file_and_a_directory(tmp_path):
    assert "no such file" in refused(tmp_path / "nope.csv")
    assert "no such file" in refused(tmp_path / "nope.npz")
    assert "is a directory" in refused(tmp_path)
    np.save(tmp_path / "x.npy", np.ones((2, 2)))
    y = tmp_path / "y.npy"
    assert f"{y}: no such file" in refused(tmp_path / "x.npy", target=str(y), blamed=y)


def test_bad_array_files(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    np.save(tmp_path / "y4.npy", np.zeros(4))
    np.save(tmp_path / "y2d.npy", np.zeros((3, 2)))
    np.save(tmp_path / "x1d.npy", np.ones(3))
    np.save(tmp_path / "text.npy", np.array([["a", "b"]] * 3))
    nan = np.ones((3, 2))
    nan[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "short.npy").write_bytes((tmp_path / "x.npy").read_bytes()[:-8])
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    x = tmp_path / "x.npy"
    assert "holds the features only; name the targets' .npy file" in refused(x)
    assert "has 3 samples but" in refused(x, target=str(tmp_path / "y4.npy"))
    y2d = tmp_path / "y2d.npy"
    assert "2 values per sample" in refused(x, target=str(y2d), blamed=y2d)
    assert "shape (3,); features need an array of shape (samples, features)" in refused(tmp_path / "x1d.npy")
    assert "features must be numbers" in refused(tmp_path / "text.npy")
    assert "x[2, 1]: a missing value ('nan')" in refused(tmp_path / "nan.npy", target=str(tmp_path / "y4.npy"))
    assert "truncated" in refused(tmp_path / "short.npy", target=str(tmp_path / "y4.npy"))
    assert "is not a NumPy .npy array" in refused(tmp_path / "junk.npy")
    np.save(tmp_path / "none.npy", np.ones((0, 2)))
    np.save(tmp_path / "y0.npy", np.ones(0))
    assert "has no data rows" in refused(tmp_path / "none.npy", target=str(tmp_path / "y0.npy"))
    ynan = tmp_path / "ynan.npy"
    np.save(ynan, np.array([0.0, np.nan, 1.0]))
    assert "y[1]" in refused(x, target=str(ynan), blamed=ynan)


def test_bad_npz_files(tmp_path):
    np.savez(tmp_path / "none.npz", features=np.ones((2, 2)), y=np.zeros(2))
    np.savez(tmp_path / "both.npz", x=np.ones((2, 2)), X=np.ones((2, 2)), y=np.zeros(2))
    np.savez(tmp_path / "noy.npz", x=np.ones((2, 2)))
    (tmp_path / "zip.npz").write_bytes(b"PK not a zip")
    assert "no array 'x' of features; it holds 'features', 'y'" in refused(tmp_path / "none.npz")
    assert "holds arrays 'x' and 'X'" in refused(tmp_path / "both.npz")
    assert "no array 'y' of targets; it holds 'x'" in refused(tmp_path / "noy.npz")
    assert "no array 'label' of targets" in refused(tmp_path / "noy.npz", target="label")
    assert "is not a .npz file" in refused(tmp_path / "zip.npz")


class Payload:
    """Unpickling this creates a file: the test sees whether anything was unpickled."""

    marker = ""

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("where", ["x.npy", "y.npy", "npz x", "npz y"])
def test_object_arrays_are_refused_and_never_unpickled(tmp_path, where):
    Payload.marker = str(tmp_path / "unpickled")
    evil = np.array([Payload()] * 3, dtype=object)
    good_x, good_y = np.ones((3, 2)), np.zeros(3)
    if where.startswith("npz"):
        arrays = {"x": evil.reshape(3, 1), "y": good_y} if where == "npz x" else {"x": good_x, "y": evil}
        np.savez(tmp_path / "d.npz", allow_pickle=True, **arrays)
        args = (tmp_path / "d.npz",)
    else:
        np.save(tmp_path / "x.npy", evil.reshape(3, 1) if where == "x.npy" else good_x, allow_pickle=True)
        np.save(tmp_path / "y.npy", evil if where == "y.npy" else good_y, allow_pickle=True)
        args = (tmp_path / "x.npy", str(tmp_path / "y.npy"))
    with pytest.raises(DataError, match="holds Python objects.*never unpickles") as caught:
        tables.read(*args)
    assert "\n" not in str(caught.value)
    assert not os.path.exists(Payload.marker)


def test_bad_options():
    for kwargs in ({"dtype": "int32"}, {"dtype": "nonsense"}, {"task": "clustering"}, {"chunk_rows": 0},
                   {"chunk_rows": 2.5}, {"chunk_rows": True}):
        with pytest.raises(ConfigError):
            tables.read("whatever.csv", **kwargs)
        if "task" not in kwargs:
            with pytest.raises(ConfigError):
                tables.iter_chunks("whatever.csv", **kwargs)


# --- Parquet ------------------------------------------------------------------------------------------

def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    path = write(tmp_path / "d.parquet", "PAR1")
    message = refused(path, error=ConfigError)
    assert message.endswith("reading Parquet needs pyarrow: pip install pyarrow")


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    data = {"a": [1.5, 2.5, 3.5, 4.5], "b": pa.array([1, 2, 3, 4], pa.int32()), "flag": [True, False, True, False],
            "species": pa.array(["x", "y", "x", "y"]).dictionary_encode()}
    pq.write_table(pa.table(data), tmp_path / "d.parquet", row_group_size=3)
    table = tables.read(tmp_path / "d.parquet", dtype="float64", chunk_rows=3)
    assert table.columns == ["a", "b", "flag"] and table.x.tolist() == [[1.5, 1, 1], [2.5, 2, 0], [3.5, 3, 1],
                                                                        [4.5, 4, 0]]
    assert table.classes.tolist() == ["x", "y"] and table.y.tolist() == [0, 1, 0, 1]
    pq.write_table(pa.table({"a": data["a"], "flag": data["flag"]}), tmp_path / "flag.parquet")
    assert tables.read(tmp_path / "flag.parquet").classes.tolist() == [False, True]
    chunks = list(tables.iter_chunks(tmp_path / "d.parquet", columns=["b", "a"], chunk_rows=3))
    assert np.concatenate(chunks).tolist() == [[1, 1.5], [2, 2.5], [3, 3.5], [4, 4.5]]
    assert "row 1, column 'species': the column holds text ('x')" in refused(tmp_path / "d.parquet", target="a")
    pq.write_table(pa.table({"a": [1.0, None, 3.0], "y": [0, 1, 0]}), tmp_path / "null.parquet")
    assert "row 2, column 'a': a missing value (null)" in refused(tmp_path / "null.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    assert "is not a readable Parquet file" in refused(tmp_path / "junk.parquet")


# --- a data set scikit-learn ships --------------------------------------------------------------------

def test_load_wine_round_trips_exactly_through_csv(tmp_path):
    datasets = pytest.importorskip("sklearn.datasets")
    wine = datasets.load_wine()
    names = [n.replace("/", "_") for n in wine.feature_names]
    rows = [",".join(map(repr, map(float, row))) + f",{wine.target_names[t]}" for row, t in zip(wine.data, wine.target)]
    path = write(tmp_path / "wine.csv", ",".join(names + ["cultivar"]) + "\n" + "\n".join(rows) + "\n")
    table = tables.read(path, target="cultivar", dtype="float64")
    assert np.array_equal(table.x, wine.data) and table.columns == names
    assert table.task == "classification" and table.classes.tolist() == wine.target_names.tolist()
    assert np.array_equal(table.y, wine.target)
    numbers = tables.read(write(tmp_path / "w.csv", path.read_text().replace("class_0", "0").replace(
        "class_1", "1").replace("class_2", "2")), dtype="float64")
    assert np.array_equal(numbers.y, wine.target) and numbers.classes.tolist() == [0, 1, 2]


# --- the module's example ---------------------------------------------------------------------------

def test_the_docstring_example_runs(tmp_path, monkeypatch, capsys):
    code = tables.__doc__.split("::\n")[1].split("\nFormats")[0]
    code = "\n".join(line[4:] for line in code.splitlines())
    assert code.count("seed=0)") == 1
    code = code.replace("seed=0)", "seed=0, backend='numpy')").replace("lr=0.01))", "lr=0.01), progress=False)")
    rng = np.random.default_rng(0)
    kinds = rng.integers(0, 3, 120)
    names = np.array(["Adelie", "Chinstrap", "Gentoo"])
    rows = [f"{40 + 5 * k + rng.normal():.1f},{190 + 10 * k + rng.normal():.0f},{names[k]}" for k in kinds]
    write(tmp_path / "penguins.csv", "bill,flipper,species\n" + "\n".join(rows) + "\n")
    write(tmp_path / "new.csv", "flipper,bill\n190,40\n210,50\n")  # the columns in another order
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "tables.__doc__", "exec"), {})
    assert capsys.readouterr().out.split() == ["['Adelie'", "'Gentoo']"]
