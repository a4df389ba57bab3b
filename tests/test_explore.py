"""The design-space explorer (issues 20, 30): a real sweep through a real Dask scheduler and workers.

A `dask scheduler` and two `dask worker` processes start from the repository root; a two-point space
runs through them at two folds: an 8-unit network at 25% sparsity (it learns), and the same at 99%
sparsity, whose one weight left per layer cannot tell three classes apart (at most two thirds of a
fold right: it can never reach --min-cv). That second point's fold-2 folder is blocked by a file, so
its run fails. results.json must show the external workers ran every run, the failed point reported
and skipped, the qualifying front measured by yosys alone (datapath and whole IP, synthesized, not
verified), the winner chosen on CV and the whole IP, then built once on all the training samples,
every check of the rtl and ip steps included, and scored on the test set; a second run recomputes
nothing that succeeded; with the blocker gone, the hopeless point alone has no winner: exit 1. Bad
space files are one line and exit 2 before any work.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PYTHON, REPO, run_buildmodel

DASK = Path(PYTHON).parent / "dask"
WORKERS = ("ext-worker-a", "ext-worker-b")
SPACE = {"--hidden": ["8"], "--weight-bits": [4], "--activation-bits": [4], "--sparsity": [0.25, 0.99]}
HOPELESS = 0.99  # this point cannot learn; its fold-2 folder is a file in the first sweep: that run fails
MIN_CV = "0.5"  # the learning point reaches it on every fold; the hopeless one never does


def explore(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(REPO / "utilities" / "explore.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A real `dask scheduler` on 127.0.0.1 and two `dask worker` processes (cwd: the repository),
    stopped by their own PIDs."""
    logs = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = []

    def start(name: str, *argv: str) -> None:
        out = open(logs / f"{name}.log", "w")
        procs.append(subprocess.Popen([str(DASK), *argv], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT))
        out.close()

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
              "--no-dashboard")
        for name in WORKERS:
            start(name, "worker", address, "--name", name, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                  "--host", "127.0.0.1")
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def swept(scheduler, tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    space = root / "space.json"
    space.write_text(json.dumps(SPACE))
    out = root / "out"
    from iris_fpga.explore.space import expand

    hopeless = next(p for p in expand(SPACE) if p.settings["--sparsity"] == HOPELESS)
    (out / "runs").mkdir(parents=True)
    (out / "runs" / f"{hopeless.id}-fold2").write_text("in the way\n")
    result = explore("--space", str(space), "--folds", "2", "--min-cv", MIN_CV, "--out", str(out),
                     "--scheduler", scheduler, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return space, out, result, json.loads((out / "results.json").read_text())


def by_sparsity(results: dict, sparsity: float) -> dict:
    return next(p for p in results["points"] + results.get("other_points", [])
                if p["settings"]["--sparsity"] == sparsity)


def state_of(run: dict) -> dict:
    return json.loads((Path(run["output_dir"]) / "pipeline" / "state.json").read_text())


def test_the_external_workers_ran_every_run(swept):
    _, _, _, results = swept
    runs = [run for p in results["points"] for run in p["runs"].values()]
    measured = [run["rtl"] for run in runs if "rtl" in run]
    final = by_sparsity(results, 0.25)["final"]
    assert len(runs) == 4 and len(measured) == 2, runs
    for run in runs + measured + [final]:
        assert run["worker"] in WORKERS, run  # a local cluster's workers are named 0, 1, ...
        assert run["worker_address"].startswith("tcp://127.0.0.1:")


def test_each_worker_runs_its_builds_in_its_own_process_each_isolated(swept, tmp_path):
    """No process per run: a worker's runs share its process. Still each run is what its printed
    command gives in a process of its own: the winner's final build, run last on a worker that had
    trained other networks, has the weights a fresh `python BuildModel.py` trains, and every run
    loaded its own copy of the C-simulation library."""
    _, _, _, results = swept
    runs = [run for p in results["points"] for run in p["runs"].values() if "error" not in run]
    final = by_sparsity(results, 0.25)["final"]
    pids = {}
    for run in runs + [run["rtl"] for run in runs if "rtl" in run] + [final]:
        pids.setdefault(run["worker"], set()).add(run["pid"])
    assert all(len(p) == 1 for p in pids.values()) and len(runs) + 3 > len(pids), pids
    libraries = [Path(run["output_dir"]) / state_of(run)["csim"]["result"]["library"] for run in runs + [final]]
    assert len({lib.stat().st_ino for lib in libraries}) == len(libraries)
    assert {run["library_from"] for run in runs + [final]} <= {"early", "cache", "g++"}
    argv = shlex.split(final["command"])
    settings_ = argv[2: argv.index("--output-dir")]  # python BuildModel.py SETTINGS --output-dir ...
    result = run_buildmodel(*settings_, "--to", "train", "--output-dir", "prj", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = (tmp_path / "prj" / "pipeline" / "weights.npz").read_bytes()
    assert fresh == (Path(final["output_dir"]) / "pipeline" / "weights.npz").read_bytes()


def test_a_failing_point_is_reported_and_skipped(swept):
    _, _, result, results = swept
    failed = by_sparsity(results, HOPELESS)
    assert failed["status"] == "failed" and failed["pareto"] is False and failed["cv_min"] is None
    assert "fold2: " in failed["errors"][0] and "is a file: choose a folder" in failed["errors"][0], failed["errors"]
    assert "failed point --hidden 8 --weight-bits 4 --activation-bits 4 --sparsity 0.99" in result.stderr


def test_each_fold_is_a_build_scored_on_its_own_held_out_fold(swept):
    _, _, result, results = swept
    good = by_sparsity(results, 0.25)
    for fold in (1, 2):
        run = good["runs"][f"fold{fold}"]
        state = state_of(run)
        assert state["csim"]["result"]["cv"] == {"fold": fold, "folds": 2, "accuracy": run["csim"]}
        assert state["data"]["result"]["n_test"] == 60  # half of the 120 training samples, never the 30
        assert f"--seed {fold - 1} --cv-fold {fold}/2 " in run["command"] and run["command"] in result.stdout
    folds = [good["runs"][name]["csim"] for name in ("fold1", "fold2")]
    assert good["cv_accuracy"] == pytest.approx(sum(folds) / 2) and good["cv_min"] == min(folds)


def test_the_rule_chooses_on_cv_and_the_whole_ip_and_scores_the_test_set_once(swept):
    _, out, result, results = swept
    good = by_sparsity(results, 0.25)
    assert good["pareto"] is True and good["estimated_by"] == "yosys" and good["cv_min"] >= float(MIN_CV)
    assert good["ip_verified"] is False and "yosys (synthesized, not verified)" in (out / "pareto.md").read_text()
    figures = []
    for name in ("fold1", "fold2"):
        run = good["runs"][name]
        assert run["rtl"]["ip"]["LUT"] > run["rtl"]["yosys"]["LUT"] > 0
        assert run["rtl"]["verified"] is False and run["rtl"]["checks"].startswith("synthesized, not verified")
        assert "bit_exact" not in run["rtl"]["yosys"] and not {"rtl", "ip"} & set(state_of(run))  # no step ran
        measured = Path(run["output_dir"] + ".synth")
        assert all((measured / step / "synth" / "stat.json").is_file() for step in ("rtl", "ip"))
        assert not [p for p in measured.rglob("*") if p.name in ("sim_build", "cocotb.log", "netlist_build")]
        assert "yosys (synthesized, not verified): whole IP" in result.stdout
        figures.append(run["rtl"])
    assert good["ip_lut"] == max(f["ip"]["LUT"] for f in figures) and good["lut"] == max(f["yosys"]["LUT"]
                                                                                         for f in figures)
    winner = results["winner"]
    assert winner["id"] == good["id"] and winner["cv_min"] == good["cv_min"] and winner["cv_ip_lut"] == good["ip_lut"]
    # then, once: all 120 training samples, seed 0, the 30 test samples
    final = good["final"]
    state = state_of(final)
    assert "cv" not in state["csim"]["result"] and {k: state["data"]["result"][k] for k in ("n_train", "n_test")} == {"n_train": 120, "n_test": 30}
    assert "--cv-fold" not in final["command"] and "--seed 0 --accelerator rtl " in final["command"]
    assert final["rtl"]["verified"] is True and winner["verified"] is True  # the full ip step: every check
    assert state["ip"]["result"]["ip"]["netlist_bit_exact"]["test"] == {"matched": 30, "total": 30}
    assert [r["name"] for r in state["ip"]["result"]["ip"]["runs"]] == [
        "steady-one-frame", "steady-frame-per-sample", "paused-one-frame", "paused-frame-per-sample"]
    assert final["rtl"]["yosys"]["bit_exact"]["test"] == {"matched": 30, "total": 30}
    assert winner["test_accuracy"] == final["csim"] == state["csim"]["result"]["accuracy"]["csim"]
    assert round(winner["test_accuracy"] * 30, 6) == round(winner["test_accuracy"] * 30)
    assert winner["ip_lut"] == state["ip"]["result"]["ip"]["resources"]["LUT"]
    assert winner["lut"] == state["rtl"]["result"]["report"]["resources"]["LUT"]
    assert winner["command"] == ("python BuildModel.py --hidden 8 --weight-bits 4 --activation-bits 4 "
                                 "--sparsity 0.25 --seed 0 --accelerator rtl")
    assert (out / "winner.txt").read_text().strip() == winner["command"]
    assert winner["command"] in result.stdout and f"test accuracy {100 * winner['test_accuracy']:.2f}%" in result.stdout
    assert "--hidden 8" in (out / "pareto.md").read_text()
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_fronts_synthesis_counts_what_the_full_steps_count(swept, tmp_path):
    """One place for each thing: the front's yosys-only measurement of a build gives exactly the
    figures the full rtl and ip steps gave for it (the winner's final build ran them), unverified."""
    from iris_fpga.explore.synthesis import synthesize_fold
    from iris_fpga.flow.cli import parse_args
    from iris_fpga.hls import board_part

    final = by_sparsity(swept[3], 0.25)["final"]
    _, config = parse_args(shlex.split(final["command"])[2:])
    measured = synthesize_fold(Path(final["output_dir"]), tmp_path / "measured", config.latency_cutoff,
                               board_part(config.board))
    state = state_of(final)
    report, ip = state["rtl"]["result"]["report"], state["ip"]["result"]["ip"]
    assert measured["yosys"] == {"LUT": report["resources"]["LUT"], "FF": report["resources"]["FF"],
                                 "latency_cycles": report["latency_cycles"]}
    assert measured["ip"] == {k: ip["resources"][k] for k in ("LUT", "FF", "DSP", "BRAM")}
    assert measured["verified"] is False


@pytest.mark.parametrize("kind", ["link", "file"])
def test_a_front_folds_synthesis_never_writes_through_a_link_or_over_a_file(tmp_path, kind):
    from iris_fpga.errors import ToolError
    from iris_fpga.explore.synthesis import synthesize_fold

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "rtl").mkdir(parents=True)
    (elsewhere / "rtl" / ".iris-fpga-rtl").write_text("a marker the rtl step would replace\n")
    measure = tmp_path / "runs" / "p-fold1.synth"
    measure.parent.mkdir()
    if kind == "link":
        measure.symlink_to(elsewhere, target_is_directory=True)
    else:
        measure.write_text("in the way\n")
    with pytest.raises(ToolError) as info:
        synthesize_fold(tmp_path / "runs" / "p-fold1", measure, 3, "xc7z020clg400-1")
    assert ("is a symbolic link" if kind == "link" else "is not a folder") in str(info.value)
    assert sorted(p.name for p in elsewhere.rglob("*")) == [".iris-fpga-rtl", "rtl"]
    assert measure.is_symlink() if kind == "link" else measure.read_text() == "in the way\n"


def test_a_second_run_recomputes_nothing(swept, scheduler):
    space, out, first, results = swept
    def logs_of_kept_runs() -> dict:  # the failed run is retried, so its log is written again
        return {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.log")
                if not p.name.startswith(f"{by_sparsity(results, HOPELESS)['id']}-fold2")}

    logs = logs_of_kept_runs()
    t0 = time.monotonic()
    again = explore("--space", str(space), "--folds", "2", "--min-cv", MIN_CV, "--out", str(out),
                    "--scheduler", scheduler)
    assert again.returncode == first.returncode, again.stderr
    runs = [line for line in again.stdout.splitlines() if line.startswith(("csim ", "synth ", "ip "))]
    assert runs and all("--sparsity 0.99 " in line and "FAILED" in line for line in runs), runs
    assert logs and logs_of_kept_runs() == logs
    kept = json.loads((out / "results.json").read_text())
    assert by_sparsity(kept, 0.25)["runs"] == by_sparsity(results, 0.25)["runs"]
    assert kept["winner"] == results["winner"]
    assert by_sparsity(kept, HOPELESS)["status"] == "failed"  # retried (a failed run is never kept), failed again
    assert time.monotonic() - t0 < 60


def test_no_point_reaching_min_cv_is_no_winner_and_exit_1(swept, scheduler, tmp_path):
    """The hopeless point alone, its blocker gone: its failed fold is retried, and no fold of it
    reaches --min-cv, so nothing is measured or built on the test set: exit 1, one line saying so."""
    _, out, _, results = swept
    hopeless = by_sparsity(results, HOPELESS)
    (out / "runs" / f"{hopeless['id']}-fold2").unlink()
    space = tmp_path / "hopeless.json"
    space.write_text(json.dumps({**SPACE, "--sparsity": [HOPELESS]}))
    result = explore("--space", str(space), "--folds", "2", "--min-cv", MIN_CV, "--out", str(out),
                     "--scheduler", scheduler)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "no measured point reaches 50.00% C-simulation accuracy on its worst fold"
    kept = json.loads((out / "results.json").read_text())
    point = kept["points"][0]
    assert kept["winner"] is None and point["status"] == "done" and point["cv_min"] < float(MIN_CV)
    assert point["estimated_by"] == "da4ml" and "final" not in point  # never measured, never built on the test set
    runs = [line for line in result.stdout.splitlines() if line.startswith(("csim ", "synth ", "ip "))]
    assert len(runs) == 1 and "--cv-fold 2/2 " in runs[0] and "FAILED" not in runs[0], runs  # the retried fold only
    assert (out / "winner.txt").read_text().startswith("no measured point reaches 50.00%")
    assert by_sparsity(kept, 0.25)["id"] in {p["id"] for p in kept["other_points"]}  # the other space's kept


# --------------------------------------------------------------------------- bad space files


def run_main(argv: list[str]) -> tuple[int, str]:
    from iris_fpga.explore.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def assert_refused(tmp_path: Path, space_text: str, message: str = "") -> None:
    space, out = tmp_path / "space.json", tmp_path / "out"
    space.write_text(space_text)
    code, err = run_main(["--space", str(space), "--out", str(out), "--folds", "2"])
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists()  # refused before any work


@pytest.mark.parametrize("text, message", [
    ("{", "space.json"),
    ("[]", "a space is a JSON object"),
    ("{}", "a space is a JSON object"),
    ('{"--hiden": ["16"]}', "'--hiden' is not a BuildModel.py option"),
    ('{"--hid": ["16"]}', "'--hid' is not a BuildModel.py option"),  # no argparse abbreviations
    ('{"--seed": [1, 2]}', "--seed cannot be part of a space: each fold has its own seed"),
    ('{"--cv-fold": ["1/3"]}', "--cv-fold cannot be part of a space: the folds come from --folds"),
    ('{"--accelerator": ["hls"]}', "--accelerator cannot be part of a space"),
    ('{"--output-dir": ["x"]}', "every run gets its own folder"),
    ('{"--trust-new-host": [1]}', "--trust-new-host takes no value"),
    ('{"--hidden": "16"}', "--hidden needs a non-empty list of values"),
    ('{"--hidden": []}', "--hidden needs a non-empty list of values"),
    ('{"--hidden": [true]}', "is not a string or a number"),
    ('{"--hidden": ["16", "0"]}', "point --hidden 0: --hidden widths must be 1 to 256 (got 0)"),
    ('{"--hidden": ["16"], "--weight-bits": [4, 17]}', "--weight-bits must be 2 to 16 (got 17)"),
    ('{"--sparsity": [NaN]}', "space.json"),
    ('{"--epochs": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], "--hidden": ' + json.dumps([str(i) for i in range(1, 101)])
     + ', "--weight-bits": ' + json.dumps(list(range(2, 12))) + "}", "11,000 points; the explorer takes at most"),
])
def test_a_bad_space_file_is_one_line_and_exit_2(tmp_path, text, message):
    assert_refused(tmp_path, text, message)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(min_size=1, max_size=20).filter(lambda k: not k.startswith("--")) | st.from_regex(r"--[a-z]{1,12}",
                                                                                                    fullmatch=True),
       values=st.lists(st.integers(0, 300) | st.text(max_size=8), min_size=1, max_size=3))
def test_any_unknown_key_is_refused_before_any_work(tmp_path, key, values):
    from BuildModel import make_parser

    known = {name for action in make_parser()._actions for name in action.option_strings}
    if key in known:
        return
    out = tmp_path / f"out-{abs(hash(key))}"
    space = tmp_path / "space.json"
    space.write_text(json.dumps({key: values}))
    code, err = run_main(["--space", str(space), "--out", str(out)])
    assert code == 2 and err.count("\n") == 1 and "is not a BuildModel.py option" in err, err
    assert not out.exists()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.integers(-5, 300) | st.floats(-1, 2, allow_nan=False) | st.text(max_size=6),
                       min_size=1, max_size=4))
