"""utilities/validate_model.py: every verdict and every kind of unusable input.

The package under test is synthetic (``make_package``: tiny arrays, a manifest of the contract's
fields written through fileio), so these tests need no training; one end-to-end test validates
the session's real ``built`` package after an emulated run. y_hw.npy / y_hw.json are crafted from
y_hls.npy as on_target.py writes them, or altered to make each verdict and each bad input. Files
the manifest lists are rehashed after a change unless the change itself is the point, so that each
case reaches the check it is about.
"""
from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numpy.lib import format as npy_format

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # also when pytest runs from another folder
    sys.path.insert(0, str(REPO))

from iris_fpga import contract, validation  # noqa: E402
from iris_fpga.validation import records  # noqa: E402
from iris_fpga.fileio import MAX_JSON_DEPTH, atomic_save_npy, atomic_write_bytes, atomic_write_json, sha256_file  # noqa: E402

SCRIPT = REPO / "utilities" / "validate_model.py"
CLASSES = np.array(["setosa", "versicolor", "virginica"])
N_SAMPLES, N_FEATURES = 30, 4
BUILD_ID = "0123456789abcdef"


# ------------------------------------------------------------------------------------ fixtures
def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def make_package(dest: Path, seed: int = 0) -> Path:
    """A package as the package step leaves it, for validation: data, C-sim and Keras outputs
    (C-sim right on every sample, Keras close to it), scaler.json, and a manifest listing them."""
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True)
    labels = rng.permutation(np.arange(N_SAMPLES) % len(CLASSES))
    y_test = np.eye(len(CLASSES), dtype=np.float32)[labels]
    logits = rng.normal(size=y_test.shape) + 4 * y_test
    arrays = {
        "X_test.npy": rng.normal(size=(N_SAMPLES, N_FEATURES)).astype(np.float32),
        "y_test.npy": y_test,
        "classes.npy": CLASSES,
        "y_hls.npy": _softmax(logits),
        "y_keras.npy": _softmax(logits + rng.normal(scale=0.1, size=logits.shape)),
    }
    for name, array in arrays.items():
        atomic_save_npy(dest / name, array)
    atomic_write_json(dest / "scaler.json", {"mean": [5.8, 3.0, 3.8, 1.2], "scale": [0.8, 0.4, 1.8, 0.8]})
    listed = (*contract.DATA_FILES, *contract.CSIM_FILES)
    atomic_write_json(dest / contract.MANIFEST, {
        "build_id": BUILD_ID, "created": "2026-11-25T06:00:00+00:00", "settings": {"seed": seed},
        "versions": {"numpy": np.__version__}, "files": {n: sha256_file(dest / n) for n in listed},
        "dataset": {"name": "iris", "features": ["a", "b", "c", "d"], "classes": CLASSES.tolist()},
    })
    return dest


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return make_package(tmp_path_factory.mktemp("synthetic") / "package")


@pytest.fixture
def pkg(tmp_path, synthetic) -> Path:
    dest = tmp_path / "package"
    shutil.copytree(synthetic, dest)
    return dest


def _manifest(pkg: Path) -> dict:
    return json.loads((pkg / "manifest.json").read_text())


def _rehash(pkg: Path, *names: str) -> None:
    """Keep manifest.json's hashes of ``names`` (default: every listed regular file) in step."""
    manifest = _manifest(pkg)
    for name in names or list(manifest["files"]):
        path = pkg / name
        if path.is_file() and not path.is_symlink():
            manifest["files"][name] = sha256_file(path)
    atomic_write_json(pkg / "manifest.json", manifest)


def _save(pkg: Path, name: str, array, rehash: bool = True) -> None:
    """Write an array as the pipeline would; keep manifest.json's hash in step if it lists it."""
    np.save(pkg / name, np.asarray(array), allow_pickle=False)
    if rehash and name in _manifest(pkg)["files"]:
        _rehash(pkg, name)


def _add_hw(pkg: Path, y_hw=None, mode: str = "emulation", build_id: str | None = None, **extra):
    """What on_target.py leaves behind: y_hw.npy and its record."""
    y_hw = np.load(pkg / "y_hls.npy") if y_hw is None else y_hw
    np.save(pkg / "y_hw.npy", np.asarray(y_hw, dtype=np.float32), allow_pickle=False)
    record = {
        "build_id": build_id or _manifest(pkg)["build_id"], "mode": mode,
        "pynq_version": "3.0.1" if mode == "board" else None, "samples": len(y_hw),
        "batch_latency_s": {"min": 4.1e-4, "median": 4.4e-4},
        "throughput_sps": {"max": 73000.0, "median": 68000.0}, "repeat": 5,
        "date": "2026-11-25T06:00:00+00:00", "bitfile": "hls4ml_nn.bit" if mode == "board" else None,
        "argv": ["on_target.py"] + (["--emulate"] if mode == "emulation" else []),
    }
    record["output_sha256"] = sha256_file(pkg / "y_hw.npy")
    record.update(extra)
    (pkg / "y_hw.json").write_text(json.dumps(record))


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def run_json(*args) -> tuple[int, dict]:
    proc = run(*args, "--json")
    assert proc.stderr == ""
    return proc.returncode, json.loads(proc.stdout)


