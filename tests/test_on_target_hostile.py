"""on_target.py in a package someone else had their hands on (issue 27).

Nothing runs that was not checked (planted bytecode and modules, on every Python 3.8-3.12 this
machine has), the result pair is never split, no name reaches the terminal raw, and a bad
setting of the emulated board is a usage error. Each test works on a copy of the session's real
package and runs on_target.py as a user does, in a subprocess, unless it only checks a message.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import REPO
from iris_fpga.errors import ExitCode
from iris_fpga.fileio import sha256_file
from test_on_target import IN_PROCESS, assert_failed, edit_manifest, ok, on_target, package, run, source  # noqa: F401

VERSIONS = ["3.8", "3.9", "3.10", "3.11", "3.12"]
# Escape sequences a file name can carry: set the title, clear the screen, the C1 CSI, reverse the text.
HOSTILE_NAMES = ["\x1b]0;owned\x07", "\x1b[2J", "\x9b31m", "\u202egnp"]
MARKER_SOURCE = "open({marker!r}, 'a').write({what!r} + '\\n')\n"


@functools.lru_cache(maxsize=None)
def interpreter(version: str):
    """(path, has numpy) of a working Python ``version`` on this machine, one with numpy first; or None."""
    candidates = [sys.executable] if "%d.%d" % sys.version_info[:2] == version else []
    candidates.append(str(REPO / ".venv-board" / version / "bin" / "python"))  # `make board-pythons`
    candidates += sorted(str(p) for p in Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))
    candidates += [shutil.which(f"python{version}"), f"/usr/bin/python{version}"]  # pyenv shims may not work
    found = None
    for candidate in dict.fromkeys(c for c in candidates if c and os.access(c, os.X_OK)):
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode or probe.stdout.strip() != version:
            continue
        if subprocess.run([candidate, "-c", "import numpy"], capture_output=True).returncode == 0:
            return candidate, True
        found = found or (candidate, False)
    return found


@pytest.fixture(params=VERSIONS)
def python(request) -> SimpleNamespace:
    found = interpreter(request.param)
    if found is None:
        pytest.skip(f"no Python {request.param} on this machine")
    return SimpleNamespace(version=request.param, path=found[0], numpy=found[1])


def needs_numpy(python) -> None:
    if not python.numpy:
        pytest.skip(f"Python {python.version} ({python.path}) has no numpy (`make board-pythons` gives it one): "
                    "the board script stops at 'numpy is not installed' (exit 4) before it loads the driver or "
                    "the stand-in")


def plant_bytecode(python, folder: Path, module: str, source: str) -> Path:
    """An unchecked-hash .pyc of ``source`` for ``module``, as ``python`` would cache it in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = ("import py_compile, sys, pathlib\n"
              "src, folder, module = sys.argv[1:]\n"
              "target = pathlib.Path(folder, module + '.' + sys.implementation.cache_tag + '.pyc')\n"
              "py_compile.compile(src, cfile=str(target), doraise=True,\n"
              "                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
              "print(target)\n")
    src = folder.parent / f".{module}-planted-source.py"
    src.write_text(source)
    try:
        made = subprocess.run([python.path, "-c", script, str(src), str(folder), module], capture_output=True,
                              text=True, check=True)
    finally:
        src.unlink()
    return Path(made.stdout.strip())


def snapshot(folder: Path) -> dict:
    """Every entry below ``folder`` (links not followed) with its bytes, for files."""
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            entries[path.relative_to(folder).as_posix()] = path.read_bytes() if path.is_file() \
                and not path.is_symlink() else None
    return entries


def assert_ran_unharmed(result, pkg: Path, before: dict, marker: Path) -> None:
    """The run worked, computed the C-simulation's outputs, ran nothing planted and wrote no bytecode."""
    ok(result)
    assert not marker.exists(), f"planted code ran: {marker.read_text()}"
    assert np.array_equal(np.load(pkg / "y_hw.npy"), np.load(pkg / "y_hls.npy"))
    after = snapshot(pkg)
    assert {k: v for k, v in after.items() if k not in ("y_hw.npy", "y_hw.json")} == before


# --------------------------------------------------------------------------- nothing runs that was not checked


PLANTED_BYTECODE = {  # where: (folder of the cache, relative to the package, module)
    "driver": ("__pycache__", "axi_stream_driver"),
    "stand-in pynq": ("emulation/pynq/__pycache__", "__init__"),
}


