"""Checks: each source against the truth and against each other, and the verdict."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.validation.load import PackageData
from iris_fpga.validation.sources import BY_KEY, EMULATED_NOTES, MODE_NOTES

#: Default for ``--tolerance`` (hardware vs C-simulation probabilities): float32 noise only.
DEFAULT_TOLERANCE = 1e-6

#: How to get y_hw.npy: (where, command) pairs.
HOW_TO_GET_HARDWARE_STEPS = (
    ("on the board, in the package folder, as root", "python3 on_target.py"),
    ("or from this machine, over SSH", "python BuildModel.py --from deploy --host HOST --run"),
    ("or emulated here, in package/", "python on_target.py --emulate"),
)
HOW_TO_GET_HARDWARE = "to get the hardware result, run on_target.py: " + "; ".join(
    f"{where}: {cmd}" for where, cmd in HOW_TO_GET_HARDWARE_STEPS)

#: Fields of y_hw.json the report repeats.
RECORD_SHOWN = ("pynq_version", "samples", "batch_latency_s", "throughput_sps", "repeat", "date", "bitfile")


@dataclass
class Report:
    """The outcome of :func:`validate`; ``to_dict()`` is the ``--json`` document."""

    data: dict
    plots: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        failed = any(c["status"] == "fail" for c in self.data["checks"])
        return int(ExitCode.CHECK_FAILED if failed else ExitCode.OK)

    def to_dict(self) -> dict:
        doc = dict(self.data)
        doc["plots"] = list(self.plots)
        doc["verdict"] = "pass" if self.exit_code == 0 else "fail"
        doc["exit_code"] = self.exit_code
        return doc


class _Checks(list):
    """The report's checks, in the order they are made."""

    def add(self, name: str, status: str, message: str) -> None:
        self.append({"name": name, "status": status, "message": message})


def validate(
    data: PackageData, *, min_accuracy: float = 0.0, tolerance: float = DEFAULT_TOLERANCE
) -> Report:
    """Compare every source with the truth and with each other; see :mod:`iris_fpga.validation`."""
    if not 0.0 <= min_accuracy <= 1.0:
        raise ToolError(f"min_accuracy must be between 0 and 1, got {min_accuracy}")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ToolError(f"tolerance must be a finite number >= 0, got {tolerance}")
    checks = _Checks()
    warnings = list(data.warnings)
    manifest_id = data.manifest.get("build_id") if data.manifest else None
    # Hardware provenance first: it decides whether y_hw may be compared at all.
    hardware, compared = _provenance(data, manifest_id, checks)
    predicted = {key: probs.argmax(axis=1) for key, probs in compared.items()}
    doc = {
        "package": str(data.package_dir),
        "build_id": manifest_id,
        "dataset": data.dataset,
        "samples": len(data.y_true),
        "features": int(data.X.shape[1]),
        "classes": data.classes,
        "min_accuracy": min_accuracy,
        "tolerance": tolerance,
        "sources": _sources(data, compared, predicted, min_accuracy, checks, warnings),
        "hardware": hardware,
        "agreement": _agreement(compared, predicted, tolerance, checks),
        "misclassified": _misclassified(data, compared, predicted),
        "hardware_estimate": _estimate_summary(data.hardware_estimate) if data.hardware_estimate else None,
        "checks": list(checks),
        "warnings": warnings,
    }
    return Report(doc)


