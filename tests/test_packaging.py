"""The package step's folders (issue 13, item 3): nothing is replaced or removed but our own package.

Packages here are made by the real ``publish`` from small files in tmp folders (no build is
needed to test the swap); two cases run ``BuildModel.py`` itself to show the refusal comes before
any step. Every folder a test may replace has a canary beside it.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_buildmodel
from iris_fpga import contract
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.packaging import check_folders, publish
from sshd import require_throwaway_users
from test_deploy import _remote_python as _python_for

REPO = Path(__file__).resolve().parents[1]

BUILD_A, BUILD_B = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"


def manifest_of(build_id: str) -> dict:
    return {"build_id": build_id, "created": "2026-11-25T06:00:00+00:00", "settings": {}, "versions": {}}


def sources(folder: Path, text: str = "one") -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in ("X_test.npy", "on_target.py", contract.NOTEBOOK):
        files[name] = folder / name
        files[name].write_text(f"{name} {text}")
    return files


def make_package(root: Path, build_id: str = BUILD_A) -> Path:
    package = root / "package"
    publish(package, sources(root / f"src-{build_id}", build_id), manifest_of(build_id))
    return package


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (links not followed) with its kind and content."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            found[rel] = "link -> " + os.readlink(path)
        elif path.is_dir():
            found[rel] = "dir"
        elif path.is_file():
            found[rel] = path.read_bytes().hex()
        else:
            found[rel] = "special"
    return found


def assert_refused(call, fragment: str):
    with pytest.raises(ToolError) as raised:
        call()
    assert raised.value.code == ExitCode.USAGE
    message = str(raised.value)
    assert fragment in message and "\n" not in message, message


# --------------------------------------------------------------------------- --package-dir


def test_a_strangers_manifest_and_files_are_refused_and_untouched(tmp_path):
    foreign = tmp_path / "package"
    foreign.mkdir()
    (foreign / "manifest.json").write_text(json.dumps({"name": "my-npm-project", "files": {}}))
    (foreign / "thesis.tex").write_text("precious")
    before = snapshot(tmp_path)
    assert_refused(lambda: check_folders(tmp_path / "prj", foreign, replace_package=True),
                   "is not a manifest of this tool")
    assert_refused(lambda: publish(foreign, sources(tmp_path / "src"), manifest_of(BUILD_A)),
                   "is not a manifest of this tool")
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("src")} == before


def test_our_manifest_with_a_strangers_file_is_refused(tmp_path):
    package = make_package(tmp_path)
    (package / "notes.txt").write_text("mine")
    (package / "emulation").mkdir()
    before = snapshot(tmp_path)
    assert_refused(lambda: check_folders(tmp_path / "prj", package, replace_package=True),
                   "holds what its manifest does not list (emulation/, notes.txt)")
    assert_refused(lambda: publish(package, sources(tmp_path / "src2"), manifest_of(BUILD_B)), "notes.txt")
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("src2")} == before


def test_our_package_with_its_extras_is_replaced_and_results_move_aside(tmp_path):
    package = make_package(tmp_path)
    (package / "y_hw.npy").write_text("hw of A")
    (package / "y_hw.json").write_text("{}")
    (package / "__pycache__").mkdir()
    (package / "previous" / "0000000000000000").mkdir(parents=True)
    (package / "previous" / "0000000000000000" / "y_hw.npy").write_text("older")
    canary = tmp_path / "canary.txt"
    canary.write_text("beside")

    notes = publish(package, sources(tmp_path / "src-b", "two"), manifest_of(BUILD_B))

    assert (package / "X_test.npy").read_text() == "X_test.npy two"
    assert not (package / "y_hw.npy").exists() and not (package / "__pycache__").exists()
    assert (package / "previous" / BUILD_A / "y_hw.npy").read_text() == "hw of A"
    assert (package / "previous" / "0000000000000000" / "y_hw.npy").read_text() == "older"
    assert notes == [f"y_hw.npy, y_hw.json came from build {BUILD_A}, not this one: moved to package/previous/{BUILD_A}/"]
    assert canary.read_text() == "beside"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary.txt", "package", f"src-{BUILD_A}", "src-b"]
    assert contract.require_ours(package)["build_id"] == BUILD_B


def test_results_of_the_same_build_stay_current(tmp_path):
    package = make_package(tmp_path)
    (package / "y_hw.npy").write_text("hw of A")
    assert publish(package, sources(tmp_path / "again", BUILD_A), manifest_of(BUILD_A)) == []
    assert (package / "y_hw.npy").read_text() == "hw of A"


def test_an_edited_notebook_is_kept(tmp_path):
    package = make_package(tmp_path)
    (package / contract.NOTEBOOK).write_text("my edits")
    notes = publish(package, sources(tmp_path / "src-b", "two"), manifest_of(BUILD_B))
    assert (package / contract.NOTEBOOK).read_text() == f"{contract.NOTEBOOK} two"
    assert (package / "previous" / BUILD_A / contract.NOTEBOOK).read_text() == "my edits"
    assert any("was edited" in note for note in notes)


@pytest.mark.parametrize("entry", ["y_hw.npy", "previous"])
def test_an_extra_that_is_a_link_makes_the_folder_not_ours(tmp_path, entry):
    """A linked y_hw.npy or previous/ would have the swap copy (or delete) what lies outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("outside the package")
    package = make_package(tmp_path)
    (package / entry).symlink_to(outside / "secret" if entry == "y_hw.npy" else outside)
    before = snapshot(tmp_path)
    assert_refused(lambda: check_folders(tmp_path / "prj", package, replace_package=True), entry)
    assert snapshot(tmp_path) == before


