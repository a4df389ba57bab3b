"""The compile cache of the C-simulation (issue 31): keyed by the sources with exactly the lines
that do not reach the compiled code left out, never trusted blindly, and exact: a library reused
for another seed's weights predicts what a fresh compile of that project predicts."""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import _path_without_vivado, run_buildmodel
from iris_fpga import csim_cache
from iris_fpga.hls import EarlyCompile

# A project in hls4ml 1.3's shapes (as the VivadoAccelerator writer makes them, shortened).
PROJECT = {
    "build_lib.sh": "#!/bin/bash\nCC=g++\nCFLAGS=\"-O3 -fPIC -std=c++11\"\nPROJECT=myproject\nLIB_STAMP=d06c6be1\n"
                    "${CC} ${CFLAGS} -c firmware/${PROJECT}.cpp -o ${PROJECT}.o\n",
    "myproject_bridge.cpp": "#include \"firmware/myproject.h\"\nextern \"C\" { void myproject_float(); }\n",
    "firmware/myproject.cpp": "#include \"parameters.h\"\n#include \"weights/w2.h\"\nvoid myproject() {}\n",
    "firmware/parameters.h": "// fc1\nstruct config2 : nnet::dense_config {\n    static const unsigned n_in = 4;\n"
                             "    static const unsigned strategy = nnet::latency;\n"
                             "    static const unsigned n_zeros = 192;\n    static const unsigned n_nonzeros = 64;\n"
                             "    typedef weight2_t weight_t;\n};\n",
    "firmware/weights/w2.h": "//Numpy array shape [4, 2]\n//Min -1.0\n//Max 0.96875\n//Number of zeros 4\n\n"
                             "#ifndef W2_H_\n#define W2_H_\n\n#ifndef __SYNTHESIS__\nweight2_t w2[8];\n#else\n"
                             "weight2_t w2[8] = {0.0, 0.5, 0.0, -0.25, 0.0, 0.0, 0.75, 0.0};\n\n#endif\n\n#endif\n",
    "firmware/weights/w2.txt": "0.0, 0.5, 0.0, -0.25, 0.0, 0.0, 0.75, 0.0",
    "firmware/nnet_utils/nnet_dense.h": "template<class T> void dense(T x) {}\n",
}
# Changes to lines the key leaves out (LEFT_OUT): the weights and the library's name.
LEFT_OUT_CHANGES = [
    ("build_lib.sh", "LIB_STAMP=d06c6be1", "LIB_STAMP=3ea16801"),
    ("firmware/parameters.h", "n_zeros = 192;", "n_zeros = 150;"),
    ("firmware/parameters.h", "n_nonzeros = 64;", "n_nonzeros = 106;"),
    ("firmware/weights/w2.h", "//Max 0.96875", "//Max 0.5"),
    ("firmware/weights/w2.h", "{0.0, 0.5,", "{0.25, 0.5,"),
    ("firmware/weights/w2.txt", "0.0, 0.5", "0.25, 0.5"),
]


def write_project(root: Path, files: dict[str, str] = PROJECT) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(csim_cache.ENV, str(folder))
    return folder


