"""Checks: each source against the truth and against each other, and the verdict."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.validation.load import _MODE_NOTES, SOURCES, PackageData

#: Default for ``--tolerance`` (hardware vs C-simulation probabilities): float32 noise only.
DEFAULT_TOLERANCE = 1e-6

LABELS = {key: label for key, label, _, _ in SOURCES}

#: How to get y_hw.npy: (where, command) pairs.
HOW_TO_GET_HARDWARE_STEPS = (
    ("on the board, in the package folder, as root", "python3 on_target.py"),
    ("or from this machine, over SSH", "python BuildModel.py --from deploy --host HOST --run"),
    ("or emulated here, in package/", "python on_target.py --emulate"),
)
HOW_TO_GET_HARDWARE = "to get the hardware result, run on_target.py: " + "; ".join(
    f"{where}: {cmd}" for where, cmd in HOW_TO_GET_HARDWARE_STEPS)


def _estimate_summary(estimate: dict) -> dict:
    """What the report shows of hardware_estimate.json: the rtl step's own headline and scope."""
    return {
        "headline": estimate.get("headline"),
        "fits": estimate.get("fits"),
        "what": estimate.get("what_was_estimated"),
    }


def _ties(probs: np.ndarray) -> list[int]:
    """Samples whose two highest probabilities are equal (argmax then takes the first)."""
    if probs.shape[1] < 2:
        return []
    top2 = np.sort(probs, axis=1)[:, -2:]
    return [int(i) for i in np.flatnonzero(top2[:, 0] == top2[:, 1])]


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


def validate(
    data: PackageData, *, min_accuracy: float = 0.0, tolerance: float = DEFAULT_TOLERANCE
) -> Report:
    """Compare every source with the truth and with each other; see :mod:`iris_fpga.validation`."""
    if not 0.0 <= min_accuracy <= 1.0:
        raise ToolError(f"min_accuracy must be between 0 and 1, got {min_accuracy}")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ToolError(f"tolerance must be a finite number >= 0, got {tolerance}")

    n = int(data.y_true.shape[0])
    classes = data.classes
    warnings = list(data.warnings)
    checks: list[dict] = []

    def check(name: str, status: str, message: str) -> None:
        checks.append({"name": name, "status": status, "message": message})

    manifest_id = data.manifest.get("build_id") if data.manifest else None

    # Hardware provenance first: it decides whether y_hw may be compared at all.
    hardware: dict[str, Any] = {"present": "hardware" in data.predictions}
    compared = dict(data.predictions)
    if data.hw_record is None:
        hardware["how_to_get"] = HOW_TO_GET_HARDWARE
        check("hardware", "skip", "no y_hw.npy: software checks only (see above)")
    else:
        rec = data.hw_record
        hw_id = rec["build_id"]
        matches = hw_id == manifest_id
        hardware.update(
            mode=rec["mode"],
            mode_note=_MODE_NOTES[rec["mode"]],
            build_id=hw_id,
            manifest_build_id=manifest_id,
            build_id_matches=matches,
            compared=matches,
            record={k: rec.get(k) for k in ("pynq_version", "samples", "batch_latency_s",
                                             "throughput_sps", "repeat", "date", "bitfile")
                    if k in rec},
        )
        if matches:
            check("build id", "pass", f"y_hw.json build {hw_id} matches manifest.json")
        else:
            del compared["hardware"]
            check(
                "build id", "fail",
                f"y_hw.npy comes from build {hw_id}, the package is build {manifest_id}: hardware "
                f"results not compared; rerun on_target.py for this build",
            )

    predicted = {key: probs.argmax(axis=1) for key, probs in compared.items()}

    sources: dict[str, dict] = {}
    for key, probs in compared.items():
        pred = predicted[key]
        correct = int((pred == data.y_true).sum())
        confusion = np.zeros((len(classes), len(classes)), dtype=int)
        np.add.at(confusion, (data.y_true, pred), 1)
        ties = _ties(probs)
        sources[key] = {
            "label": LABELS[key],
            "file": next(f for k, _, f, _ in SOURCES if k == key),
            "correct": correct,
            "total": n,
            "accuracy": correct / n,
            "confusion": confusion.tolist(),
            "predicted": [classes[i] for i in pred],
            "ties": ties,
        }
        if ties:
            warnings.append(
                f"{LABELS[key]}: top probabilities tie on sample(s) {ties[:10]}; argmax takes "
                f"the first class"
            )
        ok = correct / n >= min_accuracy
        check(
            f"accuracy {LABELS[key]}", "pass" if ok else "fail",
            f"{correct}/{n} = {100 * correct / n:.2f}%"
            + (f" (minimum {100 * min_accuracy:.2f}%)" if min_accuracy > 0 else ""),
        )

    agreement = []
    for a, b, checked in (("hardware", "csim", True), ("keras", "csim", False)):
        if a not in compared or b not in compared:
            continue
        same = predicted[a] == predicted[b]
        diff = np.abs(compared[a] - compared[b])
        entry = {
            "a": a, "b": b, "checked": checked,
            "class_agreement": int(same.sum()), "total": n,
            "disagreeing_samples": [int(i) for i in np.flatnonzero(~same)],
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "argmax_max_abs_diff_sample": int(np.unravel_index(diff.argmax(), diff.shape)[0]),
        }
        agreement.append(entry)
        pair = f"{LABELS[a]} vs {LABELS[b]}"
        bad = entry["disagreeing_samples"]
        if checked:
            check(f"{pair} classes", "pass" if not bad else "fail",
                  f"{int(same.sum())}/{n} samples agree"
                  + (f"; disagree on sample(s) {bad[:10]}" if bad else ""))
            entry["tolerance"] = tolerance
            within = entry["max_abs_diff"] <= tolerance
            check(f"{pair} probabilities", "pass" if within else "fail",
                  f"max |diff| {entry['max_abs_diff']:.3g}"
                  + (f" (sample {entry['argmax_max_abs_diff_sample']})"
                     if entry["max_abs_diff"] > 0 else "")
                  + f", mean {entry['mean_abs_diff']:.3g}, tolerance {tolerance:g}")
        elif bad:
            check(f"{pair} classes", "warn",
                  f"{int(same.sum())}/{n} samples agree; disagree on {bad[:10]} "
                  f"(fixed-point effects; not a failure)")

    wrong = sorted({int(i) for key in compared
                    for i in np.flatnonzero(predicted[key] != data.y_true)})
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

    doc = {
        "package": str(data.package_dir),
        "build_id": manifest_id,
        "samples": n,
        "features": int(data.X.shape[1]),
        "classes": classes,
        "min_accuracy": min_accuracy,
        "tolerance": tolerance,
        "sources": sources,
        "hardware": hardware,
        "agreement": agreement,
        "misclassified": misclassified,
        "hardware_estimate": _estimate_summary(data.hardware_estimate) if data.hardware_estimate else None,
        "checks": checks,
        "warnings": warnings,
    }
    return Report(doc)