@pytest.mark.parametrize("where", [*PLANTED_BYTECODE, "__pycache__ linked outside"])
def test_planted_bytecode_never_runs(package, tmp_path, python, where):
    """An unchecked-hash .pyc beside a checked file would run instead of it under Python's import."""
    needs_numpy(python)
    marker = tmp_path / "marker"
    evil = MARKER_SOURCE.format(marker=str(marker), what=where) + "raise SystemExit(0)\n"
    if where in PLANTED_BYTECODE:
        folder, module = PLANTED_BYTECODE[where]
        plant_bytecode(python, package / folder, module, evil)
    else:
        outside = tmp_path / "outside-cache"
        for module in ("axi_stream_driver", "on_target"):
            plant_bytecode(python, outside, module, evil)
        (package / "__pycache__").symlink_to(outside, target_is_directory=True)
    before = snapshot(package)
    result = run(package, "--emulate", python=python.path)
    assert_ran_unharmed(result, package, before, marker)
    assert json.loads((package / "y_hw.json").read_text())["python"].startswith(python.version)


def test_planted_modules_beside_the_script_never_run(package, tmp_path, python):
    """statistics.py and numpy.py would be imported from the script's folder; __future__.py at a
    `from __future__` import, which on_target.py therefore has none of."""
    marker = tmp_path / "marker"
    for module in ("statistics", "numpy", "__future__", "types"):
        (package / f"{module}.py").write_text(MARKER_SOURCE.format(marker=str(marker), what=module))
    before = snapshot(package)
    result = run(package, "--emulate", python=python.path)
    if python.numpy:
        assert_ran_unharmed(result, package, before, marker)
    else:  # the planted numpy.py would have passed for numpy: the run stops where numpy is missing
        assert_failed(result, ExitCode.BOARD, "numpy is not installed", package)
        assert not marker.exists(), f"planted code ran: {marker.read_text()}"


def test_a_driver_the_manifest_does_not_list_is_not_run(package):
    manifest = json.loads((package / "manifest.json").read_text())
    del manifest["files"]["axi_stream_driver.py"]
    (package / "manifest.json").write_text(json.dumps(manifest))
    assert_failed(run(package, "--emulate"), ExitCode.USAGE,
                  "axi_stream_driver.py is not a file manifest.json lists, so it is not run", package)


# --------------------------------------------------------------------------- the result pair


def test_the_result_pair_is_never_split(package):
    """Another input's outputs go to another pair; a name that is not .npy is refused."""
    ok(run(package, "--emulate"))
    pair = {name: (package / name).read_bytes() for name in ("y_hw.npy", "y_hw.json")}
    x = np.load(package / "X_test.npy")
    np.save(package / "other.npy", x[::-1].copy())

    result = run(package, "--emulate", "--input", "other.npy", "--output", "y_hw.txt")
    assert result.returncode == ExitCode.USAGE and "is not a .npy file name" in result.stderr
    assert {name: (package / name).read_bytes() for name in pair} == pair

    ok(run(package, "--emulate", "--input", "other.npy", "--output", "other_hw.npy"))
    assert {name: (package / name).read_bytes() for name in pair} == pair
    record = json.loads((package / "other_hw.json").read_text())
    assert record["output_sha256"] == sha256_file(package / "other_hw.npy")
    assert record["input"] == "other.npy" and record["output"] == "other_hw.npy"
    assert np.array_equal(np.load(package / "other_hw.npy"), np.load(package / "y_hls.npy")[::-1])

    ok(run(package, "--emulate", "--input", "other.npy"))  # the default pair, both replaced
    record = json.loads((package / "y_hw.json").read_text())
    assert record["input"] == "other.npy"
    assert record["output_sha256"] == hashlib.sha256((package / "y_hw.npy").read_bytes()).hexdigest()


@IN_PROCESS
@given(name=st.text(max_size=12).filter(lambda n: not n.endswith(".npy")))
def test_an_output_that_is_not_npy_is_refused(on_target, name):  # noqa: F811
    module = on_target.module
    with pytest.raises(module.TargetError, match="is not a .npy file name") as raised:
        module.parse_args(["--output=" + name])
    assert raised.value.code == ExitCode.USAGE


# --------------------------------------------------------------------------- names reach the terminal escaped


def raw_controls(text: str) -> list[str]:
    return [c for c in text if not c.isprintable() and c != "\n"]