@pytest.mark.parametrize("name, old, new", LEFT_OUT_CHANGES)
def test_the_lines_left_out_do_not_change_the_key(tmp_path, name, old, new):
    base = csim_cache.source_key(write_project(tmp_path / "a"))
    changed = {**PROJECT, name: PROJECT[name].replace(old, new)}
    assert changed != PROJECT and csim_cache.source_key(write_project(tmp_path / "b", changed)) == base


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_other_line_changes_the_key(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("p")
    base = csim_cache.source_key(write_project(root / "a"))
    names = [n for n in PROJECT if not n.endswith(".txt")]
    name = data.draw(st.sampled_from(names))
    lines = PROJECT[name].split("\n")
    left_out = {old for n, old, _ in LEFT_OUT_CHANGES if n == name}
    kept = [i for i, line in enumerate(lines)
            if line and not any(part in line for part in left_out) and not line.startswith("//")
            and not (i and lines[i - 1] == "#else")]
    i = data.draw(st.sampled_from(kept))
    lines[i] = lines[i] + data.draw(st.sampled_from([" ", "x", "// note", "1"]))
    changed = {**PROJECT, name: "\n".join(lines)}
    assert csim_cache.source_key(write_project(root / "b", changed)) != base, (name, lines[i])


def test_a_new_source_or_another_strategy_changes_the_key(tmp_path):
    base = csim_cache.source_key(write_project(tmp_path / "a"))
    extra = {**PROJECT, "firmware/nnet_utils/nnet_new.h": "// new\n"}
    assert csim_cache.source_key(write_project(tmp_path / "b", extra)) != base
    # with the resource strategy (a compressed Dense sizes arrays by n_nonzeros) the counts are keyed
    resource = {**PROJECT, "firmware/parameters.h": PROJECT["firmware/parameters.h"].replace("nnet::latency",
                                                                                               "nnet::resource")}
    a = csim_cache.source_key(write_project(tmp_path / "c", resource))
    counts = {**resource, "firmware/parameters.h": resource["firmware/parameters.h"].replace("= 192;", "= 150;")}
    assert a != csim_cache.source_key(write_project(tmp_path / "d", counts))


def test_a_link_among_the_sources_is_never_keyed(tmp_path):
    root = write_project(tmp_path / "a")
    (root / "firmware" / "nnet_utils" / "nnet_dense.h").unlink()
    (root / "firmware" / "nnet_utils" / "nnet_dense.h").symlink_to(tmp_path / "elsewhere.h")
    assert csim_cache.source_key(root) is None
    folder = write_project(tmp_path / "b")
    (folder / "firmware" / "linked").symlink_to(tmp_path / "a" / "firmware", target_is_directory=True)
    assert csim_cache.source_key(folder) is None


def test_a_stored_library_comes_back_byte_for_byte(cache, tmp_path):
    library = tmp_path / "lib.so"
    library.write_bytes(b"\x7fELF library bytes")
    key = "a" * 64
    assert csim_cache.fetch(key) is None
    csim_cache.store(key, library)
    assert csim_cache.fetch(key) == library.read_bytes()
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    [entry] = cache.iterdir()
    assert entry.name == f"{key}-{hashlib.sha256(library.read_bytes()).hexdigest()}.so"


def plant(cache: Path, key: str, data: bytes) -> Path:
    cache.mkdir(mode=0o700, exist_ok=True)
    entry = cache / f"{key}-{hashlib.sha256(data).hexdigest()}.so"
    entry.write_bytes(data)
    return entry


@pytest.mark.parametrize("damage", ["other bytes", "link", "fifo", "other owner"])
def test_an_entry_that_is_not_what_its_name_says_is_not_used(cache, tmp_path, damage):
    key = "b" * 64
    entry = plant(cache, key, b"good")
    if damage == "other bytes":
        entry.write_bytes(b"evil")
    elif damage == "link":
        target = tmp_path / "target.so"
        target.write_bytes(b"good")
        entry.unlink()
        entry.symlink_to(target)
    elif damage == "fifo":
        entry.unlink()
        os.mkfifo(entry)
    else:
        os.chown(entry, 65534, 65534)
    t0 = time.monotonic()
    assert csim_cache.fetch(key) is None
    assert time.monotonic() - t0 < 5  # a FIFO never blocks the build


@pytest.mark.parametrize("folder_kind", ["writable by others", "a link", "other owner"])
def test_a_cache_folder_others_could_write_is_not_used(cache, tmp_path, folder_kind, caplog):
    key = "c" * 64
    if folder_kind == "a link":
        real = tmp_path / "real"
        plant(real, key, b"good")
        cache.symlink_to(real)
    else:
        plant(cache, key, b"good")
        if folder_kind == "writable by others":
            cache.chmod(0o777)
        else:
            os.chown(cache, 65534, 65534)
    assert csim_cache.fetch(key) is None
    library = tmp_path / "lib.so"
    library.write_bytes(b"new")
    csim_cache.store(key, library)
    assert "compile cache is not used" in caplog.text


def test_off_disables_it_and_the_default_is_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(csim_cache.ENV, "off")
    assert csim_cache.cache_dir() is None and csim_cache.fetch("d" * 64) is None
    monkeypatch.delenv(csim_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert csim_cache.cache_dir() == tmp_path / "iris-fpga" / "csim"


def test_the_cache_is_bounded_least_recently_used_first(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(csim_cache, "MAX_ENTRIES", 3)
    library = tmp_path / "lib.so"
    keys = [f"{i:064x}" for i in range(5)]
    for i, key in enumerate(keys):
        library.write_bytes(f"library {i}".encode())
        csim_cache.store(key, library)
        os.utime(next(cache.glob(f"{key}-*")), (1000 + i, 1000 + i))
        if i == 2:
            assert csim_cache.fetch(keys[0]) is not None  # used: now the most recent
    (cache / "unrelated.txt").write_text("not an entry\n")
    csim_cache.store(keys[4], library)
    kept = {p.name.split("-")[0] for p in cache.glob("*.so")}
    assert kept == {keys[0], keys[3], keys[4]} and (cache / "unrelated.txt").exists()


def test_an_early_compile_for_other_sources_is_stopped(tmp_path):
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    early = EarlyCompile("e" * 64, tmp_path / "lib.so", process)
    t0 = time.monotonic()
    assert early.finish("f" * 64) is None
    assert process.poll() is not None and time.monotonic() - t0 < 5


# -- exactness, on real builds --------------------------------------------------------------------
def predict_with(library: Path, X: np.ndarray, n_out: int) -> np.ndarray:
    """hls4ml's C entry point, one sample at a time, from the library at ``library`` (its own load)."""
    function = ctypes.CDLL(str(library)).myproject_float
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    out = np.zeros((len(X), n_out), dtype=np.float32)
    for i, x in enumerate(np.ascontiguousarray(X, dtype=np.float32)):
        row = np.ascontiguousarray(x)
        function(row.ctypes.data, out[i].ctypes.data)
    return out


def test_a_library_reused_for_another_seed_predicts_what_a_fresh_compile_does(built, cache, tmp_path):
    """Seed 1's build takes the library compiled for seed 0 (other weights, other n_zeros); a fresh g++
    compile of seed 1's own project, loaded on its own, gives the same outputs, bit for bit, on the
    test set and 2,000 random inputs; seed 0's library beside seed 0's weights gives others."""
    env = {csim_cache.ENV: str(cache), "PATH": _path_without_vivado()}
    seed0 = built.output_dir
    [library0] = (seed0 / "firmware").glob("myproject-*.so")
    csim_cache.store(csim_cache.source_key(seed0), library0)
    result = run_buildmodel("--seed", "1", "--to", "csim", "--output-dir", "prj", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    seed1 = tmp_path / "prj"
    csim = json.loads((seed1 / "pipeline" / "state.json").read_text())["csim"]["result"]
    assert csim["library_from"] == "cache"
    reused = seed1 / csim["library"]
    assert reused.read_bytes() == library0.read_bytes()

    fresh_project = tmp_path / "fresh"
    shutil.copytree(seed1, fresh_project, ignore=shutil.ignore_patterns("pipeline", "*.so"))
    subprocess.run(["bash", "build_lib.sh"], cwd=fresh_project, check=True, capture_output=True)
    fresh = fresh_project / csim["library"]

    X_test = np.load(seed1 / "pipeline" / "staging" / "X_test.npy")
    X = np.concatenate([X_test, np.random.default_rng(1).uniform(-4, 4, (2000, X_test.shape[1]))])
    y_reused, y_fresh = (predict_with(lib, X, csim["n_out"]) for lib in (reused, fresh))
    assert np.array_equal(y_reused, y_fresh)
    assert np.array_equal(y_reused[: len(X_test)], np.load(seed1 / "pipeline" / "staging" / "y_hls.npy"))
    assert not np.array_equal(predict_with(library0, X, csim["n_out"]), y_reused)  # seed 0's weights differ


def test_the_softmax_tables_kept_in_the_cache_are_what_the_dumper_prints(built, cache, monkeypatch):
    """The softmax tables (printed by a g++-compiled dumper against the project's headers) are kept
    under the sources' key too: what comes back from the cache is what the dumper prints with the
    cache off, and what the session's build exported."""
    from iris_fpga.datapath.softmax_export import export_softmax

    assert not cache.exists()
    remembered = export_softmax(built.output_dir, "softmax")  # computed, and kept
    assert len(list(cache.glob("*.txt"))) == 1
    again = export_softmax(built.output_dir, "softmax")  # from the cache
    monkeypatch.setenv(csim_cache.ENV, "off")
    fresh = export_softmax(built.output_dir, "softmax")
    assert remembered == again == fresh and fresh["supported"]
    graph = json.loads((built.output_dir / "pipeline" / "rtl_graph.json").read_text())
    assert graph["softmax"] == fresh