def test_hidden_values_are_checked_by_buildmodels_own_parser(tmp_path, values):
    from BuildModel import parse_args
    from iris_fpga.errors import ToolError

    def accepted(value) -> bool:
        try:
            parse_args(["--hidden", str(value)])
            return True
        except ToolError:
            return False

    out = tmp_path / "out"
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"--hidden": values}))
    if all(accepted(v) for v in values):
        from iris_fpga.explore.space import expand, load_space

        assert {p.args[1] for p in expand(load_space(space))} == {str(v) for v in values}
    else:
        code, err = run_main(["--space", str(space), "--out", str(out)])
        assert code == 2 and err.count("\n") == 1 and "--hidden" in err, err
        assert not out.exists()


def test_the_default_space_varies_the_training_budget_beside_small_networks():
    from iris_fpga.explore.space import DEFAULT_SPACE, expand

    points = expand(DEFAULT_SPACE)
    assert len(points) <= 24 and len({p.id for p in points}) == len(points)
    assert {"--epochs", "--lr"} & {key for key, values in DEFAULT_SPACE.items() if len(values) > 1}
    widths = [tuple(map(int, h.split(","))) for h in DEFAULT_SPACE["--hidden"]]
    assert all(1 <= len(w) <= 2 and all(4 <= u <= 16 for u in w) for w in widths)
    assert all(3 <= b <= 6 for key in ("--weight-bits", "--activation-bits") for b in DEFAULT_SPACE[key])
    assert all(0 <= s <= 0.75 for s in DEFAULT_SPACE["--sparsity"])