def check(doc: dict, name: str) -> dict:
    return next(c for c in doc["checks"] if c["name"] == name)


# ------------------------------------------------------------------------------------ verdicts
def test_pass_with_hardware_from_emulation(pkg):
    _add_hw(pkg, mode="emulation")
    proc = run(pkg)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Verdict: PASS (exit 0)" in out
    assert "emulation" in out and "matches manifest.json" in out
    n = len(np.load(pkg / "y_test.npy"))
    assert f"{n}/{n} samples agree" in out
    assert "Data set: iris\n" in out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("true \\ predicted"))
    assert header.split()[3:] == CLASSES.tolist()  # confusion matrix labelled with class names

    code, doc = run_json(pkg)
    assert code == 0 and doc["verdict"] == "pass" and doc["dataset"] == {"name": "iris"}
    assert set(doc["sources"]) == {"keras", "csim", "hardware"}
    hw = next(a for a in doc["agreement"] if a["a"] == "hardware")
    assert hw["max_abs_diff"] == 0.0 and hw["class_agreement"] == n and hw["checked"]
    keras = next(a for a in doc["agreement"] if a["a"] == "keras")
    assert not keras["checked"]  # Keras vs C-sim is reported, never a failure
    for src in doc["sources"].values():
        assert sum(map(sum, src["confusion"])) == n
        assert src["correct"] == sum(src["confusion"][i][i] for i in range(len(CLASSES)))


def _set_dataset(pkg: Path, dataset) -> None:
    """The manifest's ``dataset`` replaced (None: removed, as in a manifest from before data sets)."""
    manifest = _manifest(pkg)
    manifest["dataset"] = dataset
    if dataset is None:
        del manifest["dataset"]
    atomic_write_json(pkg / "manifest.json", manifest)


def test_the_report_names_a_table_and_an_unknown_data_set(pkg, tmp_path):
    digest = "ab" * 32
    _set_dataset(pkg, {"name": "csv", "sha256": digest, "target": "kind", "features": ["x"], "classes": []})
    page = tmp_path / "page.html"
    code, out, err = run_here(pkg, "--html", page)
    assert code == 0 and err == ""
    assert "Data set: a CSV table (labels in column 'kind', sha256 abababababababab...)" in out
    assert "Data set: a CSV table (labels in column &#x27;kind&#x27;" in page.read_text()
    code, doc = run_json(pkg)
    assert doc["dataset"] == {"name": "csv", "target": "kind", "sha256": digest}
    _set_dataset(pkg, None)
    code, out, err = run_here(pkg)
    assert code == 0 and "Data set: unknown (manifest.json absent or without a dataset)" in out
    assert run_json(pkg)[1]["dataset"] is None


def test_board_mode_and_min_accuracy_at_the_boundary(pkg):
    _add_hw(pkg, mode="board")
    code, doc = run_json(pkg)
    lowest = min(s["accuracy"] for s in doc["sources"].values())
    proc = run(pkg, "--min-accuracy", repr(lowest))
    assert proc.returncode == 0, proc.stdout
    assert "from board (measured on the FPGA)" in proc.stdout and "pynq 3.0.1" in proc.stdout


def test_hardware_absent_reports_software_and_says_how(pkg):
    proc = run(pkg)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no y_hw.npy" in proc.stdout
    assert "on_target.py --emulate" in proc.stdout and "on the board" in proc.stdout
    assert "Keras" in proc.stdout and "HLS C-sim" in proc.stdout
    code, doc = run_json(pkg)
    assert code == 0 and not doc["hardware"]["present"]
    assert "on_target.py --emulate" in doc["hardware"]["how_to_get"]
    assert set(doc["sources"]) == {"keras", "csim"}


def test_class_disagreement_fails(pkg):
    y = np.load(pkg / "y_hls.npy").copy()
    top, low = int(y[0].argmax()), int(y[0].argmin())
    y[0, [top, low]] = y[0, [low, top]]  # sample 0: the FPGA answers another class
    _add_hw(pkg, y, mode="board")
    proc = run(pkg)
    assert proc.returncode == 1
    assert "FAIL  hardware vs HLS C-sim classes" in proc.stdout
    assert "Verdict: FAIL (exit 1)" in proc.stdout
    code, doc = run_json(pkg)
    assert code == 1
    hw = next(a for a in doc["agreement"] if a["a"] == "hardware")
    assert hw["disagreeing_samples"] == [0]
    wrong = [m for m in doc["misclassified"] if m["index"] == 0]
    assert wrong and not wrong[0]["answers"]["hardware"]["correct"]
    assert len(wrong[0]["features"]) == np.load(pkg / "X_test.npy").shape[1]