def test_a_file_added_during_the_build_is_never_removed(tmp_path):
    """The folder is checked again after it is renamed aside; then it goes back untouched."""
    package = make_package(tmp_path)

    def user_adds_a_file(new_folder: Path) -> list[Path]:
        (package / "results-of-my-own.csv").write_text("precious")
        return []

    before = sorted(p.name for p in tmp_path.iterdir())
    assert_refused(lambda: publish(package, sources(tmp_path / "src-b", "two"), manifest_of(BUILD_B),
                                   extra_stage=user_adds_a_file),
                   f"{package} holds what its manifest does not list (results-of-my-own.csv)")
    assert (package / "results-of-my-own.csv").read_text() == "precious"
    assert (package / "X_test.npy").read_text() == f"X_test.npy {BUILD_A}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["src-b"])  # no staging left


def _paused(monkeypatch, point: str, pause: Path, call) -> tuple[threading.Thread, list]:
    """Run ``call`` in a thread until it stops at ``point`` (iris_fpga/testpause.py)."""
    monkeypatch.setenv("IRIS_FPGA_TEST_PAUSE", f"{point}:{pause}")
    outcome = []

    def run():
        try:
            outcome.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)
    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not pause.exists():
        assert thread.is_alive() and time.monotonic() < deadline, outcome
        time.sleep(0.02)
    return thread, outcome


@pytest.mark.parametrize("written", ["results-of-my-own.csv", "y_hw.npy", "previous/x/y_hw.json"])
def test_a_file_written_during_the_carry_over_puts_the_old_package_back(tmp_path, monkeypatch, written):
    package = make_package(tmp_path)
    (package / "previous" / "x").mkdir(parents=True)
    build = lambda: publish(package, sources(tmp_path / "src-b", "two"), manifest_of(BUILD_B))  # noqa: E731
    thread, outcome = _paused(monkeypatch, "package-carried", tmp_path / "pause", build)
    old, = tmp_path.glob(".package.old-*")
    (old / written).write_text("written while previous/ was copied")
    (tmp_path / "pause").unlink()
    thread.join(60)
    assert isinstance(outcome[0], ToolError) and outcome[0].code == ExitCode.USAGE
    assert f"{written} appeared" in str(outcome[0]) and str(package) in str(outcome[0])
    assert (package / written).read_text() == "written while previous/ was copied"
    assert (package / "X_test.npy").read_text() == f"X_test.npy {BUILD_A}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["package", "src-aaaaaaaaaaaaaaaa", "src-b"]


