"""The build id and manifest.json: what a package says about itself."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from iris_fpga.flow.context import HLS_CONFIG, WEIGHTS, Build
from iris_fpga.cache import fingerprint
from iris_fpga.fileio import sha256_file
from iris_fpga.versions import COMPILER, PACKAGES, compiler_version, package_versions, versions_of

# The parts of the build id, in the order they are hashed (manifest.json "build_id_parts").
BUILD_ID_PARTS = ("weights_sha256", "hls_config_sha256", "versions", "compiler")
# Hashed last, and only when it is not hls4ml's IP, so an hls build keeps the id it always had.
ACCELERATOR_PART = "accelerator"


def build_id_parts(work: Path, accelerator: str) -> dict:
    """The trained weights and the hls4ml configuration (sha256), the package versions, g++,
    and the accelerator when it is the project's own IP."""
    parts = {
        "weights_sha256": sha256_file(work / WEIGHTS),
        "hls_config_sha256": sha256_file(work / HLS_CONFIG),
        "versions": package_versions(),
        "compiler": compiler_version(),
    }
    if accelerator != "hls":
        parts[ACCELERATOR_PART] = accelerator
    return parts


def build_id(parts: dict) -> str:
    """One hash of the parts: two builds with the same parts are the same build."""
    extra = [parts[ACCELERATOR_PART]] if ACCELERATOR_PART in parts else []
    return fingerprint(*(parts[name] for name in BUILD_ID_PARTS), *extra)


def manifest(build: Build) -> dict:
    """manifest.json without its ``files`` (the package step adds their checksums)."""
    from iris_fpga.hls import board_part

    parts = build_id_parts(build.work, build.config.accelerator)
    csim = build.results["csim"]
    steps = {name: record.get("seconds") for name, record in build.state.steps.items()}
    steps.update(build.timings)
    return {
        "build_id": build_id(parts),
        "build_id_parts": parts,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": build.config.to_dict(),
        "versions": versions_of(PACKAGES + (COMPILER,)),
        "dataset": build.results["data"]["dataset"],
        "accelerator": build.config.accelerator,
        "part": board_part(build.config.board),
        "n_in": csim["n_in"],
        "n_out": csim["n_out"],
        "input_type": csim["input_type"],
        "sparsity": build.results["train"]["sparsity"],
        "numerical_profile": build.results.get("profile", {}).get("counts"),
        "accuracy": csim["accuracy"],
        # --cv-fold: accuracy is then the held-out fold's, {fold, folds, accuracy} (absent otherwise)
        **({"cv": csim["cv"]} if "cv" in csim else {}),
        "bitstream_built": "bitstream" in build.results,
        # rtl: the sha256 of the IP's Verilog that package/emulation/'s library was built from
        "ip_verilog_sha256": (build.results["emulator"]["verilog_sha256"]
                              if build.config.accelerator == "rtl" and "emulator" in build.results else None),
        "steps": steps,
        "step_keys": build.step_keys,
        **timing_fields(build.results.get("bitstream", {})),
    }


def timing_fields(bitstream: dict) -> dict:
    """``timing_met`` and ``timing`` (WNS, TNS, WHS, THS in ns) when the bitstream step read Vivado's timing
    report (the ``rtl`` flow); none without a bitstream or for the ``hls`` flow, whose timing is not read."""
    if "timing_met" not in bitstream:
        return {}
    return {"timing_met": bitstream["timing_met"], "timing": bitstream["timing"]}