def test_probability_difference_beyond_tolerance_fails(pkg):
    y = np.load(pkg / "y_hls.npy") * np.float32(0.999)  # same classes, different values
    _add_hw(pkg, y)
    code, doc = run_json(pkg)
    assert code == 1
    assert check(doc, "hardware vs HLS C-sim classes")["status"] == "pass"
    assert check(doc, "hardware vs HLS C-sim probabilities")["status"] == "fail"
    assert run(pkg, "--tolerance", "0.01").returncode == 0


def test_low_accuracy_fails(pkg):
    y_test = np.load(pkg / "y_test.npy")
    y_hls = np.load(pkg / "y_hls.npy")
    i = 0
    wrong_class = (int(y_hls[i].argmax()) + 1) % y_test.shape[1]
    y_test[i] = np.eye(y_test.shape[1], dtype=y_test.dtype)[wrong_class]  # a worse model's view
    _save(pkg, "y_test.npy", y_test)
    _add_hw(pkg)
    assert run(pkg).returncode == 0  # no minimum asked for
    proc = run(pkg, "--min-accuracy", "1")
    assert proc.returncode == 1
    assert "FAIL  accuracy HLS C-sim" in proc.stdout
    assert "PASS  hardware vs HLS C-sim classes" in proc.stdout
    code, doc = run_json(pkg, "--min-accuracy", "1")
    assert code == 1 and any(m["index"] == i for m in doc["misclassified"])


def test_build_id_mismatch_fails_without_comparing(pkg):
    _add_hw(pkg, build_id="ffffffffffffffff")
    proc = run(pkg)
    assert proc.returncode == 1
    assert "ffffffffffffffff" in proc.stdout and "FAIL  build id" in proc.stdout
    code, doc = run_json(pkg)
    assert code == 1
    assert doc["hardware"]["build_id_matches"] is False and doc["hardware"]["compared"] is False
    assert "hardware" not in doc["sources"]
    assert all(a["a"] != "hardware" for a in doc["agreement"])


@pytest.mark.parametrize("split", ["array replaced", "record of another array", "record of another run"])
def test_a_split_pair_fails_without_comparing(pkg, tmp_path, split):
    """y_hw.npy must be the array its y_hw.json names (output_sha256): else exit 1, not compared."""
    _add_hw(pkg)
    y_hls = np.load(pkg / "y_hls.npy")
    if split == "array replaced":  # same classes, so only the checksum tells
        np.save(pkg / "y_hw.npy", (y_hls * 0.5).astype(np.float32), allow_pickle=False)
    elif split == "record of another array":
        _add_hw(pkg, output_sha256="0" * 64)
    else:  # on_target.py --output other.npy replaced the record and left the array
        other = tmp_path / "other"
        other.mkdir()
        np.save(other / "y_hw.npy", y_hls[::-1].copy(), allow_pickle=False)
        record = json.loads((pkg / "y_hw.json").read_text())
        (pkg / "y_hw.json").write_text(json.dumps({**record, "output_sha256": sha256_file(other / "y_hw.npy")}))
    proc = run(pkg)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [line for line in proc.stdout.splitlines() if line.startswith("  FAIL")]
    assert len(failed) == 1 and "y_hw pair" in failed[0] and "split" in failed[0], proc.stdout
    code, doc = run_json(pkg)
    assert code == 1 and doc["hardware"]["compared"] is False and "hardware" not in doc["sources"]


def test_the_pair_passes_when_whole(pkg):
    _add_hw(pkg)
    code, doc = run_json(pkg)
    assert code == 0 and check(doc, "y_hw pair")["status"] == "pass" and doc["hardware"]["compared"] is True