@pytest.mark.parametrize("hostile", HOSTILE_NAMES, ids=["OSC title", "clear screen", "C1 CSI", "RLO"])
def test_names_from_arguments_and_files_are_printed_escaped(package, hostile):
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in hostile)
    np.save(package / f"in{hostile}.npy", np.load(package / "X_test.npy"))

    result = ok(run(package, "--emulate", "--input", f"in{hostile}.npy", "--output", f"out{hostile}.npy"))
    assert not raw_controls(result.stdout + result.stderr) and f"saved out{shown}.npy" in result.stdout
    assert (package / f"out{hostile}.json").exists()

    result = run(package, "--emulate", "--input", f"missing{hostile}.npy", "--output", "x.npy")
    assert result.returncode == ExitCode.USAGE and not raw_controls(result.stderr)
    assert f"missing{shown}.npy" in result.stderr

    (package / "emulation" / f"stray{hostile}.py").write_text("")
    result = run(package, "--emulate", "--output", "y.npy")
    assert result.returncode == ExitCode.USAGE and not raw_controls(result.stderr)
    assert f"emulation/stray{shown}.py is not a file manifest.json lists" in result.stderr


HOSTILE_TEXT = st.text(alphabet=st.one_of(st.sampled_from("".join(HOSTILE_NAMES) + "\n\r\x00"), st.characters()),
                       min_size=1, max_size=16)


@IN_PROCESS
@given(name=HOSTILE_TEXT, option=st.sampled_from(["--input", "--bitfile", "--output-folder"]))
def test_any_name_in_an_error_is_escaped(package, on_target, name, option):  # noqa: F811
    name = "missing-" + name.replace("/", "_").replace("\x00", "_")  # a file name that is not there
    args = {"--input": ["--input", name + ".npy"], "--bitfile": ["--bitfile", name + ".bit"],
            "--output-folder": ["--output", f"{name}/y.npy"]}[option]
    result = on_target("--emulate", *args)
    assert result.returncode == ExitCode.USAGE and not raw_controls(result.stdout + result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1


def test_text_from_the_manifest_is_escaped(package, on_target):  # noqa: F811
    edit_manifest(package, input_type="ap_fixed<16,6>\x1b[2J\x9b\u202e")
    result = on_target("--emulate")
    assert result.returncode == ExitCode.USAGE and not raw_controls(result.stderr)
    assert "input_type" in result.stderr


# --------------------------------------------------------------------------- exit codes of the emulated board


@pytest.mark.parametrize("setting, value", [
    ("PYNQ_EMULATION_MAX_TRANSFER", "abc"), ("PYNQ_EMULATION_MAX_TRANSFER", "-5"),
    ("PYNQ_EMULATION_MAX_TRANSFER", "0"), ("PYNQ_EMULATION_MAX_TRANSFER", str(1 << 26)),
    ("PYNQ_EMULATION_PAUSES", "abc"), ("PYNQ_EMULATION_PAUSES", "-1"), ("PYNQ_EMULATION_PAUSES", str(1 << 64)),
])
def test_a_bad_emulation_setting_is_a_usage_error(package, setting, value):
    result = run(package, "--emulate", env={setting: value})
    assert_failed(result, ExitCode.USAGE, f"{setting}=", package)


def _accelerator_json(pkg: Path, change) -> None:
    """Change emulation/accelerator.json and list its new sha256, as a package of another build would."""
    path = pkg / "emulation" / "accelerator.json"
    path.write_text(change(path.read_text()))
    edit_manifest(pkg, files={"emulation/accelerator.json": sha256_file(path)})


def test_an_rtl_package_emulating_the_csim_is_a_usage_error(package):
    """An rtl package's accelerator.json lists no weights: saying csim, it could not load (it was exit 4)."""
    def as_rtl_package_saying_csim(text):
        record = json.loads(text)
        del record["weights"]
        return json.dumps(dict(record, emulated="csim"))

    _accelerator_json(package, as_rtl_package_saying_csim)
    edit_manifest(package, accelerator="rtl")
    assert_failed(run(package, "--emulate"), ExitCode.USAGE,
                  "manifest.json says the accelerator is rtl but emulation/ emulates csim", package)


def test_an_unreadable_accelerator_json_is_a_usage_error(package):
    _accelerator_json(package, lambda text: "[" * 5000)
    assert_failed(run(package, "--emulate"), ExitCode.USAGE, "cannot read", package)
