"""The steps of the build, one function each, and ``STEPS``: the table that declares them.

A step function takes the shared ``Build`` and returns an ``Outcome``. Heavy packages
(TensorFlow, hls4ml) are imported inside the steps that need them, so that the runner can compute
every cache key from the table alone, before any of them is imported.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from iris_fpga import data as iris_data
from iris_fpga.flow import records
from iris_fpga.flow.checks import input_range, non_finite_layers, out_of_range, sample_list
from iris_fpga.flow.context import GRAPH, HLS_CONFIG, WEIGHTS, Build, Outcome, Step
from iris_fpga.contract import (BITSTREAM_FILES, BOARD_SCRIPT, CSIM_FILES, DATA_FILES, DRIVER, ESTIMATE, NOTEBOOK,
                                PROFILE, VIVADO_REPORTS)
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import atomic_save_npy, atomic_write_bytes, atomic_write_json, printable
from iris_fpga.emulation.verilated_ip import BUILD_FLAGS as EMULATOR_FLAGS
from iris_fpga.emulation.verilated_ip import HARNESS_SOURCE as EMULATOR_HARNESS
from iris_fpga.hls import WEIGHTS_DIR_SOURCE
from iris_fpga.packaging import publish
from iris_fpga.datapath.report import TOOLS as RTL_TOOLS
from iris_fpga.versions import COMPILER, VIVADO

log = logging.getLogger("BuildModel")

ON_TARGET = Path(__file__).resolve().parents[2] / BOARD_SCRIPT
IP_DIR = "ip"  # <output-dir>/ip/: the accelerator IP's Verilog (src/) and its verification build
IP_ESTIMATE = f"{IP_DIR}/{ESTIMATE}"  # staged by the ip step: the rtl step's figures and the whole IP's
EARLY_PROJECT = "early-csim"  # <output-dir>/pipeline/early-csim/: the untrained network's project, compiled while training runs
EMULATOR_DIR = "emulator"  # <output-dir>/emulator/: the IP as a shared library for the emulated board
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # iris_fpga/


def sources_of(*paths: str) -> tuple[str, ...]:
    """The text of the project's modules at ``paths`` (files or folders of iris_fpga/), for a step whose
    outputs this code generates: a changed generator (a new version of this tool) makes them again."""
    files = sorted(f for p in paths
                   for f in ([PACKAGE_ROOT / p] if p.endswith(".py") else (PACKAGE_ROOT / p).glob("*.py")))
    return tuple(f"{f.relative_to(PACKAGE_ROOT)}\n{f.read_text()}" for f in files)


# -- data, train ------------------------------------------------------------------------------
def step_data(build: Build) -> Outcome:
    split = iris_data.load_split(build.config)
    fold = build.config.cv_fold
    if fold:  # X_test/y_test are then the held-out fold: every later step scores it, never the test set
        split = iris_data.fold_split(split, *fold, iris_data.scaling(build.config))
    build.loaded["split"] = split
    outputs = iris_data.save_split(split, build.staging)
    dataset = iris_data.description(build.config, split)
    log.info("          %s: %d features, %d training, %d %s samples, classes %s", dataset["name"],
             len(split.features), len(split.X_train), len(split.X_test), held_out_name(build),
             printable(", ".join(split.classes)))
    return Outcome({"n_train": len(split.X_train), "n_test": len(split.X_test), "dataset": dataset}, tuple(outputs))


def held_out_name(build: Build) -> str:
    """What X_test holds: the test set, or fold I/K of the training part (``--cv-fold``)."""
    fold = build.config.cv_fold
    return f"held-out fold {fold[0]}/{fold[1]}" if fold else "test"


def step_train(build: Build) -> Outcome:
    from iris_fpga import model as iris_model
    from iris_fpga.keras_compat import tf_keras

    split = build.split()
    t0 = time.perf_counter()
    tf_keras()  # TensorFlow's import is a large share of a run: measured on its own
    t1 = time.perf_counter()
    start_early_compile(build, split)
    model, history = iris_model.train(build.config, split.X_train, split.y_train)
    t2 = time.perf_counter()
    diverged = non_finite_layers(model)
    if diverged:
        raise ToolError(f"training diverged: layer {diverged[0]} has non-finite weights (NaN or infinity); "
                        f"nothing was kept: lower --lr (now {build.config.lr:g})", ExitCode.CHECK_FAILED)
    build.loaded["model"] = model
    weights = build.work / WEIGHTS
    iris_model.save_weights(model, weights)
    return Outcome({
        "sparsity": iris_model.measure_sparsity(model),
        "import_s": round(t1 - t0, 3),
        "fit_s": round(t2 - t1, 3),
        "final_loss": float(history["loss"][-1]),
        "final_val_accuracy": float(history["val_accuracy"][-1]),
    }, (weights,))


def start_early_compile(build: Build, split) -> None:
    """Start the C-simulation's g++ run from the untrained network while training runs, when this run
    goes on to the csim step (``hls.EarlyCompile``; the runner cancels it if the csim step never takes it)."""
    from iris_fpga import hls
    from iris_fpga import model as iris_model

    if "csim" not in build.active_steps:
        return
    try:
        network = iris_model.build_network(build.config, split.X_train.shape[1], split.y_train.shape[1])
        build.loaded["early_compile"] = hls.EarlyCompile.start(network, build.config, build.work / EARLY_PROJECT)
    except Exception as exc:  # noqa: BLE001 - only a head start: the csim step converts and compiles as always
        log.debug("          no early compile (%r): the csim step compiles", exc)


def sparsity_lines(build: Build, result: dict) -> list[tuple[str, str]]:
    sp = result["sparsity"]
    per = ", ".join(f"{k} {100 * v:.1f}%" for k, v in sp["per_layer"].items())
    return [("sparsity", f"{100 * sp['overall']:.1f}% of weights are zero ({per})")]


# -- convert, csim ----------------------------------------------------------------------------
def step_convert(build: Build) -> Outcome:
    cfg = build.convert()
    cfg_path = build.work / HLS_CONFIG
    atomic_write_json(cfg_path, cfg)
    driver = build.staging / DRIVER  # hls4ml's generated driver, staged for the package as it is
    atomic_write_bytes(driver, (build.output_dir / DRIVER).read_bytes())
    return Outcome({"project": str(build.output_dir)}, (cfg_path, driver))


def step_csim(build: Build) -> Outcome:
    from iris_fpga import hls
    from iris_fpga.datapath.export import export_graph

    split, hls_model = build.split(), build.hls_model()
    t0 = time.perf_counter()
    library, origin = hls.compile_model(hls_model, build.loaded.pop("early_compile", None))
    t1 = time.perf_counter()
    y_hls = hls.predict(hls_model, split.X_test)
    t2 = time.perf_counter()
    y_keras = np.asarray(build.model().predict(split.X_test, verbose=0), dtype=np.float32)
    outputs = []
    for name, values in zip(CSIM_FILES, (y_keras, y_hls)):
        atomic_save_npy(build.staging / name, values)
        outputs.append(build.staging / name)
    graph = build.work / GRAPH
    export_graph(hls_model, split.X_test, graph, n_random=build.config.rtl_random, seed=build.config.seed)
    result = {
        "accuracy": agreement(y_keras, y_hls, split.y_test),
        "max_abs_diff": float(np.max(np.abs(y_keras - y_hls))),
        "library": library.relative_to(build.output_dir).as_posix(),
        "compile_s": round(t1 - t0, 3),
        "library_from": origin,
        "simulate_s": round(t2 - t1, 3),
        **ip_interface(hls_model, split.X_test),
    }
    fold = build.config.cv_fold
    if fold:
        result["cv"] = {"fold": fold[0], "folds": fold[1], "accuracy": result["accuracy"]["csim"]}
    return Outcome(result, (*outputs, graph, library))


def agreement(y_keras: np.ndarray, y_hls: np.ndarray, y_true: np.ndarray) -> dict:
    """Accuracy of Keras and of the C-simulation, and how often they pick the same class; warns if not always."""
    truth = y_true.argmax(1)
    acc = {
        "keras": float(np.mean(y_keras.argmax(1) == truth)),
        "csim": float(np.mean(y_hls.argmax(1) == truth)),
        "agreement": float(np.mean(y_keras.argmax(1) == y_hls.argmax(1))),
    }
    log.info("          accuracy: Keras %.2f%%, C-simulation %.2f%%, class agreement %.2f%%",
             100 * acc["keras"], 100 * acc["csim"], 100 * acc["agreement"])
    if acc["agreement"] < 1:
        log.warning("          C-simulation and Keras pick different classes for %d of %d samples: the "
                    "fixed-point model differs from the trained one (is the model trained?)",
                    int(round((1 - acc["agreement"]) * len(truth))), len(truth))
    return acc


def ip_interface(hls_model, X_test: np.ndarray) -> dict:
    """The IP's words per sample and input type, and the test inputs that type cannot hold (warned about)."""
    from iris_fpga.datapath.fixedpoint import FixedType

    source, sink = hls_model.get_input_variables()[0], hls_model.get_output_variables()[0]
    precision = source.type.precision
    input_type = precision.definition_cpp()
    fixed = FixedType.from_hls4ml(precision, "the input layer")
    outside = out_of_range(X_test, fixed)
    if outside:
        action = "wraps" if fixed.saturation == "WRAP" else "saturates"
        log.warning("          %d of %d test inputs hold values outside %s's range %s: samples %s; the IP "
                    "%s them, so its outputs for them are not the trained network's",
                    len(outside), len(X_test), input_type, input_range(fixed), sample_list(outside), action)
    return {"n_in": int(source.size()), "n_out": int(sink.size()), "input_type": input_type,
            "inputs_out_of_range": outside}