def test_a_y_test_too_wide_for_its_classes_is_refused_before_any_arithmetic(pkg):
    """(30, 400000) is inside the element cap; its confusion matrix (400000^2) is not: exit 2."""
    labels = np.load(pkg / "y_test.npy").argmax(axis=1)
    wide = np.zeros((len(labels), 400_000), dtype=np.float32)
    wide[np.arange(len(labels)), labels] = 1
    for name in ("y_test.npy", "y_hls.npy", "y_keras.npy"):
        np.save(pkg / name, wide, allow_pickle=False)
    np.save(pkg / "classes.npy", np.array([f"c{i}" for i in range(400_000)]), allow_pickle=False)
    (pkg / "manifest.json").unlink()
    proc = subprocess.run(f"ulimit -v 3000000; exec {shlex.quote(sys.executable)} {shlex.quote(str(SCRIPT))} "
                          f"{shlex.quote(str(pkg))}", shell=True, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "400000 classes, more than the 1000" in proc.stderr


def test_y_test_columns_must_match_the_manifests_n_out(pkg):
    manifest = _manifest(pkg)
    atomic_write_json(pkg / "manifest.json", {**manifest, "n_out": 4})
    proc = run(pkg)
    assert proc.returncode == 2 and "n_out" in proc.stderr and proc.stderr.count("\n") == 1


def _package_state(pkg: Path) -> dict:
    return {p.relative_to(pkg).as_posix(): sha256_file(p) for p in sorted(pkg.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["--html manifest", "--html new file", "--plot package", "--plot subfolder",
                                   "--html through a link", "--plot through a link", "--html link in package"])
def test_outputs_into_the_package_are_refused(pkg, tmp_path, where):
    """Nothing validation writes may land in the package it checks (links resolved first)."""
    _add_hw(pkg)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "to-package").symlink_to(pkg)
    args = {
        "--html manifest": ["--html", pkg / "manifest.json"],
        "--html new file": ["--html", pkg / "report.html"],
        "--plot package": ["--plot", pkg],
        "--plot subfolder": ["--plot", pkg / "figures"],
        "--html through a link": ["--html", tmp_path / "to-package" / "y_hw.json"],
        "--plot through a link": ["--plot", tmp_path / "to-package"],
        "--html link in package": ["--html", pkg / "out.html"],
    }[where]
    if where == "--html link in package":
        (pkg / "out.html").symlink_to(tmp_path / "elsewhere" / "out.html")
    before = _package_state(pkg)
    proc = run(pkg, *args)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "lies in the package folder" in proc.stderr
    assert _package_state(pkg) == before and not (pkg / "figures").exists()
    assert not (tmp_path / "elsewhere" / "out.html").exists()


def test_outputs_beside_the_package_are_written(pkg, tmp_path):
    proc = run(pkg, "--html", tmp_path / "package.html", "--plot", tmp_path / "package-figures")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "package.html").is_file() and (tmp_path / "package-figures" / "confusion.png").is_file()


def test_a_linked_package_folder_is_refused(pkg, tmp_path):
    """Refuse links, as the build refuses a linked --package-dir: validation checks the folder named."""
    (tmp_path / "link").symlink_to(pkg)
    proc = run(tmp_path / "link")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "is a symbolic link" in proc.stderr


