"""fileio's bounded loaders and printable(): what validation and deploy read from disk or a board.

Properties (Hypothesis, in-process) over generated .npy headers and JSON documents: a loader
either returns exactly what the file holds or raises one ToolError whose message is one printable
line with the caller's exit code; nothing else escapes. Example tests cover what is not data:
links, FIFOs, folders and size caps.
"""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from numpy.lib import format as npy_format

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import (MAX_JSON_DEPTH, MAX_NPY_ELEMENTS, load_json, load_npy, parse_json, parse_npy,
                              printable, read_untrusted)

EXAMPLES = settings(max_examples=60, deadline=None)


def refused(call, code: ExitCode = ExitCode.USAGE) -> str:
    """The message of the ToolError ``call()`` raises, checked to be one printable line."""
    with pytest.raises(ToolError) as info:
        call()
    message = str(info.value)
    assert message.isprintable() and message, repr(message)  # no newline, no control character
    assert info.value.code == code
    return message


# ------------------------------------------------------------------------------------ .npy
def npy_bytes(header: dict, data: bytes, version=(1, 0)) -> bytes:
    fh = io.BytesIO()
    write = {(1, 0): npy_format.write_array_header_1_0, (2, 0): npy_format.write_array_header_2_0}[version]
    write(fh, header)
    return fh.getvalue() + data


DESCRS = ["<f8", "<f4", ">i4", "|u1", "|b1", "<f2", "|O", "<c16", "<U5", "|S3", "|V8", "<M8[s]",
          [("a", "<f8")], [("a", "<f8", (2,))]]
shapes = st.lists(st.one_of(st.integers(0, 6), st.integers(-3, 10**13)), max_size=3).map(tuple)


@EXAMPLES
@given(descr=st.sampled_from(DESCRS), shape=shapes, fortran=st.booleans(), extra=st.integers(-16, 16),
       version=st.sampled_from([(1, 0), (2, 0)]))
def test_npy_header_is_checked_before_anything_is_loaded(descr, shape, fortran, extra, version):
    dtype = npy_format.descr_to_dtype(descr)
    count = int(np.prod(shape, dtype=object)) if shape else 1
    plain = dtype.kind in "biuf" and dtype.fields is None and min(shape, default=0) >= 0
    size = max(0, count * dtype.itemsize + extra) if 0 <= count <= 1000 else abs(extra)
    data = npy_bytes({"descr": descr, "fortran_order": fortran, "shape": shape}, bytes(size), version)
    try:
        array = parse_npy(data, "y_hw.npy", code=ExitCode.BOARD)
    except ToolError as exc:
        message = str(exc)
        assert message.isprintable() and message.startswith("y_hw.npy ") and exc.code == ExitCode.BOARD
        if dtype.hasobject:
            assert "object array" in message
        elif plain and count > MAX_NPY_ELEMENTS:
            assert str(shape) in message
        return
    # Accepted: a plain numeric array whose data was exactly the rest of the file.
    assert plain and size == count * dtype.itemsize
    assert array.shape == shape and array.dtype == dtype and array.flags.writeable


@EXAMPLES
@given(array=hnp.arrays(hnp.scalar_dtypes().filter(lambda d: d.kind in "biuf"), hnp.array_shapes(min_dims=0, max_dims=3)),
       fortran=st.booleans(), cut=st.integers(1, 200))
def test_npy_roundtrip_and_every_truncation(array, fortran, cut):
    fh = io.BytesIO()
    np.save(fh, np.asfortranarray(array) if fortran else array, allow_pickle=False)
    data = fh.getvalue()
    np.testing.assert_array_equal(parse_npy(data, "X_test.npy"), array)
    refused(lambda: parse_npy(data[:max(0, len(data) - cut)], "X_test.npy"))


def test_npy_kinds_and_cap_are_the_callers():
    fh = io.BytesIO()
    np.save(fh, np.array(["setosa", "virginica"]))
    assert "not numeric (dtype <U9)" in refused(lambda: parse_npy(fh.getvalue(), "y_test.npy"))
    assert list(parse_npy(fh.getvalue(), "classes.npy", kinds="U")) == ["setosa", "virginica"]
    fh = io.BytesIO()
    np.save(fh, np.zeros(11))
    assert "more than the 10" in refused(lambda: parse_npy(fh.getvalue(), "y.npy", max_elements=10))
    claim = npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (10**11, 3)}, bytes(24))
    assert "(100000000000, 3)" in refused(lambda: parse_npy(claim, "y_test.npy"))


# ------------------------------------------------------------------------------------ JSON
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