def accuracy_lines(build: Build, result: dict) -> list[tuple[str, str]]:
    acc = result["accuracy"]
    n_test = build.results.get("data", {}).get("n_test", 0)
    lines = [("accuracy", f"Keras {100 * acc['keras']:.2f}%, C-simulation {100 * acc['csim']:.2f}% on {n_test} "
                          f"{held_out_name(build)} samples; classes agree on {100 * acc['agreement']:.2f}%")]
    outside = result["inputs_out_of_range"]
    if outside:
        lines.append(("inputs", f"{len(outside)} test samples hold values outside {result['input_type']}'s range "
                                f"(samples {sample_list(outside)})"))
    return lines


def step_profile(build: Build) -> Outcome:
    """Weights and float activations against the fixed-point types hls4ml chose, as a figure and counts."""
    from iris_fpga.profile import profile_model

    split = build.split()
    figure = build.staging / PROFILE
    counts = profile_model(build.model(), build.hls_model(), split.X_train, split.X_test, figure,
                           held_out_name(build))
    return Outcome({"counts": counts}, (figure,))


def profile_lines(build: Build, result: dict) -> list[tuple[str, str]]:
    totals = result["counts"]["totals"]
    text = "; ".join(f"{name}: {t['wrap']} wrap, {t['saturate']} saturate" for name, t in totals.items())
    return [("profile", f"{build.package_dir / PROFILE} (fixed-point overflows: {text})")]


