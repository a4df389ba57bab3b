"""The rtl accelerator's bitstream flow, without Vivado: the design script against hls4ml's own, the
IP's Verilog against Vivado's rules for module references, and the run against stand-in Vivados
(tests/vivado_standin: tclsh with a checking stand-in for each Vivado command the script uses)."""
from __future__ import annotations

import difflib
import logging
import os
import shutil
import subprocess
from importlib.util import find_spec
from pathlib import Path

import pytest

from iris_fpga import vivado
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.vivado_ports import check_ip_verilog
from iris_fpga.vivado_ip import build_rtl_bitstream, write_design_tcl

STANDIN = Path(__file__).resolve().parent / "vivado_standin"
STANDIN_IP = STANDIN / "myproject_axi.v"
TIMING_MET, TIMING_VIOLATED = STANDIN / "timing_met.rpt", STANDIN / "timing_violated.rpt"
TOP = "myproject_axi"
SYSTEM_PATH = os.pathsep.join(["/usr/bin", "/bin"])  # tclsh, sh; no Vivado of any kind


def hls4ml_pynq_template() -> str:
    root = Path(find_spec("hls4ml").submodule_search_locations[0])
    return (root / "templates/vivado_accelerator/pynq-z2/tcl_scripts/axi_stream_design.tcl").read_text()


@pytest.fixture
def ip(tmp_path) -> Path:
    """The stand-in IP's top in its own folder, as the ip step leaves the real one."""
    folder = tmp_path / "ip"
    folder.mkdir()
    shutil.copy(STANDIN_IP, folder / f"{TOP}.v")
    return folder / f"{TOP}.v"


@pytest.fixture
def standin_path(monkeypatch):
    """PATH with the tclsh stand-in `vivado` and no vivado_hls."""
    assert not any((Path(d) / name).exists() for d in SYSTEM_PATH.split(os.pathsep) for name in ("vivado", "vivado_hls"))
    monkeypatch.setenv("PATH", os.pathsep.join([str(STANDIN), SYSTEM_PATH]))
    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    for name in ("STANDIN_VIVADO_IMPL", "STANDIN_VIVADO_VERSION", "STANDIN_VIVADO_BOARD_PARTS", "STANDIN_VIVADO_TIMING"):
        monkeypatch.delenv(name, raising=False)


def test_rtl_needs_vivado_alone(standin_path):
    assert vivado.find_vivado_rtl() == STANDIN / "vivado"
    assert vivado.find_vivado() is None  # the hls flow still needs vivado_hls too


def test_rtl_finds_vivado_in_xilinx_vivado(tmp_path, monkeypatch):
    install = tmp_path / "Vivado" / "2023.2"
    (install / "bin").mkdir(parents=True)
    (install / "bin" / "vivado").write_text("#!/bin/sh\n")
    (install / "bin" / "vivado").chmod(0o755)
    monkeypatch.setenv("PATH", SYSTEM_PATH)
    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    assert vivado.find_vivado_rtl() is None
    monkeypatch.setenv("XILINX_VIVADO", str(install))
    assert vivado.find_vivado_rtl() == install / "bin" / "vivado"


def test_without_vivado_the_message_says_what_to_install_for_each_accelerator():
    rtl, hls = vivado.not_found_message("rtl"), vivado.not_found_message("hls")
    assert "Vivado 2021.1 or later" in rtl and "Vivado HLS is not needed" in rtl and "--accelerator rtl" in rtl
    assert "Vivado HLS + Vivado 2020.1" in hls and "vivado_hls" in hls