@EXAMPLES
@given(value=json_values, wrap=st.one_of(st.integers(0, 40), st.sampled_from([1_000, 100_000])))
def test_json_within_bounds_loads_and_deep_json_is_one_line(value, wrap):
    text = "[" * wrap + json.dumps(value) + "]" * wrap
    expected = value
    for _ in range(wrap):
        expected = [expected]
    if depth(value) + wrap > MAX_JSON_DEPTH:
        assert "nests deeper than" in refused(lambda: parse_json(text.encode(), "y_hw.json"))
    else:
        assert parse_json(text.encode(), "y_hw.json") == expected


@EXAMPLES
@given(digits=st.integers(4301, 20_000), sign=st.sampled_from(["", "-"]),
       exponent=st.sampled_from(["", ".5", "e999", "e-999"]))
def test_huge_numbers_are_one_line(digits, sign, exponent):
    text = '{"samples": ' + sign + "7" * digits + exponent + "}"
    if exponent in ("", ):
        assert "digits" in refused(lambda: parse_json(text.encode(), "y_hw.json"))
    else:  # a float this large is infinite: refused; a tiny one is a number like any other
        try:
            value = parse_json(text.encode(), "y_hw.json")["samples"]
        except ToolError as exc:
            assert "out of range" in str(exc) and str(exc).isprintable()
        else:
            assert np.isfinite(value)


@EXAMPLES
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_load_or_are_one_line(data):
    try:
        parse_json(data, "scaler.json")
    except ToolError as exc:
        assert str(exc).isprintable() and str(exc).startswith("scaler.json ")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_constants_are_refused(constant):
    assert constant in refused(lambda: parse_json(b'{"median": ' + constant.encode() + b"}", "y_hw.json"))


# ------------------------------------------------------------------------ files, not data
@pytest.fixture
def good(tmp_path):
    np.save(tmp_path / "y.npy", np.arange(6.0).reshape(2, 3))
    (tmp_path / "r.json").write_text('{"mode": "board"}')
    return tmp_path


def test_regular_files_load(good):
    assert load_npy(good / "y.npy").shape == (2, 3)
    assert load_json(good / "r.json") == {"mode": "board"}


@pytest.mark.parametrize("kind", ["symlink inside", "symlink outside", "fifo", "folder", "missing"])
def test_links_fifos_and_folders_are_refused_without_blocking(good, tmp_path_factory, kind):
    target = good / "x.npy"
    if kind == "symlink inside":
        target.symlink_to(good / "y.npy")
    elif kind == "symlink outside":
        outside = tmp_path_factory.mktemp("outside") / "y.npy"
        outside.write_bytes((good / "y.npy").read_bytes())
        target.symlink_to(outside)
    elif kind == "fifo":
        os.mkfifo(target)  # opening it for reading would block without O_NONBLOCK
    elif kind == "folder":
        target.mkdir()
    message = refused(lambda: load_npy(target, code=ExitCode.BOARD), ExitCode.BOARD)
    assert message.startswith("x.npy ")
    assert {"symlink inside": "symbolic link", "symlink outside": "symbolic link", "fifo": "not a regular file",
            "folder": "not a regular file", "missing": "cannot be read"}[kind] in message


def test_size_cap(good):
    (good / "big.json").write_text(" " * 2000 + "{}")
    assert "larger than 1000 bytes" in refused(lambda: load_json(good / "big.json", max_bytes=1000))
    assert read_untrusted(good / "big.json", 2002).endswith(b"{}")


# ----------------------------------------------------------------------------- printable
@EXAMPLES
@given(text=st.text())
def test_printable_escapes_exactly_the_unprintable(text):
    shown = printable(text)
    assert shown.isprintable()
    assert (shown == text) == text.isprintable()
    assert printable(shown) == shown


def test_printable_escapes_terminal_controls():
    assert printable("set\x1b[2Josa\nPASS\u202e") == "set\\x1b[2Josa\\nPASS\\u202e"
    assert printable("versicolor é") == "versicolor é"


# ------------------------------------------------------------------------- linked folders
def test_a_linked_package_dir_is_refused_before_any_step(tmp_path):
    """--package-dir given as a link is refused (links are not followed), whatever it leads to; the
    folder it leads to and the link stay as they were."""
    from conftest import run_buildmodel
    from iris_fpga.packaging import check_folders

    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "canary").write_text("a user's file")
    (tmp_path / "package").symlink_to(tmp_path / "real")
    with pytest.raises(ToolError, match="is a symbolic link") as info:
        check_folders(tmp_path / "out", tmp_path / "package", replace_package=True)
    assert info.value.code == ExitCode.USAGE
    result = run_buildmodel("--from", "package", cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE and result.stderr.count("\n") == 1, result.stderr
    assert "--package-dir" in result.stderr and "is a symbolic link" in result.stderr
    assert (tmp_path / "package").is_symlink() and os.listdir(tmp_path / "real") == ["canary"]
    assert not (tmp_path / "hls4ml_prj_pynq").exists()