# -- rtl, bitstream ---------------------------------------------------------------------------
def step_rtl(build: Build) -> Outcome:
    from iris_fpga.hls import board_part
    from iris_fpga.datapath import run_rtl

    estimate = build.staging / ESTIMATE
    report = run_rtl(build.work / GRAPH, build.output_dir / "rtl", estimate,
                     latency_cutoff=build.config.latency_cutoff, part=board_part(build.config.board))
    return Outcome({"report": report}, (estimate,))


def rtl_asked(build: Build) -> str | None:
    return None if build.config.rtl or build.config.accelerator == "rtl" else "not asked for (add --rtl)"


def step_ip(build: Build) -> Outcome:
    """The project's own accelerator IP: Verilog, verified word for word with cocotb, synthesized."""
    import shutil

    from iris_fpga.hls import board_part
    from iris_fpga.ip import run_ip

    estimate = build.staging / IP_ESTIMATE
    estimate.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(build.staging / ESTIMATE, estimate)  # the datapath's figures, the ip section beside them
    ip = run_ip(build.work / GRAPH, build.output_dir / IP_DIR, estimate, part=board_part(build.config.board),
                latency_cutoff=build.config.latency_cutoff, seed=build.config.seed,
                y_hls_path=build.staging / CSIM_FILES[1])
    verilog = tuple(build.output_dir / IP_DIR / name for name in ip["verilog"])
    return Outcome({"ip": ip}, (estimate, *verilog))


