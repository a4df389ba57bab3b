"""Does the hardware compute what the software computes, and how good is the model?

Reads a package/ folder (see shared interfaces: ``X_test.npy``, ``y_test.npy``, ``classes.npy``,
``y_keras.npy``, ``y_hls.npy``, optional ``y_hw.npy`` + ``y_hw.json``, ``manifest.json``, optional
``hardware_estimate.json``) and turns it into a report. Only numpy is imported here (matplotlib
only inside :func:`write_plots`), so validation takes a fraction of a second.

Verdict policy (what makes exit code 1):

* hardware vs C-simulation classes must agree on every sample;
* hardware vs C-simulation probabilities: the largest absolute difference must not exceed
  ``tolerance`` (default :data:`DEFAULT_TOLERANCE`). This is a *failure*, not a warning: the FPGA
  runs the design that the C-simulation models bit for bit, and both return float32 values that
  hold every ap_fixed output exactly, so any difference beyond float32 noise means a different
  design, a broken transfer or a driver bug. In emulation the same library computes both: 0.
* every source present (Keras, C-sim, hardware) must reach ``min_accuracy``;
* ``y_hw.json``'s build id must equal ``manifest.json``'s. On a mismatch the hardware results are
  *not* compared at all (never a silent comparison of two different models).

Keras vs C-simulation is reported but never fails: inputs go through ap_fixed<16,6> and the
table-based softmax rows sum to 1.006-1.24, so probabilities legitimately differ by up to ~0.19.
A class disagreement there is a warning.

Unusable input raises :class:`~iris_fpga.errors.ToolError` with ``ExitCode.USAGE`` (exit 2) and a
one-line message naming the file and the pipeline step that makes it.
"""
from __future__ import annotations

import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

#: Default for ``--tolerance`` (hardware vs C-simulation probabilities): float32 noise only.
DEFAULT_TOLERANCE = 1e-6



class _Maker(NamedTuple):
    """Who writes a file, for messages: 'it is made by ...', 'rerun ...'."""

    made_by: str
    rerun: str


_PUBLISHED = " (python BuildModel.py; the package step copies it into the package folder)"
_DATA_STEP = _Maker("the data step" + _PUBLISHED, "python BuildModel.py")
_CSIM_STEP = _Maker("the csim step" + _PUBLISHED, "python BuildModel.py")
_PACKAGE_STEP = _Maker("the package step (python BuildModel.py)", "python BuildModel.py")
_ON_TARGET = _Maker("on_target.py, which writes y_hw.npy and y_hw.json together", "on_target.py")
_RTL_STEP = _Maker("the rtl step (python BuildModel.py --rtl)", "python BuildModel.py --rtl")

#: Prediction sources in report order: key, label, file, step that writes the file.
SOURCES: tuple[tuple[str, str, str, _Maker], ...] = (
    ("keras", "Keras", "y_keras.npy", _CSIM_STEP),
    ("csim", "HLS C-sim", "y_hls.npy", _CSIM_STEP),
    ("hardware", "hardware", "y_hw.npy", _ON_TARGET),
)
LABELS = {key: label for key, label, _, _ in SOURCES}

#: How to get y_hw.npy: (where, command) pairs.
HOW_TO_GET_HARDWARE_STEPS = (
    ("on the board, in the package folder, as root", "python3 on_target.py"),
    ("or from this machine, over SSH", "python BuildModel.py --from deploy --host HOST --run"),
    ("or emulated here, in package/", "python on_target.py --emulate"),
)
HOW_TO_GET_HARDWARE = "to get the hardware result, run on_target.py: " + "; ".join(
    f"{where}: {cmd}" for where, cmd in HOW_TO_GET_HARDWARE_STEPS)

