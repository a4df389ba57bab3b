"""A hostile ``<output-dir>/pipeline/state.json`` is no reusable state, never a hang or a traceback.

In-process (Hypothesis): any JSON document as state.json gives a StepState that either holds
records of the shape it writes or nothing, and asking it for any step never raises. As a user runs
it: the issue's cases (a FIFO, ``[]``, ``{"data":"x"}``, ``{"data":NaN}``, 100,000 nested ``[``,
a link to /dev/zero) make ``--from package`` say which step to run (exit 2) after one line naming
the file, and ``--to data`` run the data step again and write a good state.json.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import Build, run_buildmodel
from iris_fpga.cache import StepState
from iris_fpga.errors import ExitCode

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=12)
records = st.fixed_dictionaries({"key": st.text(max_size=4)}, optional={
    "result": json_values, "outputs": st.dictionaries(st.text(max_size=8), json_values, max_size=2)})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.one_of(json_values, st.dictionaries(st.sampled_from(["data", "train"]), records | json_values)))
def test_any_json_state_is_records_or_nothing(tmp_path, document):
    work = tmp_path / "pipeline"
    work.mkdir(exist_ok=True)
    (work / "state.json").write_text(json.dumps(document))
    state = StepState(work / "state.json", tmp_path)
    assert state.steps in ({}, document)
    for step, record in state.steps.items():
        assert isinstance(record, dict) and isinstance(record["key"], str)
        assert state.reusable(step, record["key"]) in (None, record.get("result", {}))
    assert state.reusable("data", "k") is None or state.steps["data"]["key"] == "k"


def test_recorded_outputs_outside_the_folder_or_not_regular_are_not_reused(tmp_path, caplog):
    work = tmp_path / "pipeline"
    work.mkdir()
    os.mkfifo(work / "fifo")
    (work / "link").symlink_to("/etc/hostname")
    for outputs in ({"../outside": "0" * 64}, {"/etc/hostname": "0" * 64}):
        (work / "state.json").write_text(json.dumps({"data": {"key": "k", "outputs": outputs}}))
        with caplog.at_level(logging.WARNING):
            assert StepState(work / "state.json", tmp_path).steps == {}
    for name in ("pipeline/fifo", "pipeline/link"):  # a FIFO would block the checksum: never opened
        (work / "state.json").write_text(json.dumps({"data": {"key": "k", "outputs": {name: "0" * 64}}}))
        assert StepState(work / "state.json", tmp_path).reusable("data", "k") is None


def test_a_folder_in_place_of_the_state_is_no_state_and_a_one_line_error_when_recording(tmp_path):
    from iris_fpga.errors import ToolError

    (tmp_path / "pipeline" / "state.json").mkdir(parents=True)
    state = StepState(tmp_path / "pipeline" / "state.json", tmp_path)
    assert state.steps == {} and state.reusable("data", "k") is None
    with pytest.raises(ToolError, match="cannot record step data in .*state.json"):
        state.record("data", "k", {}, [], 0.1)


def _hostile(kind: str, path: Path) -> None:
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_text({"list": "[]", "string": '{"data": "x"}', "nan": '{"data": NaN}',
                         "deep": "[" * 100_000}[kind])


@pytest.fixture
def build_copy(built: Build, tmp_path) -> Build:
    root = tmp_path / "copy"
    shutil.copytree(built.root, root, symlinks=True)
    return Build(root, root / "hls4ml_prj_pynq", root / "package", "")


@pytest.mark.parametrize("kind", ["fifo", "list", "string", "nan", "deep", "dev-zero"])
def test_from_package_with_hostile_state_says_which_step_to_run(build_copy: Build, kind):
    state = build_copy.output_dir / "pipeline" / "state.json"
    _hostile(kind, state)
    result = run_buildmodel("--from", "package", cwd=build_copy.root, timeout=120)
    assert result.returncode == ExitCode.USAGE, result.stdout + result.stderr
    named = [line for line in result.stdout.splitlines() if "state.json: no reusable state" in line]
    assert len(named) == 1, result.stdout
    assert result.stderr.count("\n") == 1 and "run with --from data" in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_run_after_hostile_state_redoes_the_step_and_records_it(build_copy: Build):
    state = build_copy.output_dir / "pipeline" / "state.json"
    _hostile("fifo", state)
    result = run_buildmodel("--to", "data", cwd=build_copy.root, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "data      done" in result.stdout and "reused" not in result.stdout
    assert set(json.loads(state.read_text())) == {"data"}