def ip_asked(build: Build) -> str | None:
    return None if build.config.accelerator == "rtl" else "the hls accelerator needs none (add --accelerator rtl)"


def ip_lines(build: Build, result: dict) -> list[tuple[str, str]]:
    return [("ip", result["ip"]["headline"])]


def step_emulator(build: Build) -> Outcome:
    """The ip step's Verilog as a shared library for the emulated board (Verilator, a plain C++ harness)."""
    from iris_fpga.emulation import verilated_ip

    ip = build.results["ip"]["ip"]
    ip_dir = build.output_dir / IP_DIR
    made = verilated_ip.build_library([ip_dir / name for name in ip["verilog"]], ip["module"],
                             build.output_dir / EMULATOR_DIR)
    library = made["library"]
    return Outcome({"library": library.relative_to(build.output_dir).as_posix(),
                    "verilog_sha256": made["verilog_sha256"], "build_s": made["seconds"]}, (library,))


def emulator_lines(build: Build, result: dict) -> list[tuple[str, str]]:
    return [("emulator", f"the IP, Verilated, for on_target.py --emulate: {result['library']} "
                         f"(Verilog sha256 {result['verilog_sha256'][:16]}...)")]


def rtl_lines(build: Build, result: dict) -> list[tuple[str, str]]:
    from iris_fpga.datapath import headline

    return [("rtl", headline(result["report"]))]


def step_bitstream(build: Build) -> Outcome:
    from iris_fpga import vivado

    if build.config.accelerator == "rtl":
        return rtl_bitstream(build)
    tools = vivado.find_vivado()
    if tools is None:
        return Outcome(skipped=vivado.not_found_message("hls"))
    outputs = vivado.build_bitstream(build.hls_model(), tools, build.output_dir, build.staging)
    return Outcome({"built": True, "vivado": str(tools.vivado)}, tuple(outputs))


def rtl_bitstream(build: Build) -> Outcome:
    """Vivado alone builds the block design around the ip step's Verilog (no Vivado HLS)."""
    from iris_fpga import vivado, vivado_ip, vivado_ports

    tool = vivado.find_vivado_rtl()
    if tool is None:
        return Outcome(skipped=vivado.not_found_message("rtl"))
    ip = build.results["ip"]["ip"]
    ip_dir = build.output_dir / IP_DIR
    vivado_ports.check_ip_verilog(ip_dir, ip["verilog"], ip["module"], waive=vivado_ports.FIXED_POINT_WAIVERS)
    script = vivado_ip.write_design_tcl(build.output_dir / vivado_ip.RTL_PROJECT_DIR,
                                         [ip_dir / name for name in ip["verilog"]], ip["module"], build.config.board)
    built = vivado_ip.build_rtl_bitstream(tool, script, build.staging, build.config.accept_timing_violations)
    return Outcome({"built": True, "vivado": str(tool), "vivado_version": built.version,
                    "timing_met": built.timing.met, "timing": built.timing.figures,
                    "timing_violations": built.timing.violations(), "reports": list(VIVADO_REPORTS),
                    "published": list(VIVADO_REPORTS)}, tuple(built.outputs))


def bitstream_lines(build: Build, result: dict) -> list[tuple[str, str]]:
    lines = [("bitstream", f"built by Vivado: {build.package_dir / BITSTREAM_FILES[0]}")]
    if result.get("timing_met") is False:
        lines.append(("timing", f"NOT met ({result['timing_violations']}): packaged on --accept-timing-violations; "
                                "the board may compute wrong results"))
    elif result.get("timing_met"):
        lines.append(("timing", "met (WNS {wns_ns:g} ns, WHS {whs_ns:g} ns)".format(**result["timing"])))
    else:
        lines.append(("timing", "not checked: hls4ml's design script writes no timing report"))
    if result.get("reports"):
        lines.append(("reports", ", ".join(str(build.package_dir / name) for name in result["reports"])))
    return lines