_MODE_NOTES = {
    "board": "measured on the FPGA",
    "emulation": "C-simulation library behind the pynq stand-in: checks the driver and data "
    "path, not the FPGA",
}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
@dataclass
class PackageData:
    """Everything validation needs, checked for shape and consistency."""

    package_dir: Path
    X: np.ndarray  # (N, F) float64
    y_true: np.ndarray  # (N,) class indices
    classes: list[str]
    predictions: dict[str, np.ndarray]  # source key -> (N, C) float64, in SOURCES order
    manifest: dict | None = None
    hw_record: dict | None = None
    hardware_estimate: dict | None = None
    raw_X: np.ndarray | None = None  # X_test un-scaled with scaler.json, when available
    warnings: list[str] = field(default_factory=list)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _load_npy(path: Path, maker: _Maker) -> np.ndarray:
    """Load a .npy file without pickles; any problem becomes a one-line ToolError."""
    name = path.name
    if not path.exists():
        raise ToolError(f"{name} is missing in {path.parent}: it is made by {maker.made_by}")
    if not path.is_file():
        raise ToolError(f"{path} is not a file")
    try:
        with open(path, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":
                raise ToolError(f"{name} is not a .npy file (no NumPy header); rerun {maker.rerun}")
            fh.seek(0)
            array = np.load(fh, allow_pickle=False)
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise ToolError(
                f"{name} holds an object array, which is refused (it would need pickle); "
                f"rerun {maker.rerun}"
            ) from None
        raise ToolError(f"{name} is corrupt or truncated ({_one_line(exc)}); rerun {maker.rerun}") from None
    except (OSError, EOFError) as exc:
        raise ToolError(f"{name} cannot be read ({_one_line(exc)}); rerun {maker.rerun}") from None
    if not isinstance(array, np.ndarray):  # pragma: no cover - the header check excludes .npz
        raise ToolError(f"{name} is not a single array; rerun {maker.rerun}")
    return array


def _numeric(name: str, array: np.ndarray, ndim: int, maker: _Maker) -> np.ndarray:
    """Check dtype, rank and finiteness; return a float64 copy."""
    if array.dtype.kind not in "fiu":
        raise ToolError(f"{name} is not numeric (dtype {array.dtype}); rerun {maker.rerun}")
    if array.ndim != ndim:
        raise ToolError(
            f"{name} has shape {tuple(array.shape)}: expected {ndim} dimensions; rerun {maker.rerun}"
        )
    out = array.astype(np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        where = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(out[tuple(where)]) else "inf"
        raise ToolError(
            f"{name} contains {int(bad.sum())} NaN/inf value(s), first {kind} at "
            f"{tuple(int(i) for i in where)}; rerun {maker.rerun}"
        )
    return out


def _read_json(path: Path, maker: _Maker) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ToolError(f"{path.name} cannot be read ({_one_line(exc)})") from None
    except json.JSONDecodeError as exc:
        raise ToolError(f"{path.name} is not valid JSON ({exc}); rerun {maker.rerun}") from None
    if not isinstance(data, dict):
        raise ToolError(f"{path.name} is not a JSON object; rerun {maker.rerun}")
    return data


def _load_classes(path: Path, n_classes: int) -> list[str]:
    array = _load_npy(path, _DATA_STEP)
    if array.dtype.kind == "S":
        array = np.char.decode(array, "utf-8", errors="replace")
    if array.dtype.kind != "U":
        raise ToolError(f"classes.npy must hold class names (unicode), not dtype {array.dtype}")
    if array.ndim != 1:
        raise ToolError(f"classes.npy has shape {tuple(array.shape)}: expected (n_classes,)")
    names = [str(x) for x in array]
    if len(names) != n_classes:
        raise ToolError(
            f"classes.npy names {len(names)} classes but y_test.npy has {n_classes} columns"
        )
    if len(set(names)) != len(names) or not all(n.strip() for n in names):
        raise ToolError(f"classes.npy has empty or repeated names: {names}")
    return names


def _check_rows(name: str, array: np.ndarray, n: int, maker: _Maker) -> None:
    if array.shape[0] != n:
        raise ToolError(
            f"lengths differ: {name} has {array.shape[0]} rows, y_test.npy has {n}; rerun {maker.rerun}"
        )


def _load_scaler(path: Path, X: np.ndarray) -> np.ndarray | None:
    """Raw measurements from scaler.json (mean, scale) for the report; None if not usable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        mean = np.asarray(data["mean"], dtype=np.float64)
        scale = np.asarray(data["scale"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.debug("scaler.json not used: %s", exc)
        return None
    if mean.shape != (X.shape[1],) or scale.shape != (X.shape[1],):
        log.debug("scaler.json not used: shapes %s %s", mean.shape, scale.shape)
        return None
    return X * scale + mean


def _check_manifest_hashes(package_dir: Path, manifest: dict, names: list[str]) -> None:
    """Files read here must be the ones the package step hashed (same build, untouched)."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        return
    for name in names:
        expected = files.get(name)
        path = package_dir / name
        if isinstance(expected, str) and path.is_file() and sha256_file(path) != expected:
            raise ToolError(
                f"{name} changed after the package step: its sha256 differs from manifest.json's "
                f"(rerun python BuildModel.py)"
            )


def load_package(package_dir: Path | str) -> PackageData:
    """Read and check a package folder; raise ToolError(USAGE) for anything unusable."""
    pdir = Path(package_dir)
    if not pdir.exists():
        raise ToolError(
            f"package folder {pdir} does not exist: it is made by the pipeline "
            f"(python BuildModel.py)"
        )
    if not pdir.is_dir():
        raise ToolError(f"{pdir} is not a folder")

    y_test = _numeric("y_test.npy", _load_npy(pdir / "y_test.npy", _DATA_STEP), 2, _DATA_STEP)
    n, n_classes = y_test.shape
    if n == 0:
        raise ToolError("empty test set: y_test.npy has 0 samples; rerun python BuildModel.py")
    if n_classes < 2:
        raise ToolError(f"y_test.npy has shape {y_test.shape}: expected one-hot (N, classes >= 2)")
    one_hot = np.isin(y_test, (0.0, 1.0)).all(axis=1) & (y_test.sum(axis=1) == 1)
    if not one_hot.all():
        row = int(np.flatnonzero(~one_hot)[0])
        raise ToolError(f"y_test.npy is not one-hot: row {row} is {y_test[row].tolist()}")
    y_true = y_test.argmax(axis=1)

    X = _numeric("X_test.npy", _load_npy(pdir / "X_test.npy", _DATA_STEP), 2, _DATA_STEP)
    _check_rows("X_test.npy", X, n, _DATA_STEP)
    if X.shape[1] == 0:
        raise ToolError("X_test.npy has no features (shape (N, 0))")
    classes = _load_classes(pdir / "classes.npy", n_classes)

    warnings: list[str] = []
    predictions: dict[str, np.ndarray] = {}
    hw_present = (pdir / "y_hw.npy").exists()
    for key, _label, fname, maker in SOURCES:
        if key == "hardware" and not hw_present:
            continue
        probs = _numeric(fname, _load_npy(pdir / fname, maker), 2, maker)
        _check_rows(fname, probs, n, maker)
        if probs.shape[1] != n_classes:
            raise ToolError(
                f"{fname} has shape {probs.shape}: expected ({n}, {n_classes}), one value per "
                f"class; rerun {maker.rerun}"
            )
        predictions[key] = probs

    manifest = None
    if (pdir / "manifest.json").is_file():
        manifest = _read_json(pdir / "manifest.json", _PACKAGE_STEP)
        bid = manifest.get("build_id")
        if not isinstance(bid, str) or not bid:
            raise ToolError("manifest.json has no build_id; rerun python BuildModel.py")
    elif hw_present:
        raise ToolError(
            "manifest.json is missing: it is made by " + _PACKAGE_STEP.made_by + ", and is needed to "
            "check which build y_hw.npy came from"
        )
    else:
        warnings.append("manifest.json absent (made by the package step): build id unknown")

    hw_record = None
    if hw_present:
        rec_path = pdir / "y_hw.json"
        if not rec_path.is_file():
            raise ToolError(
                "y_hw.json is missing beside y_hw.npy: it is made by " + _ON_TARGET.made_by + "; "
                "without it the build y_hw.npy came from is unknown"
            )
        hw_record = _read_json(rec_path, _ON_TARGET)
        if not isinstance(hw_record.get("build_id"), str) or not hw_record["build_id"]:
            raise ToolError("y_hw.json has no build_id; rerun on_target.py")
        if hw_record.get("mode") not in _MODE_NOTES:
            raise ToolError(
                f"y_hw.json mode is {hw_record.get('mode')!r}: expected 'board' or 'emulation'"
            )
        samples = hw_record.get("samples")
        if isinstance(samples, int) and not isinstance(samples, bool) and samples != n:
            raise ToolError(
                f"y_hw.json records {samples} samples but y_hw.npy has {n} rows; rerun on_target.py"
            )
    elif (pdir / "y_hw.json").exists():
        warnings.append("y_hw.json is present without y_hw.npy: ignored")

    if manifest is not None:
        read = ["X_test.npy", "y_test.npy", "classes.npy", "y_keras.npy", "y_hls.npy",
                "hardware_estimate.json"]
        _check_manifest_hashes(pdir, manifest, read)

    estimate = None
    est_path = pdir / "hardware_estimate.json"
    if est_path.is_file():
        try:
            estimate = _read_json(est_path, _RTL_STEP)
        except ToolError as exc:
            # Informational only: it never decides the verdict, so it must not block it either.
            warnings.append(f"hardware_estimate.json ignored: {exc}")

    return PackageData(
        package_dir=pdir,
        X=X,
        y_true=y_true,
        classes=classes,
        predictions=predictions,
        manifest=manifest,
        hw_record=hw_record,
        hardware_estimate=estimate,
        raw_X=_load_scaler(pdir / "scaler.json", X),
        warnings=warnings,
    )


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
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
    """Compare every source with the truth and with each other; see the module docstring."""
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


def validate_package(
    package_dir: Path | str, *, min_accuracy: float = 0.0, tolerance: float = DEFAULT_TOLERANCE
) -> Report:
    """:func:`load_package` then :func:`validate`."""
    return validate(load_package(package_dir), min_accuracy=min_accuracy, tolerance=tolerance)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[str]], align: str = "", indent: str = "  "
           ) -> list[str]:
    """Plain-text table; ``align`` has one letter per column, ``l`` or ``r`` (default: first
    column left, the others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    fmt = lambda r: indent + "  ".join(  # noqa: E731
        str(v).ljust(w) if a == "l" else str(v).rjust(w) for v, w, a in zip(r, widths, align)
    ).rstrip()
    return [fmt(header), indent + "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]


def _fmt_num(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.4g}"


def format_report(report: Report) -> str:
    """The plain-text terminal report."""
    d = report.to_dict()
    lines: list[str] = []
    n, classes = d["samples"], d["classes"]
    lines.append(f"Validation of {d['package']}  (build {d['build_id'] or 'unknown'})")
    lines.append(f"Test set: {n} samples, {d['features']} features, {len(classes)} classes "
                 f"({', '.join(classes)})")

    hw = d["hardware"]
    lines.append("")
    if not hw["present"]:
        lines.append("Hardware: no y_hw.npy - software sources only.")
        lines.append("  To get the hardware result, run on_target.py:")
        width = max(len(where) for where, _ in HOW_TO_GET_HARDWARE_STEPS)
        lines += [f"    {where + ':':<{width + 1}}  {cmd}" for where, cmd in HOW_TO_GET_HARDWARE_STEPS]
    else:
        match = ("matches manifest.json" if hw["build_id_matches"]
                 else f"DIFFERS from manifest.json's {hw['manifest_build_id']}: not compared")
        lines.append(f"Hardware: y_hw.npy from {hw['mode']} ({hw['mode_note']})")
        lines.append(f"  build {hw['build_id']} {match}")
        rec = hw.get("record", {})
        extra = []
        for key, label in (("pynq_version", "pynq"), ("date", "date"), ("bitfile", "bitfile")):
            if rec.get(key) is not None:
                extra.append(f"{label} {rec[key]}")
        lat = rec.get("batch_latency_s")
        if isinstance(lat, dict) and isinstance(lat.get("median"), (int, float)):
            extra.append(f"median batch latency {1e3 * lat['median']:.3g} ms")
        thr = rec.get("throughput_sps")
        if isinstance(thr, dict) and isinstance(thr.get("median"), (int, float)):
            extra.append(f"median {thr['median']:,.0f} samples/s")
        if extra:
            lines.append("  " + ", ".join(extra))

    lines.append("")
    lines.append("Accuracy against y_test.npy")
    rows = [[s["label"], s["file"], f"{s['correct']}/{s['total']}", f"{100 * s['accuracy']:.2f}%"]
            for s in d["sources"].values()]
    lines += _table(["source", "file", "correct", "accuracy"], rows, "llrr")

    if d["agreement"]:
        lines.append("")
        lines.append("Agreement between sources")
        rows = []
        for a in d["agreement"]:
            rule = (f"checked: exact classes, |diff| <= {a['tolerance']:g}" if a["checked"]
                    else "reported only (fixed point vs float)")
            rows.append([f"{d['sources'][a['a']]['label']} vs {d['sources'][a['b']]['label']}",
                         f"{a['class_agreement']}/{a['total']}", f"{a['max_abs_diff']:.6f}",
                         f"{a['mean_abs_diff']:.6f}", rule])
        lines += _table(["pair", "same class", "max |diff|", "mean |diff|", "rule"], rows, "lrrrl")

    groups: list[tuple[list[str], list]] = []  # identical matrices are printed once
    for s in d["sources"].values():
        same = next((g for g in groups if g[1] == s["confusion"]), None)
        if same:
            same[0].append(s["label"])
        else:
            groups.append(([s["label"]], s["confusion"]))
    for labels, confusion in groups:
        lines.append("")
        lines.append(f"Confusion matrix, {' = '.join(labels)} (rows: true class, columns: "
                     f"predicted)")
        rows = [[classes[i], *map(str, row)] for i, row in enumerate(confusion)]
        lines += _table(["true \\ predicted", *classes], rows)

    lines.append("")
    if not d["misclassified"]:
        lines.append("Misclassified samples: none")
    else:
        lines.append("Misclassified samples (* = wrong)")
        keys = list(d["sources"])
        raw = "raw_features" in d["misclassified"][0]
        header = ["#", "features (scaled)", *(["features (raw)"] if raw else []), "truth",
                  *(d["sources"][k]["label"] for k in keys)]
        rows = []
        for m in d["misclassified"]:
            feats = " ".join(f"{v:+.2f}" for v in m["features"])
            row = [str(m["index"]), feats]
            if raw:
                row.append(" ".join(f"{v:.2f}" for v in m["raw_features"]))
            row.append(m["truth"])
            for k in keys:
                ans = m["answers"][k]
                row.append(f"{ans['class']} {ans['probability']:.2f}{'' if ans['correct'] else ' *'}")
            rows.append(row)
        lines += _table(header, rows, "r" + "l" * (len(header) - 1))

    est = d["hardware_estimate"]
    if est is not None:
        lines.append("")
        lines.append("Hardware estimate (hardware_estimate.json)")
        lines.append("  " + (est.get("headline") or "(no headline: rerun python BuildModel.py --rtl)"))
        if est.get("what"):
            lines.append("  " + est["what"])

    if d["warnings"]:
        lines.append("")
        lines.append("Warnings")
        lines += [f"  - {w}" for w in d["warnings"]]

    lines.append("")
    lines.append("Checks")
    for c in d["checks"]:
        lines.append(f"  {c['status'].upper():<4}  {c['name']}: {c['message']}")
    if d["plots"]:
        lines.append("")
        lines.append("Figures: " + ", ".join(d["plots"]))
    lines.append("")
    lines.append(f"Verdict: {d['verdict'].upper()} (exit {d['exit_code']})")
    return "\n".join(lines)


def write_plots(report: Report, data: PackageData, out_dir: Path | str) -> list[Path]:
    """Write confusion.png and probabilities.png into ``out_dir``; return their paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolError(f"cannot create plot folder {out}: {_one_line(exc)}") from None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ToolError("--plot needs matplotlib: pip install matplotlib") from None

    d = report.data
    classes = d["classes"]
    sources = d["sources"]
    written = []

    def save(fig, name: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        path = out / name
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:
            raise ToolError(f"cannot write {path}: {_one_line(exc)}") from None
        written.append(path)

    fig, axes = plt.subplots(1, len(sources), figsize=(3.8 * len(sources), 3.6), squeeze=False)
    for ax, (key, s) in zip(axes[0], sources.items()):
        cm = np.asarray(s["confusion"])
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(1, cm.max()))
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center",
                    color="white" if v > cm.max() / 2 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{s['label']}: {s['correct']}/{s['total']}")
    fig.tight_layout()
    save(fig, "confusion.png")

    idx = np.arange(len(data.y_true))
    preds = {k: v for k, v in data.predictions.items() if k in sources}
    has_hw = "hardware" in preds
    fig, axes = plt.subplots(len(classes), 1, figsize=(9, 2.2 * len(classes)), sharex=True,
                             squeeze=False)
    for c, ax in enumerate(axes[:, 0]):
        ax.bar(idx, preds["csim"][:, c], color="#9ecae1", label="HLS C-sim")
        if has_hw:
            ax.plot(idx, preds["hardware"][:, c], "kx", label="hardware")
        ax.plot(idx, preds["keras"][:, c], "o", mfc="none", color="#e6550d", ms=4, label="Keras")
        truth = idx[data.y_true == c]
        ax.plot(truth, np.full(truth.shape, -0.08), "|", color="green", label="true class")
        ax.set_ylabel(classes[c])
        ax.set_ylim(-0.15, max(1.05, float(preds["csim"][:, c].max()) + 0.05))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("test sample")
    if has_hw:
        hw = next(a for a in d["agreement"] if a["a"] == "hardware")
        title = f"Per-sample probabilities, hardware vs C-sim (max |diff| {hw['max_abs_diff']:.3g})"
    else:
        title = "Per-sample probabilities, Keras vs C-sim (no y_hw.npy)"
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save(fig, "probabilities.png")
    return written