def test_design_script_differs_from_hls4ml_only_in_the_ip_lines(ip, tmp_path):
    template = hls4ml_pynq_template().splitlines()
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP).read_text().splitlines()
    changes = [(template[i1:i2], script[j1:j2])
               for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=template, b=script, autojunk=False).get_opcodes()
               if op != "equal"]
    bd = "./${project_name}_vivado_accelerator/project_1.srcs/sources_1/bd/design_1"
    assert changes == [
        (["set_property  ip_repo_paths  ${project_name}_prj [current_project]"],
         [f"add_files -norecurse {{{ip}}}", "update_compile_order -fileset sources_1"]),
        (["create_bd_cell -type ip -vlnv xilinx.com:hls:${project_name}_axi:1.0 ${project_name}_axi_0"],
         [f"create_bd_cell -type module -reference {TOP} ${{project_name}}_axi_0",
          f"if {{![string match xilinx.com:module_ref:{TOP}:* "
          f"[get_property VLNV [get_bd_cells ${{project_name}}_axi_0]]]}} "
          f'{{ error "the module reference {TOP} did not resolve" }}']),
        ([f"make_wrapper -files [get_files {bd}/design_1.bd] -top"],
         [f"set wrapper [make_wrapper -files [get_files {bd}/design_1.bd] -top]"]),
        ([f"add_files -norecurse {bd}/hdl/design_1_wrapper.v"],
         ["add_files -norecurse $wrapper", "set_property top [file rootname [file tail $wrapper]] [current_fileset]",
          "update_compile_order -fileset sources_1"]),
        ([], ["report_timing_summary -file timing.rpt"]),
    ]
    # what stays: the PS7, the DMA's settings, the IP beside the DMA in hier_0, FCLK0 at 100 MHz
    for kept in ("processing_system7:5.5", "CONFIG.c_include_sg {0} CONFIG.c_sg_length_width {26}",
                 "group_bd_cells hier_0 [get_bd_cells axi_dma_0] [get_bd_cells ${project_name}_axi_0]",
                 "Clk {/processing_system7_0/FCLK_CLK0 (100 MHz)} Freq {100}"):
        assert sum(kept in line for line in script) == sum(kept in line for line in template) >= 1
    assert (tmp_path / "vivado" / "project.tcl").read_text().count("set bit_width_hls_") == 2


@pytest.mark.parametrize("case", ["missing file", "no files", "top not an identifier", "board without the lines"])
def test_design_script_refuses_bad_input(case, ip, tmp_path):
    files, top, board = [ip], TOP, "pynq-z2"
    if case == "missing file":
        files = [ip.with_name("absent.v")]
    elif case == "no files":
        files = []
    elif case == "top not an identifier":
        top = "myproject_axi; exit"
    else:
        board = "zcu102"  # hls4ml's zcu102 script names its IP repository differently
    with pytest.raises(ToolError) as err:
        write_design_tcl(tmp_path / "vivado", files, top, board)
    assert err.value.code == ExitCode.USAGE
    assert not (tmp_path / "vivado" / "design.tcl").exists()


def test_standin_vivado_builds_and_the_files_are_copied(ip, tmp_path, standin_path):
    check_ip_verilog(ip.parent, [ip.name], TOP)
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP)
    dest = tmp_path / "staging"
    built = build_rtl_bitstream(vivado.find_vivado_rtl(), script, dest)
    assert [p.name for p in built.outputs] == ["hls4ml_nn.bit", "hls4ml_nn.hwh", "vivado_utilization.rpt",
                                               "vivado_timing.rpt"]
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in built.outputs)
    assert (dest / "hls4ml_nn.bit").read_bytes() == b"STAND-IN BIT"
    assert (dest / "vivado_timing.rpt").read_text() == TIMING_MET.read_text()
    assert "sourcing design.tcl" in (tmp_path / "vivado" / "vivado.log").read_text()
    assert built.version == "2023.2"
    assert built.timing.met and built.timing.figures == {"wns_ns": 0.388, "tns_ns": 0.0, "whs_ns": 0.031, "ths_ns": 0.0}


def _break_script(script: Path, ip: Path, case: str) -> str:
    """Change the generated script (or its inputs) one way; return what the error must mention."""
    text = script.read_text()
    if case == "unknown command":
        script.write_text(text.replace("group_bd_cells hier_0", "group_bd_cellz hier_0"))
        return 'invalid command name "group_bd_cellz"'
    if case == "missing Verilog file":
        ip.unlink()
        return "file does not exist"
    if case == "HLS IP as in hls4ml's script":
        script.write_text(text.replace(f"-type module -reference {TOP}", "-type ip -vlnv xilinx.com:hls:${project_name}_axi:1.0"))
        return "no IP xilinx.com:hls:myproject_axi:1.0"
    if case == "hls4ml's wrapper path (before Vivado 2020.2)":
        script.write_text(text.replace("add_files -norecurse $wrapper", "add_files -norecurse ./${project_name}_vivado_"
                                       "accelerator/project_1.srcs/sources_1/bd/design_1/hdl/design_1_wrapper.v"))
        return "design_1_wrapper.v"
    if case == "module reference that is not one":
        script.write_text(text.replace(f"-type module -reference {TOP}", "-type ip -vlnv xilinx.com:ip:axi_dma:7.1"))
        return f"the module reference {TOP} did not resolve"
    if case == "top not the wrapper":
        script.write_text(text.replace("set_property top [file rootname [file tail $wrapper]]",
                                       f"set_property top {TOP}"))
        return f"the top is {TOP}, not the block design's wrapper"
    if case == "IP without an in_r interface":
        ip.write_text(ip.read_text().replace("axis:1.0 in_r ", "axis:1.0 in_x "))
        return "connect_bd_intf_net: no interface pin given"
    if case == "clock not 100 MHz":
        script.write_text(text.replace("Freq {100}", "Freq {50}"))
        return "50 MHz"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["unknown command", "missing Verilog file", "HLS IP as in hls4ml's script",
                                  "hls4ml's wrapper path (before Vivado 2020.2)", "module reference that is not one",
                                  "top not the wrapper", "IP without an in_r interface", "clock not 100 MHz"])
