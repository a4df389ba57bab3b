"""on_target.py against the code it copies (issue 25): no shared name or rule can drift.

The board script runs without the project, so it keeps its own copies of iris_fpga/contract.py's
names, of fileio.printable, of flow/checks.py's input range, of the manifest check and of the exit
codes. Each test here derives what the copy must be from the workstation's code, not from a list
of values written down again: a new constant in contract.py fails until the board script mirrors
it or CONTRACT_ON_BOARD says why the board does not need it.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iris_fpga import config, contract
from iris_fpga.datapath.fixedpoint import FixedType
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import printable
from iris_fpga.flow import checks
from iris_fpga.ip import verilog
from test_on_target import IN_PROCESS, IP_FIELDS, ON_TARGET, _import_file, on_target, package, source  # noqa: F401

PACKAGE_FILE = "a file the package holds: mirrored, and in PACKAGE_FILES, so --output never replaces it"
MIRRORED = "mirrored under the same name"
# Every public constant of iris_fpga/contract.py, and what the board script does with it.
CONTRACT_ON_BOARD = {
    "MANIFEST": PACKAGE_FILE,
    "DATA_FILES": PACKAGE_FILE,
    "CSIM_FILES": PACKAGE_FILE,
    "DRIVER": PACKAGE_FILE,
    "BOARD_SCRIPT": PACKAGE_FILE,
    "NOTEBOOK": PACKAGE_FILE,
    "ESTIMATE": PACKAGE_FILE,
    "PROFILE": PACKAGE_FILE,
    "BITSTREAM_FILES": PACKAGE_FILE,
    "VIVADO_REPORTS": PACKAGE_FILE,
    "RESULT_FILES": MIRRORED,  # what the board writes, so not among the files --output may not replace
    "BITSTREAM_STEM": MIRRORED,
    "EMULATION_DIR": MIRRORED,
    "PYCACHE": MIRRORED,
    "MANIFEST_FIELDS": MIRRORED,
    "MAX_MANIFEST_BYTES": MIRRORED,
    "PREVIOUS": "board does not need this: older results the build moves aside, never read on the board",
    "EXTRA_FILES": "board does not need this: what may sit beside the listed files is the build's and deploy's "
                   "check of a whole folder; the board checks the files it uses",
    "EXTRA_DIRS": "board does not need this: as EXTRA_FILES",
    "MAX_ENTRIES": "board does not need this: a bound on listing a folder, which the board script never lists",
}
HOSTILE = "\x1b\x9b\u202e\x07\n\r\x00\x7f\t\u2028\ufeffé名"


def contract_constants() -> dict:
    return {name: value for name, value in vars(contract).items() if name.isupper() and not name.startswith("_")}


@pytest.fixture(scope="module")
def board_script():
    """The repository's on_target.py as a module (what every package copies)."""
    return _import_file(ON_TARGET, "on_target_drift")


def test_every_constant_of_the_contract_is_classified():
    """A constant added to contract.py fails here until it is mirrored or said not to be needed."""
    assert set(CONTRACT_ON_BOARD) == set(contract_constants())


@pytest.mark.parametrize("name", sorted(contract_constants()))
def test_each_constant_the_board_needs_is_the_contracts(board_script, name):
    role = CONTRACT_ON_BOARD.get(name, "unclassified")
    if role in (PACKAGE_FILE, MIRRORED):
        assert getattr(board_script, name, "absent from on_target.py") == getattr(contract, name)
    else:
        assert role.startswith("board does not need this: "), f"{name}: {role}"


def test_the_files_output_may_not_replace_are_every_package_file(board_script):
    names = set()
    for name, role in CONTRACT_ON_BOARD.items():
        if role == PACKAGE_FILE:
            value = getattr(contract, name)
            names.update([value] if isinstance(value, str) else value)
    assert set(board_script.PACKAGE_FILES) == names
    assert not names & set(contract.RESULT_FILES)
    assert (board_script.DEFAULT_INPUT, board_script.LABELS_FILE) == contract.DATA_FILES[:2]
    assert board_script.DEFAULT_BITFILE == contract.BITSTREAM_FILES[0]
    assert board_script.DEFAULT_OUTPUT == contract.RESULT_FILES[0]


def test_exit_codes_are_the_projects(board_script):
    codes = {name[len("EXIT_"):]: value for name, value in vars(board_script).items() if name.startswith("EXIT_")}
    assert codes and all(ExitCode[name] == value for name, value in codes.items()), codes


def test_the_ip_clock_is_the_one_the_ip_declares(board_script):
    """The workstation's one clock constant, the board script's copy, and what the IP's Verilog declares."""
    declared = {int(hz) for hz in re.findall(r"FREQ_HZ (\d+)", "\n".join(verilog._ports()))}
    assert declared == {board_script.IP_CLOCK_HZ} == {config.IP_CLOCK_HZ}


def test_the_dma_limit_is_the_emulated_boards(board_script, package):
    standin = _import_file(package / contract.EMULATION_DIR / "pynq" / "__init__.py", "standin_drift")
    assert board_script.DMA_TRANSFER_LIMIT == standin.DEFAULT_MAX_TRANSFER


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.one_of(st.characters(), st.sampled_from(HOSTILE))))
def test_the_escaping_is_fileios(board_script, text):
    escaped = board_script.printable(text)
    assert escaped == printable(text)
    assert escaped.isprintable()


@settings(max_examples=300, deadline=None)
@given(name=st.one_of(st.text(alphabet=st.one_of(st.sampled_from("a./\\_-"), st.sampled_from(HOSTILE),
                                                  st.characters()), max_size=12),
                      st.sampled_from(["a.npy", "../a", "/abs", "a//b", "./a", "a/./b", "manifest.json", "y_hw.npy",
                                       "y_hw.json", "", ".", "d/e.py", "a\nb", "x\\y", "a/"])))