# --------------------------------------------------------------------------- the front


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 50)), min_size=1, max_size=12))
def test_the_front_holds_exactly_the_points_no_other_point_beats(pairs):
    from iris_fpga.explore.front import pareto

    points = [{"id": str(i), "status": "done", "cv_min": c / 30, "lut": lut} for i, (c, lut) in enumerate(pairs)]
    front = {p["id"] for p in pareto(points)}
    for p in points:
        beaten = any(q["cv_min"] >= p["cv_min"] and q["lut"] <= p["lut"] and
                     (q["cv_min"], q["lut"]) != (p["cv_min"], p["lut"]) for q in points)
        assert (p["id"] in front) == (not beaten)


POINT = st.fixed_dictionaries({"cv_min": st.integers(0, 40).map(lambda c: c / 40), "lut": st.integers(1, 500),
                                "ip_lut": st.integers(900, 1500), "status": st.sampled_from(["done", "failed"]),
                                "estimated_by": st.sampled_from(["yosys", "da4ml"])})


@settings(max_examples=200, deadline=None)
@given(st.lists(POINT, max_size=10), st.integers(0, 40).map(lambda c: c / 40))
def test_the_rule_is_the_fewest_whole_ip_lut_among_measured_points_whose_worst_fold_reaches_min_cv(drawn, min_cv):
    from iris_fpga.explore.front import choose

    points = [{**p, "id": str(i)} for i, p in enumerate(drawn)]
    eligible = [p for p in points if p["status"] == "done" and p["estimated_by"] == "yosys" and p["cv_min"] >= min_cv]
    chosen = choose(points, min_cv)
    if not eligible:
        assert chosen is None
    else:
        assert chosen in eligible and chosen["ip_lut"] == min(p["ip_lut"] for p in eligible)