def test_standin_vivado_refuses_a_broken_script(case, ip, tmp_path, standin_path):
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP)
    expected = _break_script(script, ip, case)
    with pytest.raises(ToolError) as err:
        build_rtl_bitstream(vivado.find_vivado_rtl(), script, tmp_path / "staging")
    message = str(err.value)
    assert err.value.code == ExitCode.EXTERNAL_TOOL
    assert "exited with code 1" in message and expected in message
    assert message.endswith(f"read {tmp_path / 'vivado' / 'vivado.log'}")
    assert not (tmp_path / "staging" / "hls4ml_nn.bit").exists()


def test_failed_implementation_leaves_no_bitstream_old_or_new(ip, tmp_path, standin_path, monkeypatch):
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP)
    dest = tmp_path / "staging"
    build_rtl_bitstream(vivado.find_vivado_rtl(), script, dest)  # an earlier, good build
    monkeypatch.setenv("STANDIN_VIVADO_IMPL", "fail")
    with pytest.raises(ToolError) as err:
        build_rtl_bitstream(vivado.find_vivado_rtl(), script, dest)
    assert err.value.code == ExitCode.EXTERNAL_TOOL
    assert "without design_1_wrapper.bit, design_1.hwh, util.rpt, timing.rpt" in str(err.value)
    assert "vivado.log" in str(err.value)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "vivado" / vivado.BIT_RELATIVE).exists()


def test_vivado_that_writes_nothing_is_exit_3_naming_the_log(ip, tmp_path):
    silent = tmp_path / "bin" / "vivado"
    silent.parent.mkdir()
    silent.write_text("#!/bin/sh\necho 'Vivado v2023.2 (64-bit)'\nexit 0\n")
    silent.chmod(0o755)
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP)
    with pytest.raises(ToolError) as err:
        build_rtl_bitstream(silent, script, tmp_path / "staging")
    assert err.value.code == ExitCode.EXTERNAL_TOOL
    log_path = tmp_path / "vivado" / "probe.log"
    assert str(err.value) == f"Vivado's version check (`version -short`) failed (exit code 0); read {log_path}"
    assert log_path.read_text() == "Vivado v2023.2 (64-bit)\n"
    assert not (tmp_path / "vivado" / "vivado.log").exists()  # the long run never started
    assert not (tmp_path / "staging").exists()


def test_standin_ip_passes_the_verilog_checks(ip):
    check_ip_verilog(ip.parent, [ip.name], TOP)


@pytest.mark.parametrize("change, waive, expected", [
    (("input wire ap_rst_n", "input logic ap_rst_n"), (), "Verilog-2005 lint failed"),
    (("always @(posedge ap_clk)", "always_ff @(posedge ap_clk)"), (), "Verilog-2005 lint failed"),
    (("in_r_TDATA;", "in_r_TDATA[15:0];"), (), "Verilog-2005 lint failed: %Warning-WIDTHEXPAND"),
    (('(* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 ap_clk CLK" *)', ""), (),
     'port ap_clk needs (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 ap_clk CLK" *)'),
    (("ASSOCIATED_BUSIF in_r:out_r", "ASSOCIATED_BUSIF in_r"), (), "port ap_clk needs ASSOCIATED_BUSIF in_r:out_r"),
    (('"POLARITY ACTIVE_LOW"', '"POLARITY ACTIVE_HIGH"'), (), "port ap_rst_n needs POLARITY ACTIVE_LOW"),
    (("axis:1.0 out_r TLAST", "axis:1.0 out_r TLST"), (), 'port out_r_TLAST needs (* X_INTERFACE_INFO'),
    # waived lint warnings, so that the port check is what fails
    (("input wire [31:0] in_r_TDATA", "input wire [15:0] in_r_TDATA"), ("WIDTHEXPAND",),
     "port in_r_TDATA is input [16], expected input [32]"),
    (("input wire in_r_TLAST,", "input wire in_r_TLAST,\n    input wire in_r_TUSER,"), ("UNUSEDSIGNAL",),
     "port in_r_TUSER is not one the block design connects"),
])
def test_verilog_checks_fail_on_what_vivado_would_refuse(change, waive, expected, ip):
    old, new = change
    assert old in ip.read_text()
    ip.write_text(ip.read_text().replace(old, new))
    with pytest.raises(ToolError) as err:
        check_ip_verilog(ip.parent, [ip.name], TOP, waive=waive)
    assert err.value.code == ExitCode.EXTERNAL_TOOL
    assert expected in str(err.value)