def _provenance(data: PackageData, manifest_id: str | None, checks: _Checks
                ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The hardware section and the predictions that may be compared (no y_hw of another build)."""
    hardware: dict[str, Any] = {"present": "hardware" in data.predictions}
    compared = dict(data.predictions)
    rec = data.hw_record
    if rec is None:
        hardware["how_to_get"] = HOW_TO_GET_HARDWARE
        checks.add("hardware", "skip", "no y_hw.npy: software checks only (see above)")
        return hardware, compared
    hw_id = rec["build_id"]
    matches = hw_id == manifest_id
    hardware.update(
        mode=rec["mode"], mode_note=EMULATED_NOTES.get(rec.get("emulated"), MODE_NOTES[rec["mode"]]), build_id=hw_id, manifest_build_id=manifest_id,
        build_id_matches=matches, compared=matches,
        record={k: rec[k] for k in RECORD_SHOWN if k in rec},
    )
    if matches:
        checks.add("build id", "pass", f"y_hw.json build {hw_id} matches manifest.json")
    else:
        checks.add("build id", "fail",
                   f"y_hw.npy comes from build {hw_id}, the package is build {manifest_id}: hardware "
                   f"results not compared; rerun on_target.py for this build")
    pair = rec["output_sha256"] == data.hw_sha256
    hardware.update(pair_matches=pair, compared=matches and pair)
    if pair:
        checks.add("y_hw pair", "pass", "y_hw.npy is the array y_hw.json records (output_sha256)")
    else:
        checks.add("y_hw pair", "fail", f"y_hw.npy (sha256 {data.hw_sha256[:16]}...) is not the array y_hw.json "
                   f"records ({rec['output_sha256'][:16]}...): the pair was split, hardware results not "
                   "compared; rerun on_target.py")
    if not hardware["compared"]:
        del compared["hardware"]
    return hardware, compared


def _ties(probs: np.ndarray) -> list[int]:
    """Samples whose two highest probabilities are equal (argmax then takes the first)."""
    if probs.shape[1] < 2:
        return []
    top2 = np.sort(probs, axis=1)[:, -2:]
    return [int(i) for i in np.flatnonzero(top2[:, 0] == top2[:, 1])]


def _sources(data: PackageData, compared: dict, predicted: dict, min_accuracy: float, checks: _Checks,
             warnings: list[str]) -> dict[str, dict]:
    """Per source: accuracy, confusion matrix, ties; an accuracy check each."""
    n, classes = len(data.y_true), data.classes
    sources = {}
    for key, probs in compared.items():
        pred, label = predicted[key], BY_KEY[key].label
        correct = int((pred == data.y_true).sum())
        confusion = np.zeros((len(classes), len(classes)), dtype=int)
        np.add.at(confusion, (data.y_true, pred), 1)
        ties = _ties(probs)
        sources[key] = {
            "label": label, "file": BY_KEY[key].file, "correct": correct, "total": n,
            "accuracy": correct / n, "confusion": confusion.tolist(),
            "predicted": [classes[i] for i in pred], "ties": ties,
        }
        if ties:
            warnings.append(f"{label}: top probabilities tie on sample(s) {ties[:10]}; argmax takes the first class")
        checks.add(f"accuracy {label}", "pass" if correct / n >= min_accuracy else "fail",
                   f"{correct}/{n} = {100 * correct / n:.2f}%"
                   + (f" (minimum {100 * min_accuracy:.2f}%)" if min_accuracy > 0 else ""))
    return sources


def _agreement(compared: dict, predicted: dict, tolerance: float, checks: _Checks) -> list[dict]:
    """Hardware vs C-sim (checked) and Keras vs C-sim (reported only)."""
    agreement = []
    for a, b, checked in (("hardware", "csim", True), ("keras", "csim", False)):
        if a not in compared or b not in compared:
            continue
        same = predicted[a] == predicted[b]
        diff = np.abs(compared[a] - compared[b])
        entry = {
            "a": a, "b": b, "checked": checked,
            "class_agreement": int(same.sum()), "total": len(same),
            "disagreeing_samples": [int(i) for i in np.flatnonzero(~same)],
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "argmax_max_abs_diff_sample": int(np.unravel_index(diff.argmax(), diff.shape)[0]),
        }
        agreement.append(entry)
        if checked:
            entry["tolerance"] = tolerance
        _agreement_checks(entry, f"{BY_KEY[a].label} vs {BY_KEY[b].label}", checks)
    return agreement


def _agreement_checks(entry: dict, pair: str, checks: _Checks) -> None:
    agree, n, bad = entry["class_agreement"], entry["total"], entry["disagreeing_samples"]
    if not entry["checked"]:
        if bad:
            checks.add(f"{pair} classes", "warn",
                       f"{agree}/{n} samples agree; disagree on {bad[:10]} (fixed-point effects; not a failure)")
        return
    checks.add(f"{pair} classes", "pass" if not bad else "fail",
               f"{agree}/{n} samples agree" + (f"; disagree on sample(s) {bad[:10]}" if bad else ""))
    worst, tolerance = entry["max_abs_diff"], entry["tolerance"]
    checks.add(f"{pair} probabilities", "pass" if worst <= tolerance else "fail",
               f"max |diff| {worst:.3g}"
               + (f" (sample {entry['argmax_max_abs_diff_sample']})" if worst > 0 else "")
               + f", mean {entry['mean_abs_diff']:.3g}, tolerance {tolerance:g}")


def _misclassified(data: PackageData, compared: dict, predicted: dict) -> list[dict]:
    """Every sample some source gets wrong, with every source's answer."""
    classes = data.classes
    wrong = sorted({int(i) for key in compared for i in np.flatnonzero(predicted[key] != data.y_true)})
    misclassified = []
    for i in wrong:
        entry = {
            "index": i,
            "features": [float(v) for v in data.X[i]],
            "truth": classes[int(data.y_true[i])],
            "answers": {
                key: {"class": classes[int(predicted[key][i])],
                      "probability": float(compared[key][i, predicted[key][i]]),
                      "correct": bool(predicted[key][i] == data.y_true[i])}
                for key in compared
            },
        }
        if data.raw_X is not None:
            entry["raw_features"] = [float(v) for v in data.raw_X[i]]
        misclassified.append(entry)
    return misclassified


def _estimate_summary(estimate: dict) -> dict:
    """What the report shows of hardware_estimate.json: the rtl step's own headline and scope."""
    return {
        "headline": estimate.get("headline"),
        "fits": estimate.get("fits"),
        "what": estimate.get("what_was_estimated"),
    }