# --------------------------------------------------------------------------- the explorer's own files
def good_run(seed_lut: int = 900) -> dict:
    return {"worker": "w", "csim": 1.0, "keras": 1.0, "val_accuracy": 0.97, "sparsity": 0.75,
            "da4ml": {"LUT": seed_lut, "FF": 100, "latency_cycles": 5},
            "rtl": {"yosys": {"LUT": seed_lut + 10, "FF": 110, "latency_cycles": 5},
                    "ip": {"LUT": seed_lut + 930, "FF": 450, "DSP": 3, "BRAM": 0.5}}}


def good_results() -> dict:
    from iris_fpga.explore.outputs import FORMAT
    from iris_fpga.explore.space import expand

    point = expand({"--hidden": ["8"]})[0]
    return {"format": FORMAT, "points": [{"id": point.id, "settings": point.settings, "args": list(point.args),
                                          "runs": {"fold1": good_run(), "fold2": {"error": "BuildModel.py exit 3"}}}],
            "other_points": [{"id": "abc", "settings": {}, "args": ["--hidden", "4"],
                              "runs": {"fold1": good_run(700)}}],
            "outputs": {}}


NOT_DICT = st.one_of(st.none(), st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=2))
NOT_TEXT = st.one_of(st.none(), st.integers(), st.lists(st.text(max_size=2), max_size=2), st.just({}))
NOT_FRACTION = st.one_of(st.none(), st.text(max_size=3), st.just(True), st.floats(1.001, 1e9), st.floats(-1e9, -0.001),
                         st.just([0.5]))
