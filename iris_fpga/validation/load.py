"""Reading a package folder: every file checked for presence, type, shape and provenance."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from iris_fpga.errors import ToolError
from iris_fpga.fileio import sha256_file

log = logging.getLogger(__name__)


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

_MODE_NOTES = {
    "board": "measured on the FPGA",
    "emulation": "C-simulation library behind the pynq stand-in: checks the driver and data "
    "path, not the FPGA",
}



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

