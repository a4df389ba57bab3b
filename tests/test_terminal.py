"""No name, path or text from a file reaches the terminal raw: every workstation command prints
through iris_fpga.terminal (escaped log lines, one-line errors).

Hypothesis drives the escaping itself and the build's refusal of a --package-dir whose name is
any string a file system takes; the issue's four sequences (OSC ... BEL, ESC [2J, C1 0x9b,
U+202E) go through each command as a user runs it, and their stdout and stderr bytes are checked.
"""
from __future__ import annotations

import contextlib
import io
import logging
import subprocess

from hypothesis import given, settings, strategies as st

from conftest import PYTHON, REPO, run_buildmodel
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.terminal import EscapingFormatter, escape_lines, report_error

#: The issue's sequences: set the window title, clear the screen, a one-byte CSI, right-to-left.
HOSTILE = "x\x1b]0;owned\x07\x1b[2J\x9b31m\u202eyx"
EXAMPLES = settings(max_examples=40, deadline=None)


def assert_clean(text: str) -> None:
    """Only printable characters and line breaks: no C0/C1 control, no bidi override, no DEL."""
    bad = sorted({c for c in text if c != "\n" and not c.isprintable()})
    assert not bad, f"raw control characters {bad!r} in {text!r}"


def assert_clean_bytes(*outputs: bytes) -> None:
    for data in outputs:
        assert_clean(data.decode("utf-8"))


# -------------------------------------------------------------------------------- the escaping
@EXAMPLES
@given(lines=st.lists(st.text(), min_size=1, max_size=5))
def test_escape_lines_keeps_the_lines_and_nothing_raw(lines):
    text = "\n".join(line.replace("\n", "") for line in lines)
    escaped = escape_lines(text)
    assert_clean(escaped)
    assert escaped.count("\n") == text.count("\n")
    if all(c == "\n" or c.isprintable() for c in text):
        assert escaped == text  # printable text, accents and all, is unchanged


@EXAMPLES
@given(name=st.text(min_size=1), lines=st.integers(1, 4))
def test_log_records_are_escaped_line_by_line(name, lines):
    """A log message with a hostile argument: escaped, and a multi-line table keeps its lines."""
    record = logging.LogRecord("BuildModel", logging.INFO, __file__, 1, "uploaded %s" + "\n  row" * (lines - 1),
                               (name,), None)
    out = EscapingFormatter("%(message)s").format(record)
    assert_clean(out)
    assert out.count("\n") == lines - 1 + name.count("\n")  # the table's lines stay lines
    assert out.startswith("uploaded ") and (lines == 1 or out.endswith("\n  row"))


@EXAMPLES
@given(message=st.text(min_size=1))
def test_an_error_is_one_clean_line_with_its_code(message):
    stream = io.StringIO()
    assert report_error(ToolError(message, ExitCode.BOARD), stream) == ExitCode.BOARD
    out = stream.getvalue()
    assert out.startswith("error: ") and out.count("\n") == 1 and out.endswith("\n")
    assert_clean(out)


# ------------------------------------------------------------------------------ the commands
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=30
                ).filter(lambda n: n not in (".", "..") and len(n.encode()) <= 200)


@EXAMPLES
@given(name=names)
def test_build_refuses_any_package_dir_name_in_one_clean_line(tmp_path_factory, name):
    """--package-dir holding a stranger's file: refused before any step, exit 2, the name escaped."""
    import BuildModel

    root = tmp_path_factory.mktemp("names")
    (root / name).mkdir()
    (root / name / "mine.txt").write_text("a user's file")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = BuildModel.main(["--package-dir", str(root / name), "--output-dir", str(root / "out"),
                                "--from", "package"])
    assert code == ExitCode.USAGE
    assert err.getvalue().startswith("error: ") and err.getvalue().count("\n") == 1
    assert_clean(err.getvalue())
    assert (root / name / "mine.txt").read_text() == "a user's file"


def test_build_package_dir_refusal_as_a_user_runs_it(tmp_path):
    folder = tmp_path / HOSTILE
    folder.mkdir()
    (folder / "mine.txt").write_text("a user's file")
    result = subprocess.run([PYTHON, str(REPO / "BuildModel.py"), "--package-dir", HOSTILE, "--from", "package"],
                            cwd=tmp_path, capture_output=True, timeout=120)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert b"holds files but no manifest.json" in result.stderr
    assert b"\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202eyx" in result.stderr  # named, escaped
    assert_clean_bytes(result.stdout, result.stderr)


def test_deploy_refusal_names_the_package_escaped(tmp_path):
    """Deploy's own refusal (no manifest in --package-dir), through the build's error line."""
    (tmp_path / HOSTILE).mkdir()
    result = run_buildmodel("--from", "deploy", "--host", "127.0.0.1", "--package-dir", HOSTILE, cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "manifest.json not found" in result.stderr
    assert_clean(result.stdout + result.stderr)


def test_deploy_log_lines_are_escaped():
    """What deploy logs (a file name from the board, the board's output tail) goes out escaped."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter("%(message)s"))
    log = logging.getLogger("iris_fpga.deploy")
    log.addHandler(handler)
    try:
        log.error("last %d lines of on_target.py output:\n%s", 2, f"  | {HOSTILE}\n  | done")
    finally:
        log.removeHandler(handler)
    assert stream.getvalue().split("\n")[1:3] == ["  | x\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202eyx", "  | done"]


def test_validation_names_a_hostile_package_escaped(tmp_path):
    (tmp_path / HOSTILE).mkdir()
    result = subprocess.run([PYTHON, str(REPO / "utilities" / "validate_model.py"), HOSTILE], cwd=tmp_path,
                            capture_output=True, timeout=120)
    assert result.returncode == ExitCode.USAGE
    assert b"y_test.npy is missing" in result.stderr
    assert_clean_bytes(result.stdout, result.stderr)


def test_validation_usage_errors_are_escaped(tmp_path):
    result = subprocess.run([PYTHON, str(REPO / "utilities" / "validate_model.py"), "--min-accuracy", HOSTILE],
                            cwd=tmp_path, capture_output=True, timeout=120)
    assert result.returncode == ExitCode.USAGE and result.stderr.startswith(b"error: ")
    assert_clean_bytes(result.stdout, result.stderr)