NOT_COUNT = st.one_of(st.none(), st.text(max_size=3), st.just(False), st.integers(-10**6, -1), st.floats(0, 10).map(
    lambda f: f + 0.5), st.just({}))


def _point(doc):
    return doc["points"][0]


def _run(doc):
    return _point(doc)["runs"]["fold1"]


# (where, what to do, values that may not stand there): every one makes results.json malformed.
MALFORMED = [
    (lambda d: d, "replace", lambda d, v: v, st.one_of(st.lists(st.integers(), max_size=2), st.text(max_size=3),
                                                      st.integers())),
    ("points", "set", None, NOT_DICT.filter(lambda v: not isinstance(v, list))),
    ("other_points", "set", None, st.one_of(st.integers(), st.text(max_size=3), st.just({}))),
    ("points[0]", "set", None, NOT_DICT),
    ("point key", "delete", None, st.sampled_from(["id", "settings", "args", "runs"])),
    ("point id", "set", None, NOT_TEXT),
    ("point args", "set", None, st.one_of(st.none(), st.text(max_size=3), st.lists(st.integers(), min_size=1))),
    ("point runs", "set", None, st.one_of(st.none(), st.lists(st.integers(), max_size=2), st.text(max_size=3))),
    ("run", "set", None, NOT_DICT),
    ("run fraction", "set", None, NOT_FRACTION),
    ("run key", "delete", None, st.sampled_from(["worker", "csim", "keras", "val_accuracy", "sparsity", "da4ml"])),
    ("run worker", "set", None, NOT_TEXT),
    ("run da4ml", "set", None, NOT_DICT),
    ("run da4ml figure", "set", None, NOT_COUNT),
    ("run rtl", "set", None, st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2))),
    ("run yosys LUT", "set", None, st.one_of(NOT_COUNT, st.just(0))),
    ("run error", "set", None, NOT_TEXT),
    ("outputs", "set", None, st.one_of(st.just({"pareto.md": "not a sum"}), st.lists(st.text(max_size=2), max_size=2),
                                       st.text(max_size=3))),
]