# --------------------------------------------------------------------------- a stock Vivado: board files, version


def test_a_vivado_without_the_board_files_is_refused_before_the_long_run(ip, tmp_path, standin_path, monkeypatch):
    monkeypatch.setenv("STANDIN_VIVADO_BOARD_PARTS", "")  # as Vivado ships: no PYNQ-Z2 board files
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP)
    with pytest.raises(ToolError) as err:
        build_rtl_bitstream(vivado.find_vivado_rtl(), script, tmp_path / "staging")
    message = str(err.value)
    assert err.value.code == ExitCode.EXTERNAL_TOOL and "\n" not in message
    assert message.startswith("Vivado has no board files for tul.com.tw:pynq-z2:part0:1.0")
    for fix in ("Tools > Vivado Store > Boards", "xhub::install [xhub::get_xitems *pynq-z2*]",
                "github.com/Xilinx/XilinxBoardStore, boards/TUL/pynq-z2", "data/boards/board_files",
                "python BuildModel.py --accelerator rtl --from bitstream"):
        assert fix in message
    assert not (tmp_path / "vivado" / "vivado.log").exists()  # stopped before the long run
    assert not (tmp_path / "staging").exists()


def test_the_design_script_alone_stops_where_a_stock_vivado_does(ip, tmp_path, standin_path, monkeypatch):
    """Without the probe, the script itself fails at hls4ml's board_part line with Vivado's [Board 49-71]."""
    monkeypatch.setenv("STANDIN_VIVADO_BOARD_PARTS", "")
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP)
    result = subprocess.run([str(vivado.find_vivado_rtl()), "-mode", "batch", "-source", script.name],
                            cwd=script.parent, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert ("ERROR: [Board 49-71] The board_part definition was not found for tul.com.tw:pynq-z2:part0:1.0"
            in (script.parent / "vivado.log").read_text())
    assert vivado.missing_board_part(script.parent / "vivado.log") == "tul.com.tw:pynq-z2:part0:1.0"


@pytest.mark.parametrize("version", ["2020.1", "2019.2"])
def test_vivado_before_2020_2_is_refused(version, ip, tmp_path, standin_path, monkeypatch):
    monkeypatch.setenv("STANDIN_VIVADO_VERSION", version)
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP)
    with pytest.raises(ToolError) as err:
        build_rtl_bitstream(vivado.find_vivado_rtl(), script, tmp_path / "staging")
    assert err.value.code == ExitCode.EXTERNAL_TOOL
    assert str(err.value) == (f"Vivado {version} is too old for the rtl accelerator: it needs 2020.2 or later (module "
                              "references are documented from 2021.1); install Vivado 2021.1 or later")
    assert not (tmp_path / "vivado" / "vivado.log").exists()


def test_vivado_2020_2_builds_with_a_warning_that_it_is_untested(ip, tmp_path, standin_path, monkeypatch, caplog):
    monkeypatch.setenv("STANDIN_VIVADO_VERSION", "2020.2")
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP)
    with caplog.at_level(logging.WARNING):
        built = build_rtl_bitstream(vivado.find_vivado_rtl(), script, tmp_path / "staging")
    assert built.version == "2020.2" and (tmp_path / "staging" / "hls4ml_nn.bit").is_file()
    assert "Vivado 2020.2: module references are documented from Vivado 2021.1; this version is untested" in caplog.text


def test_the_wrapper_path_is_the_one_vivado_gives(ip, tmp_path, standin_path, monkeypatch):
    """A Vivado that generates block design files under project_1.srcs (before 2020.2) runs the script too."""
    monkeypatch.setenv("STANDIN_VIVADO_VERSION", "2020.1")
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP)
    result = subprocess.run([str(vivado.find_vivado_rtl()), "-mode", "batch", "-source", script.name],
                            cwd=script.parent, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-2000:]
    assert (script.parent / "myproject_vivado_accelerator/project_1.srcs/sources_1/bd/design_1/hdl/"
            "design_1_wrapper.v").is_file()
    assert (script.parent / vivado.BIT_RELATIVE).is_file()