def test_a_file_written_during_the_removal_keeps_the_old_folder(tmp_path, monkeypatch, caplog):
    package = make_package(tmp_path)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "on_target.pyc").write_text("made by Python")
    build = lambda: publish(package, sources(tmp_path / "src-b", "two"), manifest_of(BUILD_B))  # noqa: E731
    thread, outcome = _paused(monkeypatch, "package-removing", tmp_path / "pause", build)
    old, = tmp_path.glob(".package.old-*")
    (old / "__pycache__" / "late.txt").write_text("written while the old package was removed")
    (tmp_path / "pause").unlink()
    thread.join(60)
    assert outcome == [[]]
    assert (package / "X_test.npy").read_text() == "X_test.npy two"
    assert snapshot(old) == {"__pycache__": "dir", "__pycache__/late.txt": snapshot(old)["__pycache__/late.txt"]}
    assert f"kept as {old}" in caplog.text


def test_a_second_move_into_previous_never_overwrites_the_first(tmp_path):
    package = make_package(tmp_path)
    for round, build in enumerate((BUILD_B, BUILD_A, BUILD_B), 1):
        if build == BUILD_B:  # the package holds build A: give it results that were never compared
            (package / "y_hw.npy").write_text(f"round {round}")
        publish(package, sources(tmp_path / f"src-{round}", str(round)), manifest_of(build))
    assert (package / "previous" / BUILD_A / "y_hw.npy").read_text() == "round 1"
    assert (package / "previous" / f"{BUILD_A}-2" / "y_hw.npy").read_text() == "round 3"