def _malform(doc: dict, where, value, draw) -> dict:
    run = _run(doc)
    if where == "point key":
        del _point(doc)[value]
    elif where == "run key":
        del run[value]
    elif where in ("points", "other_points", "outputs"):
        doc[where] = value
    elif where == "points[0]":
        doc["points"][0] = value
    elif where.startswith("point "):
        _point(doc)[where.split()[1]] = value
    elif where == "run":
        _point(doc)["runs"]["fold1"] = value
    elif where == "run fraction":
        run[draw(st.sampled_from(["csim", "keras", "val_accuracy", "sparsity"]))] = value
    elif where == "run da4ml figure":
        run["da4ml"][draw(st.sampled_from(["LUT", "FF", "latency_cycles"]))] = value
    elif where == "run yosys LUT":
        run["rtl"]["yosys"]["LUT"] = value
    elif where == "run error":
        _point(doc)["runs"]["fold2"]["error"] = value
    else:  # run worker, run da4ml, run rtl
        run[where.split()[1]] = value
    return doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_malformed_results_file_is_one_line_naming_it(tmp_path, data):
    """Right "format", wrong contents: exit 2 naming results.json, before anything is written."""
    from iris_fpga.errors import ToolError
    from iris_fpga.explore.outputs import load_results

    where, _, replace, values = data.draw(st.sampled_from(MALFORMED))
    value = data.draw(values)
    doc = replace(good_results(), value) if replace else _malform(good_results(), where, value, data.draw)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(doc))
    with pytest.raises(ToolError) as info:
        load_results(out)
    message = str(info.value)
    assert info.value.code == 2 and message.isprintable() and message.startswith(str(out / "results.json"))