def test_the_manifest_entry_rule_is_the_contracts(board_script, name):
    assert board_script._plain_relative(name) == contract.plain_relative(name)


# --------------------------------------------------------------------------- the input type's range


def _hls4ml_types():
    """Input types as hls4ml makes them: (the string it writes into the manifest, its precision)."""
    from hls4ml.backends.fpga.fpga_types import APTypeConverter
    from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType, RoundingMode, SaturationMode

    def fixed(signed, width, integer, rounding, saturation, bits):
        return FixedPrecisionType(width, integer, signed, rounding, saturation, bits)

    fixed_types = st.builds(fixed, st.booleans(), st.integers(1, 1024), st.integers(-1024, 1024),
                            st.sampled_from(list(RoundingMode)), st.sampled_from(list(SaturationMode)),
                            st.integers(0, 4))
    int_types = st.builds(lambda signed, width: IntegerPrecisionType(width, signed), st.booleans(),
                          st.integers(1, 1024))
    converter = APTypeConverter()
    return st.one_of(fixed_types, int_types).map(lambda p: (converter.convert(p).definition_cpp(), p))


def _near_edges(low: float, high: float, step: float):
    """float32 values at, just inside and just outside both edges (those float32 can hold), and anywhere."""
    top = float(np.finfo(np.float32).max)
    edges = [e for e in (low, high, low - step, high - step, low - step / 2, high - step / 2, low + step / 2, 0.0)
             if abs(e) <= top]
    near = st.sampled_from(edges).map(np.float32).flatmap(
        lambda e: st.sampled_from([e, np.nextafter(e, np.float32(-top)), np.nextafter(e, np.float32(top))]))
    return st.one_of(near, st.floats(width=32, allow_nan=False, allow_infinity=False).map(np.float32))


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_input_range_and_out_of_range_are_the_builds(board_script, data):
    """Every rounding and overflow mode, as hls4ml writes the type, against flow/checks.py."""
    type_name, precision = data.draw(_hls4ml_types())
    fixed = FixedType.from_hls4ml(precision, "the input layer")
    expected = checks.input_range(fixed)
    assert board_script.input_range(type_name) == expected, type_name
    ip = board_script.read_ip(dict(IP_FIELDS, input_type=type_name))
    low, high = expected.low, expected.high
    rows = data.draw(st.integers(1, 40))
    values = data.draw(st.lists(_near_edges(low, high, 2.0 ** -fixed.frac), min_size=rows * 4, max_size=rows * 4))
    x = np.array(values, dtype=np.float32).reshape(rows, 4)
    outside = board_script.out_of_range(np, x, ip)
    assert outside["first_samples"] == checks.out_of_range(x, fixed)
    assert outside["range"] == [low, high] and outside["closed"] == [expected.low_closed, expected.high_closed]
    assert outside["input_type"] == type_name


def test_the_rounding_modes_move_the_edges(board_script):
    """ap_fixed<16,6,AP_RND> holds [-32 - 2**-11, 32 - 2**-11); a tie at either edge rounds inward or
    outward by the mode; symmetric saturation holds one step less below (tests/test_input_range.py
    checks the rule against ap_fixed's C++)."""
    half_step = 2.0 ** -11
    assert board_script.input_range("ap_fixed<16,6>") == (-32.0, 32.0, True, False)
    assert board_script.input_range("ap_fixed<16,6,AP_RND,AP_SAT,0>") == (-32 - half_step, 32 - half_step, True, False)
    assert board_script.input_range("ap_fixed<16,6,AP_RND_INF>") == (-32 - half_step, 32 - half_step, False, False)
    assert board_script.input_range("ap_fixed<16,6,AP_TRN_ZERO>") == (-32 - 2 * half_step, 32.0, False, False)
    assert board_script.input_range("ap_fixed<16,6,AP_TRN,AP_SAT_SYM>") == (-32 + 2 * half_step, 32.0, True, False)


# --------------------------------------------------------------------------- the manifest check

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
MANIFEST_KEYS = ["build_id", "created", "settings", "versions", "files"]


@IN_PROCESS
@given(changes=st.dictionaries(st.sampled_from(MANIFEST_KEYS), JSON, max_size=2),
       entries=st.dictionaries(st.sampled_from(["a.npy", "../a", "/abs", "a//b", "manifest.json", "y_hw.npy", "",
                                                "d/e.py", "a\nb", "x\\y"]), JSON, max_size=2))
def test_the_manifest_checks_agree_with_the_contract(package, on_target, changes, entries):  # noqa: F811
    """on_target.py's copy of the manifest check accepts exactly what iris_fpga.contract accepts."""
    manifest = json.loads((package / "manifest.json").read_text())
    manifest.update(changes)
    if isinstance(manifest.get("files"), dict):
        manifest["files"] = {**manifest["files"], **entries}
    (package / "manifest.json").write_text(json.dumps(manifest))
    try:
        contract.read_manifest(package)
        by_contract = None
    except ToolError as exc:
        by_contract = exc
    try:
        on_target.module.read_manifest(False)
        by_board = None
    except on_target.module.TargetError as exc:
        by_board = exc
    hex_id = isinstance(manifest.get("build_id"), str) and len(manifest["build_id"]) == 16 \
        and set(manifest["build_id"]) <= set("0123456789abcdef")
    assert (by_board is None) == (by_contract is None and hex_id), (by_board, by_contract)
    if by_board is not None:
        assert by_board.code == ExitCode.USAGE and "\n" not in str(by_board)