# -- package, deploy --------------------------------------------------------------------------
def step_package(build: Build) -> Outcome:
    """Publish what every step with a result declared, the board script and the manifest, at once."""
    from iris_fpga import emulation

    files = {name: build.staging / source for step in STEPS if step.name in build.results
             for name, source in step.published(build.results[step.name])}  # a later step's name wins
    files[BOARD_SCRIPT] = ON_TARGET
    files[NOTEBOOK] = ON_TARGET.with_name(NOTEBOOK)
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ToolError(f"the package step is missing {missing[0]}: run the earlier steps first (without --from)")
    manifest = records.manifest(build)
    rtl_library = None
    if build.config.accelerator == "rtl":  # the emulated board runs the IP's Verilog, not the C-simulation
        emulator = build.results.get("emulator")
        if emulator is None:
            raise ToolError("the package step needs the emulator step's library: run the earlier steps first "
                            "(without --from)")
        rtl_library = {"library": build.output_dir / emulator["library"], "verilog_sha256": emulator["verilog_sha256"]}
    for note in publish(build.package_dir, files, manifest,
                        extra_stage=lambda folder: emulation.stage(folder, build.output_dir, rtl_library)):
        log.warning("          %s", note)
    return Outcome({"build_id": manifest["build_id"], "bitstream_built": manifest["bitstream_built"]})


def package_lines(build: Build, result: dict) -> list[tuple[str, str]]:
    here = build.package_dir
    return [("package", f"{here} (build {result['build_id']})"),
            ("next", f"copy it to the board and run `sudo python3 on_target.py` there, "
                     f"or try it here: `cd {here} && python on_target.py --emulate`")]


def step_deploy(build: Build) -> Outcome:
    from iris_fpga import deploy

    deploy.deploy(build.package_dir, build.deploy_target)
    return Outcome()


def board_named(build: Build) -> str | None:
    return None if build.deploy_target is not None else "no board named (add --host)"


# -- the table --------------------------------------------------------------------------------
# The settings each step's cache key hashes are not listed here: each BuildConfig field names its
# steps where it is declared (iris_fpga/config.py), and Step.settings reads them.
STEPS = (
    Step("data", step_data, versions=("scikit-learn", "numpy"), publishes=DATA_FILES),
    Step("train", step_train, versions=("tensorflow", "tf-keras", "qkeras", "tensorflow-model-optimization", "numpy"),
         upstream=("data",), summary=sparsity_lines),
    Step("convert", step_convert, versions=("hls4ml",), upstream=("train",), publishes=(DRIVER,)),
    Step("profile", step_profile, versions=("matplotlib",), upstream=("convert",), publishes=(PROFILE,),
         summary=profile_lines),
    Step("csim", step_csim, versions=(COMPILER,), upstream=("convert",), publishes=CSIM_FILES, summary=accuracy_lines,
         code=(WEIGHTS_DIR_SOURCE,)),
    Step("rtl", step_rtl, versions=RTL_TOOLS, upstream=("csim",), when=rtl_asked, publishes=(ESTIMATE,),
         summary=rtl_lines, code=sources_of("datapath")),
    Step("ip", step_ip, versions=RTL_TOOLS + ("cocotb", "cocotbext-axi"), upstream=("rtl",), when=ip_asked,
         publishes=((ESTIMATE, IP_ESTIMATE),), summary=ip_lines,
         code=(*sources_of("ip", "emulation/verilated_ip.py"), EMULATOR_HARNESS)),
    Step("emulator", step_emulator, versions=("verilator",), upstream=("ip",), when=ip_asked,
         summary=emulator_lines, code=(EMULATOR_HARNESS, " ".join(EMULATOR_FLAGS))),
    Step("bitstream", step_bitstream, versions=(VIVADO,), upstream=("convert", "ip"), may_skip="when Vivado is not installed",
         publishes=BITSTREAM_FILES, summary=bitstream_lines),
    Step("package", step_package, cached=False, summary=package_lines),
    Step("deploy", step_deploy, when=board_named, cached=False, standalone=True),
)
STEP_NAMES = tuple(step.name for step in STEPS)
