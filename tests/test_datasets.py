"""Issue 32: the data sets as a setting (scikit-learn's bundled ones and a user's CSV table).

The data step runs for real (``BuildModel.py --to data``: scikit-learn, no TensorFlow); the CSV
reader's refusals are checked through the command line (exit 2, one line naming the row or
column, nothing written) and, over generated tables and bytes, in-process with Hypothesis.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from iris_fpga.config import BuildConfig
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.tabular import MAX_CSV_BYTES, MAX_FIELD_CHARS, read_table
from tests.conftest import run_buildmodel

EXAMPLES = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SIZES = {"iris": (150, 4, 3), "wine": (178, 13, 3), "breast_cancer": (569, 30, 2), "digits": (1797, 64, 10)}


def staged(root: Path) -> Path:
    return root / "hls4ml_prj_pynq" / "pipeline" / "staging"


def data_step(root: Path, *args: str):
    root.mkdir(parents=True, exist_ok=True)
    result = run_buildmodel(*args, "--to", "data", cwd=root)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return staged(root)


def write_table(path: Path, header, rows, *, bom: bool = False) -> Path:
    text = io.StringIO(newline="")
    csv.writer(text).writerows([header, *rows])
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.getvalue().encode())
    return path


def two_class_rows(n: int = 20):
    """Separable samples: class "low" near 0, class "high" near 5, in two features."""
    rng = np.random.default_rng(1)
    return [[f"{v:.4f}" for v in rng.normal(5 * (i % 2), 0.5, 2)] + [("low", "high")[i % 2]] for i in range(n)]


# -- the bundled data sets --------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SIZES))
def test_each_bundled_data_set_is_split_scaled_and_named(name, tmp_path):
    from sklearn import datasets

    folder = data_step(tmp_path, "--dataset", name)
    n, n_features, n_classes = SIZES[name]
    X_train, X_test = (np.load(folder / f"X_{part}.npy") for part in ("train", "test"))
    y_train, y_test = (np.load(folder / f"y_{part}.npy") for part in ("train", "test"))
    classes = np.load(folder / "classes.npy")
    scaler = json.loads((folder / "scaler.json").read_text())
    bunch = getattr(datasets, f"load_{name}")()
    assert len(X_test) == math.ceil(0.2 * n) and len(X_train) + len(X_test) == n
    assert X_train.shape[1] == n_features and y_train.shape[1] == len(classes) == n_classes
    assert sorted(classes, key=lambda c: (len(c), c)) == sorted(map(str, bunch.target_names), key=lambda c: (len(c), c))
    assert scaler["features"] == list(bunch.feature_names)
    # the scaler was fitted on the training part: undoing it gives the data set's own rows back
    raw = X_test * np.asarray(scaler["scale"]) + np.asarray(scaler["mean"])
    nearest = [np.abs(bunch.data - r).max(1).min() / (1 + np.abs(r).max()) for r in raw]
    assert max(nearest) < 1e-5
    if name != "iris":  # stratified: each class's share of the test part is its share of the whole
        names = np.asarray(bunch.target_names).astype(str)[bunch.target]
        shares = np.bincount(y_test.argmax(1)) / len(y_test) - np.asarray([np.mean(names == c) for c in classes])
        assert np.abs(shares).max() < 1.5 / len(y_test)


def test_digits_inputs_stay_inside_the_ip_input_type(tmp_path):
    """Digits' pixels share one scale: every input lies in [0, 1], far inside ap_fixed<16,6>'s [-32, 32)."""
    folder = data_step(tmp_path, "--dataset", "digits")
    for part in ("train", "test"):
        X = np.load(folder / f"X_{part}.npy")
        assert X.min() == 0 and X.max() <= 1
    scaler = json.loads((folder / "scaler.json").read_text())
    assert set(scaler["mean"]) == {0} and set(scaler["scale"]) == {16}


def test_iris_keeps_the_split_it_always_had(tmp_path):
    """Not stratified, random_state 42: the 30 test samples are those train_test_split always picked."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    folder = data_step(tmp_path)  # no --dataset: Iris
    iris = load_iris()
    _, X_test = train_test_split(iris.data.astype(np.float32), test_size=0.2, random_state=42)
    scaler = json.loads((folder / "scaler.json").read_text())
    raw = np.load(folder / "X_test.npy") * np.asarray(scaler["scale"]) + np.asarray(scaler["mean"])
    np.testing.assert_allclose(raw, X_test, atol=1e-5)