def test_plots_are_written(pkg, tmp_path):
    _add_hw(pkg)
    out = tmp_path / "figs" / "sub"
    proc = run(pkg, "--plot", out)
    assert proc.returncode == 0, proc.stderr
    for name in ("confusion.png", "probabilities.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_hardware_estimate_headline_shown_and_optional(pkg):
    estimate = {
        "headline": "RTL: 5 cycles, II 1, 9,378 LUT (17.6%): fits the xc7z020; bit-exact 30/30 test",
        "fits": True,
        "what_was_estimated": "The trained network as a fully parallel datapath, before place and route.",
    }
    (pkg / "hardware_estimate.json").write_text(json.dumps(estimate))
    proc = run(pkg)
    assert proc.returncode == 0
    assert estimate["headline"] in proc.stdout and estimate["what_was_estimated"] in proc.stdout
    (pkg / "hardware_estimate.json").write_text("{truncated")
    proc = run(pkg)
    assert proc.returncode == 0 and "hardware_estimate.json ignored" in proc.stdout


def test_script_imports_no_tensorflow(pkg):
    code = (
        f"import sys; sys.path.insert(0, {str(SCRIPT.parent)!r}); import validate_model; "
        f"rc = validate_model.main([{str(pkg)!r}, '--json']); "
        "bad = [m for m in ('tensorflow', 'hls4ml', 'qkeras', 'tf_keras', 'matplotlib') "
        "if m in sys.modules]; sys.exit(3 if bad else rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------------- bad input
def _rm(name):
    return lambda pkg: (pkg / name).unlink()


def _truncate(name, keep):
    def f(pkg):
        data = (pkg / name).read_bytes()
        (pkg / name).write_bytes(data[: keep if keep >= 0 else len(data) // 2])
        _rehash(pkg, name)
    return f


def _write(name, data: bytes):
    """Replace a listed file's bytes, as a faulty step would (the manifest lists the new hash)."""
    def f(pkg):
        (pkg / name).write_bytes(data)
        _rehash(pkg, name)
    return f


def _modify(name, fn, rehash=True):
    return lambda pkg: _save(pkg, name, fn(np.load(pkg / name)), rehash=rehash)


def _with_nan(a):
    a = a.astype(np.float32)
    a[1, 1] = np.nan
    return a


def _with_inf(a):
    a = a.astype(np.float32)
    a[2, 0] = np.inf
    return a


def _object_array(pkg):
    np.save(pkg / "y_keras.npy", np.array([{"p": 1}] * 3, dtype=object), allow_pickle=True)
    _rehash(pkg, "y_keras.npy")


def _empty(pkg):
    for name in ("X_test.npy", "y_test.npy", "y_keras.npy", "y_hls.npy"):
        a = np.load(pkg / name)
        np.save(pkg / name, a[:0])
    _rehash(pkg)


def _hw(fn):
    def f(pkg):
        _add_hw(pkg)
        fn(pkg)
    return f


def _hw_json(text):
    return _hw(lambda pkg: (pkg / "y_hw.json").write_text(text))


BAD_INPUT = {
    "missing X_test": (_rm("X_test.npy"), ["X_test.npy", "data step"]),
    "missing y_test": (_rm("y_test.npy"), ["y_test.npy", "data step"]),
    "missing classes": (_rm("classes.npy"), ["classes.npy", "data step"]),
    "missing y_keras": (_rm("y_keras.npy"), ["y_keras.npy", "csim step"]),
    "missing y_hls": (_rm("y_hls.npy"), ["y_hls.npy", "csim step"]),
    "y_hw without record": (_hw(_rm("y_hw.json")), ["y_hw.json", "on_target.py"]),
    "y_hw without manifest": (_hw(_rm("manifest.json")), ["manifest.json", "package step"]),
    "rows differ y_hls": (_modify("y_hls.npy", lambda a: a[:-1]), ["lengths differ", "y_hls.npy"]),
    "rows differ X_test": (_modify("X_test.npy", lambda a: a[1:]), ["lengths differ", "X_test"]),
    "rows differ y_hw": (_hw(_modify("y_hw.npy", lambda a: a[:-2])), ["lengths differ", "y_hw"]),
    "y_hls 1-D": (_modify("y_hls.npy", lambda a: a.argmax(1)), ["y_hls.npy", "shape"]),
    "y_hls extra column": (_modify("y_hls.npy", lambda a: np.hstack([a, a[:, :1]])),
                           ["y_hls.npy", "shape"]),
    "X_test 1-D": (_modify("X_test.npy", lambda a: a.ravel()), ["X_test.npy", "shape"]),
    "classes count": (lambda pkg: _save(pkg, "classes.npy", CLASSES[:2]),
                      ["classes.npy", "2 classes"]),
    "classes numeric": (lambda pkg: _save(pkg, "classes.npy", np.arange(3)),
                        ["classes.npy", "class names"]),
    "y_test not one-hot": (_modify("y_test.npy", lambda a: a * 0.5), ["not one-hot"]),
    "NaN in y_hls": (_modify("y_hls.npy", _with_nan), ["y_hls.npy", "NaN"]),
    "inf in X_test": (_modify("X_test.npy", _with_inf), ["X_test.npy", "inf"]),
    "NaN in y_hw": (_hw(_modify("y_hw.npy", _with_nan)), ["y_hw.npy", "NaN"]),
    "strings in y_hls": (_modify("y_hls.npy", lambda a: a.astype(str)), ["not numeric"]),
    "truncated data": (_truncate("y_hls.npy", -1), ["y_hls.npy", "truncated"]),
    "truncated header": (_truncate("X_test.npy", 40), ["X_test.npy", "truncated"]),
    "empty file": (_truncate("y_keras.npy", 0), ["y_keras.npy", "not a .npy"]),
    "text file": (_write("y_test.npy", b"1,0,0\n"),
                  ["y_test.npy", "not a .npy"]),
    "object array": (_object_array, ["y_keras.npy", "object array"]),
    "empty test set": (_empty, ["empty test set"]),
    "y_hw.json not JSON": (_hw_json("{'build_id': "), ["y_hw.json", "not valid JSON"]),
    "y_hw.json bad mode": (_hw(lambda pkg: _add_hw(pkg, mode="fpga")), ["mode", "fpga"]),
    "y_hw.json samples": (_hw(lambda pkg: _add_hw(pkg, samples=7)), ["7 samples"]),
    "manifest not JSON": (lambda pkg: (pkg / "manifest.json").write_text("[1, 2"),
                          ["manifest.json", "JSON"]),
    "dataset not an object": (lambda pkg: _set_dataset(pkg, ["iris"]),
                              ["manifest.json's dataset", "not a JSON object"]),
    "dataset without name": (lambda pkg: _set_dataset(pkg, {"classes": []}), ["manifest.json's dataset", "'name'"]),
    "dataset bad sha256": (lambda pkg: _set_dataset(pkg, {"name": "csv", "sha256": "x" * 64}),
                           ["manifest.json's dataset", "'sha256'", "64 hex digits"]),
    "changed after package step": (_modify("y_keras.npy", lambda a: a[::-1].copy(), rehash=False),
                                   ["y_keras.npy", "changed after the package step"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(pkg, case):
    damage, words = BAD_INPUT[case]
    damage(pkg)
    for args in ([pkg], [pkg, "--json"]):
        proc = run(*args)
        assert proc.returncode == 2, (case, proc.stdout, proc.stderr)
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        for word in words:
            assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("args, word", [
    (["--tolerance", "-1"], "--tolerance"),
    (["--tolerance", "nan"], "--tolerance"),
    (["--tolerance", "abc"], "--tolerance"),
    (["--min-accuracy", "1.5"], "--min-accuracy"),
    (["--min-accuracy", "90"], "between 0 and 1"),
    (["--bogus"], "--bogus"),
    ([], "does not exist"),
])
def test_bad_options_are_one_line_and_exit_2(pkg, tmp_path, args, word):
    target = tmp_path / "nowhere" if not args else pkg
    proc = run(target, *args)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and word in lines[0], proc.stderr


def test_plot_folder_that_cannot_exist(pkg, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")  # a folder under a regular file cannot be made, even by root
    proc = run(pkg, "--plot", blocker / "figs")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot create plot folder")


# ---------------------------------------------------------------------------- library details
def test_tie_is_reported_as_a_warning(pkg):
    data = validation.load_package(pkg)
    data.predictions["csim"][0] = [0.5, 0.5, 0.0]
    report = validation.validate(data)
    assert any("tie" in w for w in report.data["warnings"])
    assert report.data["sources"]["csim"]["ties"] == [0]


# ------------------------------------------------------------- hostile files (issue 14), in-process
sys.path.insert(0, str(SCRIPT.parent))
import validate_model  # noqa: E402


def run_here(*args) -> tuple[int, str, str]:
    """validate_model.main in this process: the same code as the script, without its start-up."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = validate_model.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "7" * 5000


def _hw_raw(key: str, raw: str):
    """y_hw.json with the value of ``key`` replaced by raw JSON text."""
    def f(pkg):
        _add_hw(pkg, **{key: "@@"})
        path = pkg / "y_hw.json"
        path.write_text(path.read_text().replace('"@@"', raw))
    return f


def _listed_json(name: str, text: str):
    """``name`` written with ``text`` and listed in manifest.json, as a faulty step would."""
    def f(pkg):
        (pkg / name).write_text(text)
        manifest = _manifest(pkg)
        manifest["files"][name] = sha256_file(pkg / name)
        atomic_write_json(pkg / "manifest.json", manifest)
    return f


def _npy_claiming(name: str, shape: tuple):
    def f(pkg):
        fh = io.BytesIO()
        npy_format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": shape})
        atomic_write_bytes(pkg / name, fh.getvalue() + bytes(24))
        if name in _manifest(pkg)["files"]:
            _rehash(pkg, name)
    return f


def _replace(name: str, how: str, tmp: Path | None = None):
    """``name`` replaced by a link (inside, or outside to an identical copy), a FIFO or a folder."""
    def f(pkg):
        path = pkg / name
        if how == "link outside":
            outside = pkg.parent / ("outside-" + name)
            shutil.copyfile(path, outside)  # same bytes, same sha256: only the link is wrong
        path.unlink()
        if how == "link inside":
            path.symlink_to("y_hls.npy" if name != "y_hls.npy" else "y_keras.npy")
        elif how == "link outside":
            path.symlink_to(outside)
        elif how == "fifo":
            os.mkfifo(path)
        else:
            path.mkdir()
    return f


HOSTILE = {
    ".npy header claims (1e11, 3)": (_npy_claiming("y_test.npy", (10**11, 3)), ["y_test.npy", "(100000000000, 3)"]),
    "y_hw.npy header claims (1e11, 3)": (_hw(_npy_claiming("y_hw.npy", (10**11, 3))), ["y_hw.npy", "(100000000000, 3)"]),
    "mode is a list": (_hw_raw("mode", "[]"), ["y_hw.json", "'mode'", "[]"]),
    "date is a number": (_hw_raw("date", "5"), ["y_hw.json", "'date'"]),
    "pynq version is an object": (_hw_raw("pynq_version", '{"v": 3}'), ["y_hw.json", "'pynq_version'"]),
    "build id is null": (_hw_raw("build_id", "null"), ["y_hw.json", "'build_id'"]),
    "latency is text": (_hw_raw("batch_latency_s", '{"median": "fast"}'), ["y_hw.json", "'batch_latency_s'"]),
    "throughput is a list": (_hw_raw("throughput_sps", "[1, 2]"), ["y_hw.json", "'throughput_sps'"]),
    "samples is true": (_hw_raw("samples", "true"), ["y_hw.json", "'samples'"]),
    "latency overflows": (_hw_raw("batch_latency_s", '{"median": 1e999}'), ["y_hw.json", "out of range"]),
    "deep y_hw.json": (_hw(lambda pkg: (pkg / "y_hw.json").write_text(DEEP)), ["y_hw.json", "nests deeper"]),
    "deep manifest.json": (lambda pkg: (pkg / "manifest.json").write_text(DEEP), ["manifest.json", "JSON"]),
    "deep scaler.json": (_listed_json("scaler.json", DEEP), ["scaler.json", "nests deeper"]),
    "deep listed estimate": (_listed_json("hardware_estimate.json", DEEP), ["hardware_estimate.json", "nests deeper"]),
    "5,000-digit number in y_hw.json": (_hw_raw("samples", HUGE), ["y_hw.json", "digits"]),
    "5,000-digit number in manifest.json": (lambda pkg: (pkg / "manifest.json").write_text('{"created": ' + HUGE + "}"),
                                            ["manifest.json", "JSON"]),
    "5,000-digit number in scaler.json": (_listed_json("scaler.json", '{"mean": [' + HUGE + '], "scale": [1]}'),
                                          ["scaler.json", "digits"]),
    "scaler.json wrong length": (_listed_json("scaler.json", '{"mean": [1], "scale": [1]}'), ["scaler.json", "features"]),
    "non-string headline": (_listed_json("hardware_estimate.json", '{"headline": 5}'),
                            ["hardware_estimate.json", "'headline'"]),
    "non-string what_was_estimated": (_listed_json("hardware_estimate.json", '{"headline": "x", "what_was_estimated": []}'),
                                      ["hardware_estimate.json", "'what_was_estimated'"]),
    "class names as y_test.npy": (lambda pkg: _save(pkg, "y_test.npy", CLASSES), ["y_test.npy", "not numeric"]),
    "class indices as y_test.npy": (lambda pkg: _save(pkg, "y_test.npy", np.arange(N_SAMPLES) % 3),
                                    ["y_test.npy", "shape"]),
    "manifest files is a list": (lambda pkg: atomic_write_json(pkg / "manifest.json",
                                                               {**_manifest(pkg), "files": list(_manifest(pkg)["files"])}),
                                 ["manifest.json", "'files'"]),
    "listed file is a link inside": (_replace("X_test.npy", "link inside"), ["X_test.npy", "symbolic link"]),
    "listed file is a link outside": (_replace("y_keras.npy", "link outside"), ["y_keras.npy", "symbolic link"]),
    "listed file is a FIFO": (_replace("y_hls.npy", "fifo"), ["y_hls.npy", "not a regular file"]),
    "listed file is a folder": (_replace("classes.npy", "folder"), ["classes.npy", "not a regular file"]),
    "y_hw.npy is a link": (_hw(_replace("y_hw.npy", "link inside")), ["y_hw.npy", "symbolic link"]),
    "y_hw.json is a FIFO": (_hw(_replace("y_hw.json", "fifo")), ["y_hw.json", "not a regular file"]),
    "control characters in an error": (_hw_raw("mode", json.dumps("\x1b[2J\nPASS")), ["'mode'", "\\x1b[2J\\nPASS"]),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_file_is_one_line_and_exit_2_with_nothing_written(pkg, tmp_path, case):
    damage, words = HOSTILE[case]
    damage(pkg)
    figures = tmp_path / "figures"
    for args in ([pkg], [pkg, "--json", "--plot", figures]):
        code, out, err = run_here(*args)
        assert code == 2, (case, out, err)
        assert out == "" and not figures.exists()
        assert err.endswith("\n") and err[:-1].isprintable() and err.startswith("error: "), err
        for word in words:
            assert word in err, (word, err)


def test_strings_from_files_are_printed_escaped(pkg):
    hostile = "\x1b[2J\x1b[32m"
    _save(pkg, "classes.npy", np.array([f"setosa{hostile}", "versicolor\r  PASS  fake", "virginica\u202e"]))
    y = np.load(pkg / "y_hls.npy")
    y[0, [y[0].argmax(), y[0].argmin()]] = y[0, [y[0].argmin(), y[0].argmax()]]
    _add_hw(pkg, y, mode="board", date=f"2026{hostile}\nPASS  everything", pynq_version="3\x07",
            bitfile="hls4ml_nn.bit\x1b]0;title\x07")
    (pkg / "hardware_estimate.json").write_text(json.dumps({"headline": "fits\n\nVerdict: PASS (exit 0)"}))
    _set_dataset(pkg, {"name": f"iris{hostile}\nVerdict: PASS"})
    code, out, err = run_here(pkg)
    assert code == 1 and err == ""
    assert all(line.isprintable() for line in out.splitlines()) and "\r" not in out
    assert [line for line in out.splitlines() if line.startswith("Verdict:")] == ["Verdict: FAIL (exit 1)"]
    assert "fits\\n\\nVerdict: PASS (exit 0)" in out  # the headline's own lines, kept on one
    assert "FAIL  hardware vs HLS C-sim classes" in out
    assert "setosa\\x1b[2J\\x1b[32m" in out and "versicolor\\r  PASS  fake" in out and "virginica\\u202e" in out
    assert "2026\\x1b[2J\\x1b[32m\\nPASS  everything" in out and "pynq 3\\x07" in out
    assert "Data set: iris\\x1b[2J\\x1b[32m\\nVerdict: PASS" in out
    assert not any(line.lstrip().startswith(("PASS  everything", "Verdict: PASS")) for line in out.splitlines())
    code, out, err = run_here(pkg, "--json")
    doc = json.loads(out)  # JSON escapes control characters itself; the strings stay as they were
    assert code == 1 and doc["classes"][0] == f"setosa{hostile}" and out.isascii()


# ------------------------------------------------------------- properties over y_hw (Hypothesis)
@pytest.fixture(scope="module")
def hw_pkg(synthetic, tmp_path_factory) -> Path:
    """One package with y_hw.* for the properties; each example rewrites both files."""
    dest = tmp_path_factory.mktemp("hw") / "package"
    shutil.copytree(synthetic, dest)
    _add_hw(dest, mode="board")
    return dest


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
raw_values = st.one_of(
    json_values.map(json.dumps),  # includes NaN and Infinity, which JSON has not
    st.integers(1, 300).map(lambda d: "[" * d + "]" * d),
    st.integers(4000, 6000).map(lambda n: "9" * n),
    st.integers(4000, 4300).map(lambda n: '{"median": ' + "9" * n + "}"),  # parses, but no float holds it
)
FIELDS = [f.name for f in records.HW_RECORD]


def assert_outcome(code: int, out: str, err: str, json_mode: bool) -> None:
    """2 with one printable error line and nothing on stdout, or a verdict with every line printable."""
    if code == 2:
        assert out == "" and err.startswith("error: y_hw.json") and err[:-1].isprintable(), err
        return
    assert code in (0, 1) and err == "", err
    if json_mode:
        assert json.loads(out)["exit_code"] == code
    else:
        assert all(line.isprintable() for line in out.splitlines())
        assert out.rstrip().endswith(f"(exit {code})")


@settings(max_examples=40, deadline=None)
@given(field=st.sampled_from(FIELDS), raw=raw_values)
def test_any_value_of_a_y_hw_field_is_a_verdict_or_one_line(hw_pkg, field, raw):
    _hw_raw(field, raw)(hw_pkg)
    results = [(run_here(hw_pkg, *extra), bool(extra)) for extra in ((), ("--json",))]
    (code, _, _), _ = results[0]
    for (c, out, err), json_mode in results:
        assert c == code
        assert_outcome(c, out, err, json_mode)
    if field == "mode" and raw not in ('"board"', '"emulation"') or raw.startswith(("[" * MAX_JSON_DEPTH, "9" * 4301)):
        assert code == 2


@settings(max_examples=30, deadline=None)
@given(descr=st.sampled_from(["<f4", "<f8", ">f8", "|b1", "<i8", "|O", "<U4", "<c8", [("p", "<f4")]]),
       rows=st.sampled_from([0, 1, N_SAMPLES - 1, N_SAMPLES, 10**11]), cols=st.sampled_from([1, 3, 4]),
       pad=st.integers(-8, 8))
def test_any_y_hw_npy_header_is_a_verdict_or_one_line(hw_pkg, descr, rows, cols, pad):
    dtype = npy_format.descr_to_dtype(descr)
    fh = io.BytesIO()
    npy_format.write_array_header_1_0(fh, {"descr": descr, "fortran_order": False, "shape": (rows, cols)})
    size = rows * cols * dtype.itemsize if rows <= N_SAMPLES else 64
    _add_hw(hw_pkg, mode="board")  # a valid record (another property may have left a broken one)
    atomic_write_bytes(hw_pkg / "y_hw.npy", fh.getvalue() + np.full(max(0, size + pad), 0x3e, np.uint8).tobytes())
    code, out, err = run_here(hw_pkg, "--json")
    if code == 2:
        assert out == "" and err.startswith("error: ") and "y_hw.npy" in err and err[:-1].isprintable(), err
    else:  # only a plain numeric (N, 3) array with exactly its bytes gets this far
        assert (dtype.kind, rows, cols, pad) in {(k, N_SAMPLES, 3, 0) for k in "biuf"}
        assert code in (0, 1) and json.loads(out)["exit_code"] == code


# ------------------------------------------------------------------ the real build, end to end
def test_validation_passes_on_the_session_build_emulated(built, tmp_path):
    """The session's real package, run by its own on_target.py --emulate, then validated."""
    pkg = tmp_path / "package"
    shutil.copytree(built.package_dir, pkg, ignore=lambda d, names: {"y_hw.npy", "y_hw.json", "previous"} & set(names))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYNQ_")}
    emulated = subprocess.run([sys.executable, "on_target.py", "--emulate"], cwd=pkg, env=env, capture_output=True,
                              text=True, timeout=300)
    assert emulated.returncode == 0, emulated.stdout + emulated.stderr
    proc = run(pkg)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Verdict: PASS (exit 0)" in proc.stdout
    assert f"build {built.manifest['build_id']} matches manifest.json" in proc.stdout
    assert "from emulation" in proc.stdout and "PASS  hardware vs HLS C-sim probabilities: max |diff| 0," in proc.stdout


def test_plots_with_hostile_class_names(pkg, tmp_path):
    """A '$' would start matplotlib's math mode (an unbalanced one raises while rendering)."""
    _save(pkg, "classes.npy", np.array(["$\\frac{$", "a\x1b[2J", "b$x$"]))
    code, out, err = run_here(pkg, "--plot", tmp_path / "figs")
    assert code == 0 and err == "", err
    assert all((tmp_path / "figs" / name).read_bytes().startswith(b"\x89PNG")
               for name in ("confusion.png", "probabilities.png"))
