"""The package contract: what package/ holds, what may sit beside it, and one check of both.

Packaging, deploy and validation use this module; ``on_target.py`` keeps its own copy of the
names (it runs on the board without the project) and a test keeps the two in step.

A package is a folder with ``manifest.json``; the manifest's ``files`` maps each relative POSIX
path to its sha256. Beside the listed files a package folder may hold only ``EXTRAS``: results
written on the board, older results moved aside, and what Python or Jupyter leave behind.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import parse_json, read_untrusted, sha256_file

MANIFEST = "manifest.json"
RESULT_FILES = ("y_hw.npy", "y_hw.json")  # written on the board; never listed in the manifest
PREVIOUS = "previous"  # previous/<build id>/y_hw.* of older builds
NOTEBOOK = "on_target.ipynb"
# Names that may sit in a package folder beyond the manifest's files (../shared/interfaces.md).
EXTRA_FILES = RESULT_FILES + (NOTEBOOK,)  # the notebook only as a re-saved copy of a listed one
PYCACHE = "__pycache__"  # allowed in any folder of the package: Python writes it beside a module
EXTRA_DIRS = (PREVIOUS, PYCACHE, ".ipynb_checkpoints")

# Files every package lists, by the step that makes them.
DATA_FILES = ("X_test.npy", "y_test.npy", "classes.npy", "scaler.json")
CSIM_FILES = ("y_keras.npy", "y_hls.npy")
DRIVER = "axi_stream_driver.py"
BOARD_SCRIPT = "on_target.py"
ESTIMATE = "hardware_estimate.json"
PROFILE = "numerical_profile.png"  # the build's numerical profile (iris_fpga/profile.py), when made
BITSTREAM_STEM = "hls4ml_nn"
BITSTREAM_FILES = (BITSTREAM_STEM + ".bit", BITSTREAM_STEM + ".hwh")
VIVADO_REPORTS = ("vivado_utilization.rpt", "vivado_timing.rpt")  # rtl accelerator: beside the bitstream
EMULATION_DIR = "emulation"

# Fields that make a manifest one this tool wrote (a stranger's manifest.json lacks them).
MANIFEST_FIELDS = {"build_id": str, "created": str, "settings": dict, "versions": dict, "files": dict}
MAX_MANIFEST_BYTES = 1 << 20
MAX_ENTRIES = 10000  # a package folder holds far fewer; more means it is not one


@dataclass(frozen=True)
class Problem:
    """One way a folder differs from its manifest: ``name`` and what is wrong with it."""

    name: str
    what: str

    def __str__(self) -> str:
        return f"{self.name} {self.what}"


def plain_relative(name: str) -> bool:
    """A manifest entry must be a plain relative POSIX path inside the package."""
    pure = PurePosixPath(name)
    return bool(name) and not pure.is_absolute() and ".." not in pure.parts and str(pure) == name \
        and "\\" not in name and not any(ord(c) < 32 or ord(c) == 127 for c in name) \
        and name != MANIFEST and name not in RESULT_FILES


def read_manifest(package_dir: Path, code: ExitCode = ExitCode.USAGE) -> dict | None:
    """The manifest of ``package_dir``; None when absent; ToolError(code) when it is not ours."""
    path = Path(package_dir) / MANIFEST
    if not os.path.lexists(path):
        return None
    return parse_manifest(read_untrusted(path, MAX_MANIFEST_BYTES, code), str(path), code)


def parse_manifest(data: bytes, where: str, code: ExitCode = ExitCode.USAGE) -> dict:
    """The manifest in ``data`` (read from ``where``) if this tool wrote it; else ToolError(code)."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ToolError(f"{where} is {len(data)} bytes, more than a manifest of this tool can be", code)
    manifest = parse_json(data, where, code=code)
    wrong = [k for k, kind in MANIFEST_FIELDS.items() if not isinstance(manifest, dict)
             or not isinstance(manifest.get(k), kind)]
    if wrong:
        raise ToolError(f"{where} is not a manifest of this tool (field {wrong[0]!r} missing or of the wrong type)",
                        code)
    bad = [n for n, digest in manifest["files"].items() if not plain_relative(n) or not isinstance(digest, str)]
    if bad:
        raise ToolError(f"{where}: file entry {bad[0]!r} is not a plain relative path with a sha256", code)
    return manifest