def test_an_unreadable_entry_in_previous_is_one_line_and_changes_nothing(tmp_path):
    """As a throwaway non-root user (root reads everything): the package step cannot copy previous/."""
    require_throwaway_users()
    name = f"irispkg{os.getpid()}"
    scratch = Path(tempfile.mkdtemp(prefix="iris-fpga-package-"))
    try:
        scratch.chmod(0o755)
        subprocess.run(["useradd", "-M", "-d", str(scratch / "home"), "-s", "/bin/sh", "-p", "*", name],
                       check=True, capture_output=True)
        home = scratch / "home"
        package = make_package(home)
        (package / "previous" / "old").mkdir(parents=True)
        (package / "previous" / "old" / "y_hw.npy").write_text("not readable")
        for path in [home, *home.rglob("*")]:
            os.lchown(path, *_ids(name))
        (package / "previous" / "old" / "y_hw.npy").chmod(0)
        before = snapshot(home)
        script = (f"import sys\nsys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]\n"
                  "from iris_fpga.errors import ToolError\nfrom iris_fpga.packaging import publish\n"
                  "from test_packaging import manifest_of, sources\nfrom pathlib import Path\n"
                  f"home = Path({str(home)!r})\n"
                  "try:\n    publish(home / 'package', sources(home / 'src-b', 'two'), manifest_of('b' * 16))\n"
                  "except ToolError as exc:\n    sys.exit(f'error: {exc}')\n")
        python = _python_for(name, scratch)
        result = subprocess.run(["runuser", "-u", name, "--", python, "-c", script], capture_output=True, text=True,
                                cwd="/", timeout=120)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert "cannot copy package/previous/" in lines[0] and "y_hw.npy" in lines[0]
        assert "Permission denied" in lines[0]
        assert {k: v for k, v in snapshot(home).items() if not k.startswith("src-b")} == before
    finally:
        subprocess.run(["userdel", "-f", name], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
    assert stat.S_IMODE(os.stat("/dev/null").st_mode) == 0o666


def _ids(name: str) -> tuple[int, int]:
    import pwd
    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


KINDS = st.sampled_from(["file", "dir", "link-in", "link-out", "fifo"])
NAMES = st.sampled_from(["X_test.npy", "on_target.py", "manifest.json", "y_hw.npy", "y_hw.json", "previous",
                         "__pycache__", ".ipynb_checkpoints", contract.NOTEBOOK, "thesis.tex", ".bashrc"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(NAMES, KINDS), max_size=4, unique_by=lambda c: c[0]))
def test_publish_replaces_only_a_package_of_ours(changes):
    """Whatever a folder holds, publish either refuses and changes nothing, or it was ours."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        outside = root / "outside"
        outside.mkdir()
        (outside / "canary").write_text("keep")
        package = make_package(root)
        for name, kind in changes:
            _put(package / name, kind, outside)
        before = snapshot(root)
        ours = _is_ours(package)
        try:
            publish(package, sources(root / "src-b", "two"), manifest_of(BUILD_B))
        except ToolError as exc:
            assert exc.code == ExitCode.USAGE and not ours, (changes, exc)
            assert {k: v for k, v in snapshot(root).items() if not k.startswith("src-b")} == before
        else:
            assert ours, changes
            assert (package / "X_test.npy").read_text() == "X_test.npy two"
        assert (outside / "canary").read_text() == "keep" and sorted(os.listdir(outside)) == ["canary"]


def _put(path: Path, kind: str, outside: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    if kind == "file":
        path.write_text("user's")
    elif kind == "dir":
        path.mkdir()
        (path / "inside").write_text("user's")
    elif kind == "link-in":
        path.symlink_to(path.parent / "X_test.npy")
    elif kind == "link-out":
        path.symlink_to(outside / "canary")
    else:
        os.mkfifo(path)


def _is_ours(package: Path) -> bool:
    """The rule, stated apart from contract.py: our manifest, listed files, regular allowed extras."""
    path = package / "manifest.json"
    if path.is_symlink() or not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        return False
    if not isinstance(manifest, dict) or manifest.get("build_id") != BUILD_A:
        return False
    for entry in package.iterdir():
        name = entry.name
        if name == "manifest.json":
            continue
        regular_file = entry.is_file() and not entry.is_symlink()
        if name in [*manifest["files"], "y_hw.npy", "y_hw.json", contract.NOTEBOOK] and regular_file:
            continue
        if name in ("previous", "__pycache__", ".ipynb_checkpoints") and entry.is_dir() and not entry.is_symlink():
            continue
        return False
    return True


# --------------------------------------------------------------------------- --output-dir


def test_output_dir_of_ours_or_empty_is_accepted(tmp_path):
    package = tmp_path / "package"
    (tmp_path / "empty").mkdir()
    check_folders(tmp_path / "empty", package, replace_package=True)
    check_folders(tmp_path / "absent", package, replace_package=True)
    (tmp_path / "interrupted" / "pipeline" / "staging").mkdir(parents=True)  # a first run stopped early
    check_folders(tmp_path / "interrupted", package, replace_package=True)
    (tmp_path / "built" / "pipeline").mkdir(parents=True)
    (tmp_path / "built" / "pipeline" / "state.json").write_text("{}")
    (tmp_path / "built" / "firmware").mkdir()
    check_folders(tmp_path / "built", package, replace_package=True)


def test_a_non_empty_output_dir_this_tool_did_not_make_is_refused(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("mine")
    (home / "rtl").mkdir()  # the rtl step would replace a folder of this name
    assert_refused(lambda: check_folders(home, tmp_path / "package", replace_package=False),
                   "holds files (.bashrc, rtl) but no pipeline/state.json")
    assert_refused(lambda: check_folders(home / ".bashrc", tmp_path / "package", replace_package=False), "is a file")


@pytest.mark.parametrize("output, package", [("package/prj", "package"), ("package", "package"),
                                             ("prj", "prj/package")])
def test_folders_inside_one_another_are_refused(tmp_path, output, package):
    assert_refused(lambda: check_folders(tmp_path / output, tmp_path / package, replace_package=False),
                   "lie inside one another")


def test_buildmodel_refuses_before_any_step(tmp_path):
    """Through the command: a stranger's manifest.json, and an --output-dir inside the package."""
    foreign = tmp_path / "package"
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"build_id": "mine"}')
    (foreign / "data.csv").write_text("precious")
    before = snapshot(tmp_path)
    for args, fragment in ((["--to", "package"], "is not a manifest of this tool"),
                           (["--output-dir", "package/prj"], "lie inside one another")):
        result = run_buildmodel(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], result.stderr
        assert snapshot(tmp_path) == before  # untouched, and no step ran (no hls4ml_prj_pynq/)


# --------------------------------------------------------------------------- contract


def test_a_package_under_a_linked_folder_verifies(tmp_path):
    """Links above the package (a home on another disk) are not the package's files escaping it."""
    make_package(tmp_path / "disk")
    (tmp_path / "home").symlink_to(tmp_path / "disk")
    package = tmp_path / "home" / "package"
    manifest = contract.read_manifest(package)
    assert contract.verify(package, manifest) == [] and contract.strangers(package, manifest) == []
