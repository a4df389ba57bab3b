"""Reading a package folder: every file checked for presence, type, shape and provenance.

Order matters: the manifest is read first and the listed files validation reads are checked
against it (regular files, same sha256) before any of them is loaded; every file is then read
through the bounded loaders of :mod:`iris_fpga.fileio`.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iris_fpga import contract
from iris_fpga.errors import ToolError
from iris_fpga.fileio import MAX_NPY_BYTES, TEXT_KINDS, load_npy, printable, read_untrusted, refuse_link
from iris_fpga.validation import records
from iris_fpga.validation.sources import (DATA_STEP, ON_TARGET, PACKAGE_STEP, RTL_STEP,
                                          SOURCES, Maker)

X_TEST, Y_TEST, CLASSES, SCALER = contract.DATA_FILES  # the package's test data, as the data step names it
#: More classes than any data set of this tool has (digits: 10), few enough for a confusion matrix.
MAX_CLASSES = 1000


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
    hw_sha256: str | None = None  # of y_hw.npy's bytes, for the record's output_sha256
    dataset: dict | None = None  # the manifest's ``dataset`` less its feature and class lists
    warnings: list[str] = field(default_factory=list)


def load_package(package_dir: Path | str) -> PackageData:
    """Read and check a package folder; raise ToolError(USAGE) for anything unusable."""
    pdir = Path(package_dir)
    refuse_link(pdir, "package folder")
    if not pdir.exists():
        raise ToolError(f"package folder {printable(pdir)} does not exist: it is made by the pipeline "
                        f"(python BuildModel.py)")
    if not pdir.is_dir():
        raise ToolError(f"{printable(pdir)} is not a folder")
    warnings: list[str] = []
    hw_present = os.path.lexists(pdir / contract.RESULT_FILES[0])
    manifest = _read_manifest(pdir, hw_present, warnings)
    listed = manifest["files"] if manifest else {}
    _verify(pdir, manifest)

    y_true, n_classes = _load_truth(pdir, manifest)
    n = len(y_true)
    X = _numeric(_array(pdir, X_TEST, DATA_STEP), 2, DATA_STEP, X_TEST, rows=n)
    if X.shape[1] == 0:
        raise ToolError("X_test.npy has no features (shape (N, 0))")
    classes = _load_classes(pdir, n_classes)
    predictions = {}
    for source in SOURCES:
        if source.key != "hardware" or hw_present:
            predictions[source.key] = _load_probabilities(pdir, source.file, source.maker, n, n_classes)
    return PackageData(
        package_dir=pdir,
        X=X,
        y_true=y_true,
        classes=classes,
        predictions=predictions,
        manifest=manifest,
        hw_record=_load_hw_record(pdir, hw_present, n, warnings),
        hw_sha256=_sha256(pdir / contract.RESULT_FILES[0]) if hw_present else None,
        hardware_estimate=_load_estimate(pdir, contract.ESTIMATE in listed, warnings),
        raw_X=_load_raw_features(pdir, X),
        dataset=_dataset(manifest),
        warnings=warnings,
    )


# --------------------------------------------------------------------------------- provenance
def _read_manifest(pdir: Path, hw_present: bool, warnings: list[str]) -> dict | None:
    manifest = contract.read_manifest(pdir)
    if manifest is not None:
        if not manifest["build_id"]:
            raise ToolError("manifest.json has no build_id; rerun python BuildModel.py")
        if manifest.get("timing_met") is False:
            timing = printable(manifest.get("timing"))[:200]
            warnings.append(f"manifest.json: the bitstream does not meet timing ({timing}): it was packaged on "
                            "--accept-timing-violations, and the board may compute wrong results")
    elif hw_present:
        raise ToolError(f"manifest.json is missing: it is made by {PACKAGE_STEP.made_by}, and is needed to "
                        "check which build y_hw.npy came from")
    else:
        warnings.append("manifest.json absent (made by the package step): build id unknown")
    return manifest


def _dataset(manifest: dict | None) -> dict | None:
    """The data set the package was built from (``name``; ``target`` and ``sha256`` for a table), or
    None when the manifest is absent or older than ``dataset``. (Its class names are classes.npy's,
    which the manifest's sha256 holds.)"""
    record = manifest.get("dataset") if manifest else None
    if record is None:
        return None
    records.check_record(record, "manifest.json's dataset", records.DATASET, PACKAGE_STEP)
    return {f.name: record[f.name] for f in records.DATASET if f.name in record}


def _verify(pdir: Path, manifest: dict | None) -> None:
    """The listed files validation reads must be the package step's: regular files, same sha256.

    A missing one is left to its loader, whose message names the step that makes it.
    """
    if manifest is None:
        return
    names = [n for n in (*contract.DATA_FILES, *contract.CSIM_FILES, contract.ESTIMATE)
             if os.path.lexists(pdir / n) and (n != contract.ESTIMATE or n in manifest["files"])]
    problems = contract.verify(pdir, manifest, names)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ToolError(f"{printable(problems[0])}{more}: the package changed after the package step; "
                        "rerun python BuildModel.py")


def _load_hw_record(pdir: Path, hw_present: bool, n: int, warnings: list[str]) -> dict | None:
    path = pdir / contract.RESULT_FILES[1]
    if not hw_present:
        if os.path.lexists(path):
            warnings.append("y_hw.json is present without y_hw.npy: ignored")
        return None
    if not os.path.lexists(path):
        raise ToolError(f"y_hw.json is missing beside y_hw.npy: it is made by {ON_TARGET.made_by}; without it "
                        "the build y_hw.npy came from is unknown")
    record = records.read_record(path, records.HW_RECORD, ON_TARGET)
    if record.get("samples", n) != n:
        raise ToolError(f"y_hw.json records {record['samples']} samples but y_hw.npy has {n} rows; "
                        "rerun on_target.py")
    return record


def _load_estimate(pdir: Path, listed: bool, warnings: list[str]) -> dict | None:
    """hardware_estimate.json: checked like every file when the manifest lists it; otherwise only
    informational (it never decides the verdict), so a bad one is ignored with a warning."""
    path = pdir / contract.ESTIMATE
    if not os.path.lexists(path):
        return None
    if listed:
        return records.read_record(path, records.ESTIMATE, RTL_STEP)
    try:
        return records.read_record(path, records.ESTIMATE, RTL_STEP)
    except ToolError as exc:
        warnings.append(f"{contract.ESTIMATE} ignored (not listed in manifest.json, so only informational): {exc}")
        return None


def _load_raw_features(pdir: Path, X: np.ndarray) -> np.ndarray | None:
    """Raw measurements from scaler.json (mean, scale) for the report; None without the file."""
    path = pdir / SCALER
    if not os.path.lexists(path):
        return None
    scaler = records.read_record(path, records.SCALER, DATA_STEP)
    mean, scale = (np.asarray(scaler[k], dtype=np.float64) for k in ("mean", "scale"))
    if mean.shape != (X.shape[1],) or scale.shape != (X.shape[1],):
        raise ToolError(f"scaler.json has {mean.size} means and {scale.size} scales for {X.shape[1]} features; "
                        f"rerun {DATA_STEP.rerun}")
    return X * scale + mean


# ------------------------------------------------------------------------------------- arrays
def _array(pdir: Path, name: str, maker: Maker, **kinds) -> np.ndarray:
    """``name`` through the bounded loader; any problem is one line naming the step to rerun."""
    path = pdir / name
    if not os.path.lexists(path):
        raise ToolError(f"{name} is missing in {printable(pdir)}: it is made by {maker.made_by}")
    try:
        return load_npy(path, **kinds)
    except ToolError as exc:
        raise ToolError(f"{exc}; rerun {maker.rerun}") from None


def _numeric(array: np.ndarray, ndim: int, maker: Maker, name: str, rows: int | None = None) -> np.ndarray:
    """Check rank, then the row count (``rows``: y_test.npy's), then finiteness; return a float64
    copy. Shapes come first, so no arithmetic runs on an array of the wrong size."""
    if array.ndim != ndim:
        raise ToolError(f"{name} has shape {tuple(array.shape)}: expected {ndim} dimensions; rerun {maker.rerun}")
    if rows is not None and array.shape[0] != rows:
        raise ToolError(f"lengths differ: {name} has {array.shape[0]} rows, y_test.npy has {rows}; "
                        f"rerun {maker.rerun}")
    out = array.astype(np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        where = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(out[tuple(where)]) else "inf"
        raise ToolError(f"{name} contains {int(bad.sum())} NaN/inf value(s), first {kind} at "
                        f"{tuple(int(i) for i in where)}; rerun {maker.rerun}")
    return out


def _sha256(path: Path) -> str:
    """The sha256 of a file the bounded loader has just read (and so accepted)."""
    return hashlib.sha256(read_untrusted(path, MAX_NPY_BYTES)).hexdigest()


def _load_truth(pdir: Path, manifest: dict | None) -> tuple[np.ndarray, int]:
    """Class indices from the one-hot y_test.npy, and the number of classes.

    Its shape is checked against the manifest's ``n_out`` and :data:`MAX_CLASSES` before any
    arithmetic: a (30, 400000) y_test.npy is inside the element cap, but a confusion matrix of
    400000 classes squared is not.
    """
    y_test = _array(pdir, Y_TEST, DATA_STEP)
    if y_test.ndim == 2:
        n_out = manifest.get("n_out") if manifest else None
        if isinstance(n_out, int) and y_test.shape[1] != n_out:
            raise ToolError(f"y_test.npy has {y_test.shape[1]} columns but manifest.json says the network has "
                            f"{n_out} outputs (n_out); rerun {DATA_STEP.rerun}")
        if y_test.shape[1] > MAX_CLASSES:
            raise ToolError(f"y_test.npy has shape {y_test.shape}: {y_test.shape[1]} classes, more than the "
                            f"{MAX_CLASSES} validation takes; rerun {DATA_STEP.rerun}")
    y_test = _numeric(y_test, 2, DATA_STEP, Y_TEST)
    n, n_classes = y_test.shape
    if n == 0:
        raise ToolError("empty test set: y_test.npy has 0 samples; rerun python BuildModel.py")
    if n_classes < 2:
        raise ToolError(f"y_test.npy has shape {y_test.shape}: expected one-hot (N, classes >= 2)")
    one_hot = np.isin(y_test, (0.0, 1.0)).all(axis=1) & (y_test.sum(axis=1) == 1)
    if not one_hot.all():
        row = int(np.flatnonzero(~one_hot)[0])
        raise ToolError(f"y_test.npy is not one-hot: row {row} is {y_test[row].tolist()}")
    return y_test.argmax(axis=1), n_classes


def _load_classes(pdir: Path, n_classes: int) -> list[str]:
    array = _array(pdir, CLASSES, DATA_STEP, kinds=TEXT_KINDS, what="a list of class names (text)")
    if array.dtype.kind == "S":
        array = np.char.decode(array, "utf-8", errors="replace")
    if array.ndim != 1:
        raise ToolError(f"classes.npy has shape {tuple(array.shape)}: expected (n_classes,)")
    names = [str(x) for x in array]
    if len(names) != n_classes:
        raise ToolError(f"classes.npy names {len(names)} classes but y_test.npy has {n_classes} columns")
    if len(set(names)) != len(names) or not all(n.strip() for n in names):
        raise ToolError(f"classes.npy has empty or repeated names: {printable(names)}")
    return names


def _load_probabilities(pdir: Path, name: str, maker: Maker, n: int, n_classes: int) -> np.ndarray:
    probs = _numeric(_array(pdir, name, maker), 2, maker, name, rows=n)
    if probs.shape[1] != n_classes:
        raise ToolError(f"{name} has shape {probs.shape}: expected ({n}, {n_classes}), one value per class; "
                        f"rerun {maker.rerun}")
    return probs