def keys(config: BuildConfig) -> dict:
    from iris_fpga.data import with_csv_digest
    from iris_fpga.flow.runner import BuildModel

    return BuildModel(with_csv_digest(config)).keys()


def test_the_data_and_the_tables_contents_enter_the_cache_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = write_table(tmp_path / "a.csv", ["x", "y", "kind"], two_class_rows())
    iris, wine = keys(BuildConfig()), keys(BuildConfig(dataset="wine"))
    csv_keys = keys(BuildConfig.for_recipe("default", csv=str(table), target="kind"))
    assert len({iris["data"], wine["data"], csv_keys["data"]}) == 3 and iris["train"] != wine["train"]
    moved = table.rename(tmp_path / "b.csv")
    assert keys(BuildConfig.for_recipe("default", csv=str(moved), target="kind")) == csv_keys  # same contents
    write_table(moved, ["x", "y", "kind"], two_class_rows(22))
    changed = keys(BuildConfig.for_recipe("default", csv=str(moved), target="kind"))
    assert changed["data"] != csv_keys["data"] and changed["csim"] != csv_keys["csim"]


def test_a_table_changed_after_the_build_started_is_refused(tmp_path):
    from iris_fpga.data import samples_of, with_csv_digest

    table = write_table(tmp_path / "t.csv", ["x", "y", "kind"], two_class_rows())
    config = with_csv_digest(BuildConfig.for_recipe("default", csv=str(table), target="kind"))
    write_table(table, ["x", "y", "kind"], two_class_rows(24))
    with pytest.raises(ToolError, match="t.csv changed since the build started"):
        samples_of(config)


# -- a user's table ---------------------------------------------------------------------------
def test_a_csv_table_is_the_data(tmp_path):
    """A BOM, quoted names with a comma, integer labels sorted as numbers, the target column in the middle."""
    rows = [[f"{i % 7}.5", str(i % 3 * 10 if i % 3 else 2), f"{i * 0.25:g}"] for i in range(30)]
    table = write_table(tmp_path / "mine.csv", ["width, mm", "grade", "mass"], rows, bom=True)
    folder = data_step(tmp_path / "run", "--csv", str(table), "--target", "grade")
    assert list(np.load(folder / "classes.npy")) == ["2", "10", "20"]
    scaler = json.loads((folder / "scaler.json").read_text())
    assert scaler["features"] == ["width, mm", "mass"]
    X = np.concatenate([np.load(folder / "X_train.npy"), np.load(folder / "X_test.npy")])
    raw = X * np.asarray(scaler["scale"]) + np.asarray(scaler["mean"])
    expected = sorted((float(r[0]), float(r[2])) for r in rows)
    np.testing.assert_allclose(sorted(map(tuple, raw)), expected, atol=1e-4)
    state = json.loads((tmp_path / "run" / "hls4ml_prj_pynq" / "pipeline" / "state.json").read_text())
    assert state["data"]["result"]["dataset"] == {
        "name": "csv", "sha256": hashlib.sha256(table.read_bytes()).hexdigest(), "target": "grade",
        "features": ["width, mm", "mass"], "classes": ["2", "10", "20"]}