@pytest.mark.parametrize("damage", [
    lambda d: d["points"].append("not a point"),
    lambda d: d["points"][0].pop("runs"),
    lambda d: d["points"][0]["runs"]["fold1"].update(csim="1.0"),
    lambda d: d["points"][0]["runs"]["fold1"]["da4ml"].pop("LUT"),
    lambda d: d["points"][0]["runs"]["fold1"].update(rtl={"yosys": {"LUT": 0, "FF": 1, "latency_cycles": 1}}),
    lambda d: d["points"][0]["runs"]["fold1"]["rtl"].pop("ip"),
    lambda d: d["points"][0]["runs"]["fold1"]["rtl"]["ip"].update(BRAM="0.5"),
    lambda d: d["points"][0]["runs"]["fold1"]["rtl"].update(verified="no"),
    lambda d: d["points"][0].update(final={"worker": "w"}),
    lambda d: d["points"][0].update(final={k: v for k, v in good_run().items() if k != "rtl"}),
    lambda d: d.update(other_points={"a": 1}),
    lambda d: d["points"][0].update(args="--hidden 8"),
])
def test_the_explorer_refuses_a_malformed_results_file_before_any_work(tmp_path, damage):
    doc = good_results()
    damage(doc)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(doc))
    code, err = run_main(["--space", str(write_space(tmp_path, {"--hidden": ["8"]})), "--out", str(out),
                          "--folds", "2"])
    assert code == 2 and err.count("\n") == 1 and str(out / "results.json") in err, err
    assert sorted(os.listdir(out)) == ["results.json"]


def write_space(tmp_path: Path, space: dict) -> Path:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    return path


def test_a_valid_results_file_is_read_back_with_the_spaces_own_args(tmp_path):
    """What the file says of a point of this space is never printed or rebuilt: its args are the space's."""
    from iris_fpga.explore.runner import Sweep
    from iris_fpga.explore.space import expand

    doc = good_results()
    doc["points"][0]["args"] = ["--hidden", "8\x1b[2J"]
    (tmp_path / "results.json").write_text(json.dumps(doc))
    points = expand({"--hidden": ["8"]})
    sweep = Sweep(points, 2, 0.95, tmp_path, {"--hidden": ["8"]}, cluster=None, progress=None)
    record = sweep.records[points[0].id]
    assert record["args"] == ["--hidden", "8"] and set(record["runs"]) == {"fold1"}  # the failed fold is retried
    assert [p["id"] for p in sweep.other] == ["abc"]


@pytest.mark.parametrize("name", ["pareto.md", "pareto.png", "winner.txt"])
@pytest.mark.parametrize("recorded", ["no results.json", "not listed", "other sha256"])
def test_a_users_file_in_out_is_never_overwritten(tmp_path, name, recorded):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("a user's file")
    if recorded != "no results.json":
        doc = good_results()
        doc["outputs"] = {} if recorded == "not listed" else {name: "0" * 64}
        (out / "results.json").write_text(json.dumps(doc))
    before = sorted(os.listdir(out))
    code, err = run_main(["--space", str(write_space(tmp_path, {"--hidden": ["8"]})), "--out", str(out),
                          "--folds", "2"])
    assert code == 2 and err.count("\n") == 1 and f"{out / name} is not a file this explorer wrote" in err, err
    assert (out / name).read_text() == "a user's file" and sorted(os.listdir(out)) == before