# --------------------------------------------------------------------------- timing is part of "built"


def _with_slack(report: str, column: int, value: str) -> str:
    """The report with the Design Timing Summary's figure in ``column`` (0 WNS, 4 WHS) set to ``value``."""
    lines = report.splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if line.startswith("    -------")) + 1
    fields = lines[row].split()
    fields[column] = value
    lines[row] = "    " + "  ".join(fields) + "\n"
    return "".join(lines)


def test_timing_not_met_is_exit_3_naming_the_slack_and_the_path(ip, tmp_path, standin_path, monkeypatch):
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP)
    dest = tmp_path / "staging"
    build_rtl_bitstream(vivado.find_vivado_rtl(), script, dest)  # an earlier build that met timing
    monkeypatch.setenv("STANDIN_VIVADO_TIMING", str(TIMING_VIOLATED))
    with pytest.raises(ToolError) as err:
        build_rtl_bitstream(vivado.find_vivado_rtl(), script, dest)
    report = tmp_path / "vivado" / "timing.rpt"
    assert err.value.code == ExitCode.EXTERNAL_TOOL
    assert str(err.value) == (
        "timing not met: worst setup slack -0.412 ns (WNS; TNS -3.873 ns) from "
        "design_1_i/hier_0/myproject_axi_0/inst/in_word_reg[17]/C to design_1_i/hier_0/myproject_axi_0/inst/"
        f"cast_q_reg[15]/D; no bitstream packaged (read {report}; --accept-timing-violations packages it anyway)")
    assert list(dest.iterdir()) == []  # neither the new bitstream nor the earlier one


def test_hold_violation_is_not_met_either(ip, tmp_path, standin_path, monkeypatch):
    violated = tmp_path / "hold.rpt"
    violated.write_text(_with_slack(TIMING_MET.read_text(), 4, "-0.052"))
    monkeypatch.setenv("STANDIN_VIVADO_TIMING", str(violated))
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP)
    with pytest.raises(ToolError, match=r"timing not met: worst hold slack -0.052 ns \(WHS; THS 0 ns\) from "
                                        r"design_1_i/hier_0/axi_dma_0/\S+/s_soft_reset_i_reg/C to "):
        build_rtl_bitstream(vivado.find_vivado_rtl(), script, tmp_path / "staging")
    assert not (tmp_path / "staging").exists()


def test_accepted_timing_violations_package_the_bitstream_and_say_so(ip, tmp_path, standin_path, monkeypatch, caplog):
    monkeypatch.setenv("STANDIN_VIVADO_TIMING", str(TIMING_VIOLATED))
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP)
    with caplog.at_level(logging.WARNING):
        built = build_rtl_bitstream(vivado.find_vivado_rtl(), script, tmp_path / "staging",
                                    accept_timing_violations=True)
    assert (tmp_path / "staging" / "hls4ml_nn.bit").read_bytes() == b"STAND-IN BIT"
    assert not built.timing.met
    assert built.timing.figures == {"wns_ns": -0.412, "tns_ns": -3.873, "whs_ns": 0.031, "ths_ns": 0.0}
    assert "timing NOT met (worst setup slack -0.412 ns" in caplog.text


@pytest.mark.parametrize("change, expected", [
    (lambda text: text.replace("| Design Timing Summary", "| Design Summary"), "has no Design Timing Summary"),
    (lambda text: _with_slack(text, 0, "NA"), "gives WNS(ns) as NA (no timed paths?): timing is unchecked"),
    (lambda text: text.replace("      0.388        0.000", "", 1), "without its row of figures"),
])
def test_a_timing_report_without_its_figures_is_exit_3(change, expected, ip, tmp_path, standin_path, monkeypatch):
    broken = tmp_path / "broken.rpt"
    broken.write_text(change(TIMING_MET.read_text()))
    monkeypatch.setenv("STANDIN_VIVADO_TIMING", str(broken))
    script = write_design_tcl(tmp_path / "vivado", [ip], TOP)
    with pytest.raises(ToolError) as err:
        build_rtl_bitstream(vivado.find_vivado_rtl(), script, tmp_path / "staging")
    assert err.value.code == ExitCode.EXTERNAL_TOOL and expected in str(err.value)
    assert not (tmp_path / "staging").exists()