HEADER = ["x", "y", "kind"]
GOOD = two_class_rows()
BAD_TABLES = {  # name: (file bytes, --target, words the one line must hold)
    "text in a feature column": (GOOD[:4] + [["1.0", "oops", "low"]] + GOOD[4:], "kind", ["row 6", "'y'", "oops"]),
    "missing target column": (GOOD, "label", ["no column 'label'", "'kind'"]),
    "single class": ([r[:2] + ["low"] for r in GOOD], "kind", ["one class", "'low'"]),
    "too few samples": (GOOD[:4], "kind", ["4 samples in 2 classes", "stratified"]),
    "a class of one": (GOOD + [["9", "9", "odd"]], "kind", ["class 'odd' has 1"]),
    "NaN": (GOOD[:2] + [["nan", "1", "low"]] + GOOD[2:], "kind", ["row 4", "'x'", "not a finite number"]),
    "infinity": (GOOD[:3] + [["1", "-inf", "low"]] + GOOD[3:], "kind", ["row 5", "'y'", "not a finite number"]),
    "beyond float32": (GOOD[:3] + [["1e39", "1", "low"]] + GOOD[3:], "kind", ["row 5", "float32"]),
    "short row": (GOOD[:1] + [["1", "low"]] + GOOD[1:], "kind", ["row 3 has 2 fields, the header 3"]),
    "empty label": (GOOD[:1] + [["1", "2", " "]] + GOOD[1:], "kind", ["row 3", "is empty"]),
    "header only": ([], "kind", ["no samples"]),
}


def table_bytes(rows) -> bytes:
    text = io.StringIO(newline="")
    csv.writer(text).writerows([HEADER, *rows])
    return text.getvalue().encode()


def raw_cases() -> dict:
    return {
        **{name: (table_bytes(rows), target, words) for name, (rows, target, words) in BAD_TABLES.items()},
        "empty file": (b"", "kind", ["is empty"]),
        "not UTF-8": (table_bytes(GOOD[:3]) + b"1,2,caf\xe9\n" + table_bytes(GOOD[3:]).split(b"\n", 1)[1], "kind",
                      ["not UTF-8", "row 5", "0xe9"]),
        "a huge line": (b"x,y,kind\n" + b"1" * (MAX_FIELD_CHARS + 10) + b",1,low\n", "kind",
                        ["row 2", f"at most {MAX_FIELD_CHARS} characters"]),
        "broken quoting": (b'x,y,kind\n1,"2"3,low\n', "kind", ["row 2", "not a CSV row"]),
        "no feature column": (b"kind\nlow\nhigh\n", "kind", ["no feature column"]),
        "escape codes in a name": (b"x,y,kind\n" + b"\x1b[2J,1,low\n" * 3, "kind", ["row 2", "\\x1b"]),
    }