def test_outputs_it_wrote_are_replaced_and_a_late_users_file_is_not(tmp_path):
    from iris_fpga.errors import ToolError
    from iris_fpga.explore import outputs
    from iris_fpga.explore.cli import prepare_out

    made = outputs.write_outputs(tmp_path, [], [], None, 2, 0.95, {})
    assert set(made) == {"pareto.md", "pareto.png", "winner.txt"}
    doc = {**good_results(), "outputs": made}
    (tmp_path / "results.json").write_text(json.dumps(doc))
    prepare_out(tmp_path)  # what it wrote: accepted
    assert outputs.write_outputs(tmp_path, [], [], None, 2, 0.95, made) == made
    (tmp_path / "winner.txt").write_text("a user's file, written during the sweep")
    with pytest.raises(ToolError, match="winner.txt is not a file this explorer wrote"):
        outputs.write_outputs(tmp_path, [], [], None, 2, 0.95, made)
    assert (tmp_path / "winner.txt").read_text() == "a user's file, written during the sweep"


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_a_run_never_writes_its_log_through_a_link_or_into_a_fifo(tmp_path, kind):
    """The task (what a Dask worker runs) refuses a link or FIFO at runs/<id>-fold1.csim.log: one failed run."""
    from iris_fpga.explore.task import Run, run_build

    canary = tmp_path / "canary.txt"
    canary.write_text("a user's file")
    runs = tmp_path / "runs"
    runs.mkdir()
    log = runs / "p-fold1.csim.log"
    if kind == "link":
        log.symlink_to(canary)
    else:
        os.mkfifo(log)
    record = run_build(Run("p", ("--hidden", "8"), 1, 2, str(runs / "p-fold1"), 5))
    why = "is a symbolic link: refused" if kind == "link" else "cannot be written"  # a FIFO with no reader
    assert "p-fold1.csim.log" in record["error"] and why in record["error"], record
    assert canary.read_text() == "a user's file" and not (runs / "p-fold1").exists()


@pytest.mark.parametrize("space, message", [
    ({"--host": ["127.0.0.1"], "--timeout": [0]}, "--host is a deploy option"),
    ({"--timeout": [0]}, "--timeout is a deploy option"),
    ({"--remote-dir": ["x"]}, "--remote-dir is a deploy option"),
    ({"--board": ["pynq-z2", "zcu102x"]}, "unknown board 'zcu102x'"),
    ({"--latency-cutoff": [-1]}, "--latency-cutoff must be"),
])
def test_values_a_run_would_refuse_are_refused_before_anything_is_written(tmp_path, space, message):
    assert_refused(tmp_path, json.dumps(space), message)


def test_the_explorer_prints_names_from_results_escaped(tmp_path):
    """A failed point's errors come from results.json and the build's log: printed escaped."""
    from iris_fpga.explore.cli import report

    point = {"status": "failed", "args": ["--hidden", "8"], "errors": ["seed 0: \x1b]0;owned\x07\x1b[2J\x9b\u202e"]}
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        report({"points": [point], "front": [], "seconds": 1, "estimate_error": None, "winner": None}, tmp_path, 0.95)
    text = err.getvalue() + out.getvalue()
    assert "\\x1b]0;owned\\x07\\x1b[2J\\x9b\\u202e" in text
    assert all(c == "\n" or c.isprintable() for c in text)


@pytest.mark.parametrize("option, value, message", [
    ("--folds", "1", "--folds must be 2 to 20 (got 1)"), ("--folds", "21", "--folds must be 2 to 20"),
    ("--min-cv", "1.5", "--min-cv must be a fraction from 0 to 1"), ("--min-cv", "nan", "--min-cv must be a fraction"),
    ("--min-cv", "-0.1", "--min-cv must be a fraction"), ("--seeds", "3", "unrecognized arguments: --seeds"),
])
def test_bad_folds_or_min_cv_are_one_line_and_exit_2_before_any_work(tmp_path, option, value, message):
    out = tmp_path / "out"
    code, err = run_main(["--space", str(write_space(tmp_path, {"--hidden": ["8"]})), "--out", str(out), option, value])
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists()