def verify(package_dir: Path, manifest: dict, names=None) -> list[Problem]:
    """Check ``names`` (default: every listed file) against the manifest, without following links.

    A listed file must be a regular file (not a symlink, FIFO, device or folder) whose sha256 is
    the manifest's; a name the manifest does not list is a problem too. Returns the problems.
    The notebook is the one exception to the sha256: Jupyter saves it again with its outputs, and
    nothing runs it unasked (it only imports the checked ``on_target.py``).
    """
    listed = manifest["files"]
    problems = []
    for name in sorted(listed if names is None else names):
        if name not in listed:
            problems.append(Problem(name, "is not listed in manifest.json"))
            continue
        path = Path(package_dir) / name
        what = _not_regular(package_dir, name)
        if what is None and name != NOTEBOOK and sha256_file(path) != listed[name]:
            what = "changed (its sha256 differs from manifest.json's)"
        if what:
            problems.append(Problem(name, what))
    return problems


def _not_regular(package_dir: Path, name: str) -> str | None:
    """Why ``package_dir/name`` is not a regular file of the package, or None.

    Only the folders between the package and the file are checked for links: the package itself
    may sit under a linked folder (a home on another disk) without its files escaping it.
    """
    path = Path(package_dir) / name
    for parent in reversed(PurePosixPath(name).parents[:-1]):  # no link on the way inside the package
        if (Path(package_dir) / parent).is_symlink():
            return f"lies under a symbolic link ({parent})"
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return None


def strangers(package_dir: Path, manifest: dict) -> list[str]:
    """Entries of ``package_dir`` that are neither listed, the manifest, nor allowed extras."""
    return unlisted(list_folder(package_dir), manifest)


def list_folder(folder: Path, limit: int = MAX_ENTRIES) -> list[tuple[str, str]]:
    """Entries below ``folder`` as (relative POSIX path, kind), links not followed; kind is ``dir``,
    ``file``, ``link`` or ``other`` (FIFO, socket, device). The allowed extra folders are not
    entered; past ``limit`` entries the listing ends with one ``other`` entry saying so."""
    folder = Path(folder)
    entries = []
    for root, dirs, files in os.walk(folder):
        rel_root = Path(root).relative_to(folder)
        for name in dirs + files:
            mode = (Path(root) / name).lstat().st_mode
            kind = ("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode)
                    else "link" if stat.S_ISLNK(mode) else "other")
            entries.append(((rel_root / name).as_posix(), kind))
            if len(entries) >= limit:
                return entries + [(f"(more than {limit} entries)", "other")]
        dirs[:] = [d for d in dirs if d != PYCACHE and not (rel_root == Path(".") and d in EXTRA_DIRS)]
    return entries


def unlisted(entries, manifest: dict) -> list[str]:
    """Of ``entries`` ((relative POSIX path, kind) pairs as ``list_folder`` gives, from this
    machine or from a board), those that make a folder not only a package of this tool: anything
    neither listed, the manifest, nor an allowed extra, and every link, FIFO or device (this tool
    makes none). A folder in the way is named once, with a trailing ``/``; what is inside an
    allowed extra folder is not inspected."""
    listed = set(manifest["files"])
    listed_dirs = {p.as_posix() for name in listed for p in PurePosixPath(name).parents if str(p) != "."}
    found = set()
    for rel, kind in entries:
        parts = PurePosixPath(rel).parts
        if parts[0] in EXTRA_DIRS and (len(parts) > 1 or kind == "dir"):
            continue
        if PYCACHE in parts[:-1] or parts[-1] == PYCACHE and kind == "dir":
            continue
        stray = next((i for i in range(1, len(parts)) if "/".join(parts[:i]) not in listed_dirs), None)
        if stray is not None:  # inside a folder that is itself in the way
            found.add("/".join(parts[:stray]) + "/")
        elif kind == "dir":
            if rel not in listed_dirs:
                found.add(rel + "/")
        elif kind != "file" or (rel not in listed and rel != MANIFEST
                                and not (len(parts) == 1 and rel in EXTRA_FILES)):
            found.add(rel)
    return sorted(found)


def require_ours(package_dir: Path, code: ExitCode = ExitCode.USAGE) -> dict | None:
    """Refuse a non-empty folder unless it is a package this tool wrote; its manifest or None.

    "Ours" means: a manifest with this tool's fields, and nothing in the folder beyond the files it
    lists plus ``EXTRA_FILES``/``EXTRA_DIRS``. Raises ToolError(code) naming what is in the way.
    """
    package_dir = Path(package_dir)
    if package_dir.is_symlink() or (package_dir.exists() and not package_dir.is_dir()):
        raise ToolError(f"{package_dir} is not a folder (a file or a link): choose another folder", code)
    if not package_dir.exists() or not any(package_dir.iterdir()):
        return None
    manifest = read_manifest(package_dir, code)
    if manifest is None:
        raise ToolError(f"{package_dir} holds files but no {MANIFEST}, so it is not a package of this tool: "
                        "choose another folder or empty it", code)
    extra = strangers(package_dir, manifest)
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise ToolError(f"{package_dir} holds what its manifest does not list ({shown}): "
                        "it is not only a package of this tool, so it is left alone", code)
    return manifest