def assert_refused(tmp_path: Path, args: list[str], words: list[str]) -> None:
    """Exit 2, one printable line naming what is wrong, and nothing written where the build would write."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = run_buildmodel(*args, cwd=run_dir)
    assert result.returncode == ExitCode.USAGE, result.stdout[-1500:] + result.stderr[-1500:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].isprintable() and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert list(run_dir.iterdir()) == []  # no hls4ml_prj_pynq, no package


@pytest.mark.parametrize("case", sorted(raw_cases()))
def test_a_bad_table_is_one_line_exit_2_and_nothing_written(case, tmp_path):
    data, target, words = raw_cases()[case]
    table = tmp_path / "table.csv"
    table.write_bytes(data)
    assert_refused(tmp_path, ["--csv", str(table), "--target", target], ["table.csv", *words])


def test_a_huge_file_a_fifo_and_a_link_are_refused_unread(tmp_path):
    huge = tmp_path / "huge.csv"
    with huge.open("wb") as fh:
        fh.truncate(MAX_CSV_BYTES + 1)  # sparse: the reader stops at the cap
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)  # a reader that opened it for real would block here
    link = tmp_path / "link.csv"
    link.symlink_to(write_table(tmp_path / "real.csv", HEADER, GOOD))
    for path, words in ((huge, ["larger than"]), (fifo, ["not a regular file"]), (link, ["symbolic link"])):
        with pytest.raises(ToolError) as info:
            read_table(path, "kind", 0.2)
        assert info.value.code == ExitCode.USAGE and all(w in str(info.value) for w in words), str(info.value)


def test_csv_and_target_set_the_data_settings_and_no_other(tmp_path):
    import dataclasses

    from iris_fpga.flow.cli import parse_args

    table = write_table(tmp_path / "t.csv", HEADER, GOOD)
    _, config = parse_args(["--csv", str(table), "--target", "kind"])
    changed = {f.name: getattr(config, f.name) for f in dataclasses.fields(BuildConfig)
               if getattr(config, f.name) != f.default}
    assert changed == {"dataset": "csv", "csv": str(table), "target": "kind",
                       "csv_sha256": hashlib.sha256(table.read_bytes()).hexdigest()}
    assert BuildConfig.from_dict(config.to_dict()) == config  # the manifest's settings read back


@pytest.mark.parametrize("args, words", [
    (["--csv", "t.csv"], ["--csv FILE and --target COLUMN go together"]),
    (["--target", "kind"], ["--csv FILE and --target COLUMN go together"]),
    (["--dataset", "wine", "--csv", "t.csv", "--target", "kind"], ["--dataset wine and --csv", "give one"]),
    (["--dataset", "csv"], ["--dataset csv needs --csv FILE --target COLUMN"]),
    (["--csv", "absent.csv", "--target", "kind"], ["absent.csv cannot be read"]),
])
def test_the_data_options_are_refused_when_they_do_not_fit_together(args, words, tmp_path):
    write_table(tmp_path / "t.csv", HEADER, GOOD)
    assert_refused(tmp_path, [str(tmp_path / a) if a.endswith(".csv") else a for a in args], words)


# -- Hypothesis: every table is read back as written, every byte string read or refused in one line --
NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=8)
VALUES = st.floats(-1e6, 1e6, allow_nan=False, width=32)


FEATURE_NAMES = NAMES.filter(lambda name: name.strip() == name and name != "label")


@EXAMPLES
@given(features=st.lists(FEATURE_NAMES, min_size=1, max_size=4, unique=True),
       labels=st.integers(2, 4).flatmap(lambda k: st.integers(5, 8).flatmap(
           lambda m: st.permutations(["a", "b", "7", "é ü"][:k] * m))), data=st.data())
def test_any_well_formed_table_reads_back_as_written(tmp_path, features, labels, data):
    X = data.draw(st.lists(st.lists(VALUES, min_size=len(features), max_size=len(features)),
                           min_size=len(labels), max_size=len(labels)))
    path = write_table(tmp_path / "gen.csv", [*features, "label"], [[*map(repr, row), y] for row, y in zip(X, labels)])
    table = read_table(path, "label", 0.2)
    assert table.features == features and list(table.labels) == labels
    np.testing.assert_array_equal(table.X, np.asarray(X, dtype=np.float32))


@EXAMPLES
@given(blob=st.binary(max_size=400) | st.text(st.sampled_from('ab,"\n\r1.5\x1b\ufeff'), max_size=200).map(str.encode))
def test_any_bytes_are_read_or_refused_in_one_printable_line(tmp_path, blob):
    path = tmp_path / "any.csv"
    path.write_bytes(blob)
    try:
        table = read_table(path, "a", 0.2)
    except ToolError as exc:
        assert str(exc).isprintable() and str(exc).startswith("any.csv ") and exc.code == ExitCode.USAGE
    else:
        assert len(table.labels) == len(table.X) and np.isfinite(table.X).all()


# -- the explorer passes the data options to every run ----------------------------------------
def test_the_explorer_passes_the_data_to_every_point(tmp_path, monkeypatch):
    from iris_fpga.explore.cli import parse_args, with_data
    from iris_fpga.explore.space import expand

    monkeypatch.chdir(tmp_path)
    write_table(tmp_path / "t.csv", HEADER, GOOD)
    space = {"--hidden": ["16", "8,8"]}
    points = expand(with_data(space, parse_args(["--csv", "t.csv", "--target", "kind"])))
    assert [p.args for p in points] == [("--hidden", h, "--csv", str(tmp_path / "t.csv"), "--target", "kind")
                                        for h in ("16", "8,8")]  # absolute: a run's folder is the repository
    wine = expand(with_data(space, parse_args(["--dataset", "wine"])))
    assert all(p.args[2:] == ("--dataset", "wine") for p in wine)
    (tmp_path / "t.csv").write_text("x,y,kind\n1,2,low\n")
    with pytest.raises(ToolError, match="t.csv column 'kind' holds one class"):
        expand(with_data(space, parse_args(["--csv", "t.csv", "--target", "kind"])))
    with pytest.raises(ToolError, match="--dataset is both an option here and a key of the space"):
        with_data({"--dataset": ["iris"]}, parse_args(["--dataset", "wine"]))
