"""The package step: assemble package/ in a new folder, then swap it in whole.

A failed or interrupted run leaves the previous package as it was. Results that belong to another
build (y_hw.npy and its record) are moved to ``previous/<build id>/`` instead of looking current.
Nothing but a package this tool wrote (``contract.require_ours``) is ever replaced or removed.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from iris_fpga import contract, testpause
from iris_fpga.errors import ToolError
from iris_fpga.fileio import atomic_write_json, is_regular_file, printable, refuse_link, sha256_file

log = logging.getLogger(__name__)

# The build's own record in its --output-dir: a folder holding it (or nothing but this folder,
# which a build writes first) is one this tool made.
PIPELINE_DIR = "pipeline"
STATE_FILE = "state.json"
#: Folders of an old package that the new one keeps (the board's swap keeps them too).
KEPT_DIRS = (contract.PREVIOUS, ".ipynb_checkpoints")
_PLAIN_ID = re.compile(r"[0-9A-Za-z_][0-9A-Za-z._-]{0,63}")


def check_folders(output_dir: Path, package_dir: Path, replace_package: bool) -> None:
    """Refuse, before any step runs, folders a build must not write into or replace.

    ``output_dir`` must be absent, empty, or made by this tool; neither folder may lie inside the
    other; with ``replace_package``, ``package_dir`` must be absent, empty or a package of ours.
    ``package_dir`` given as a symbolic link is refused (the folders above it may be links): the
    package step replaces the folder a user names, never one a link leads to.
    """
    refuse_link(package_dir, "--package-dir")
    output_dir, package_dir = Path(output_dir).resolve(), Path(package_dir).resolve()
    if output_dir == package_dir or package_dir in output_dir.parents or output_dir in package_dir.parents:
        raise ToolError(f"--output-dir {output_dir} and --package-dir {package_dir} lie inside one another: "
                        "choose separate folders (the package step replaces its folder whole)")
    _check_output_dir(output_dir)
    if replace_package:
        contract.require_ours(package_dir)


def _check_output_dir(output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise ToolError(f"--output-dir {output_dir} is a file: choose a folder")
    if not output_dir.is_dir():
        return
    entries = sorted(p.name for p in output_dir.iterdir())
    if not entries or entries == [PIPELINE_DIR] or os.path.lexists(output_dir / PIPELINE_DIR / STATE_FILE):
        return
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise ToolError(f"--output-dir {output_dir} holds files ({shown}) but no {PIPELINE_DIR}/{STATE_FILE}, so "
                    "this tool did not make it and will not write into it: choose another folder or empty it")


def publish(package_dir: Path, files: dict[str, Path], manifest: dict, extra_stage=None) -> list[str]:
    """Write ``files`` ({name in package: source}) and the manifest into ``package_dir`` at once.

    ``extra_stage(folder) -> list[Path]`` may add files (the emulation folder). Returns messages
    about results that were moved aside.
    """
    package_dir = Path(package_dir)
    contract.require_ours(package_dir)
    package_dir.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(dir=package_dir.parent, prefix=f".{package_dir.name}.new-"))
    try:
        for name, source in files.items():
            target = new / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        if extra_stage is not None:
            extra_stage(new)
        listed = sorted(p for p in new.rglob("*") if p.is_file() and contract.PYCACHE not in p.parts)
        manifest = {**manifest, "files": {p.relative_to(new).as_posix(): sha256_file(p) for p in listed}}
        atomic_write_json(new / contract.MANIFEST, manifest)
        notes = _swap(package_dir, new, manifest["build_id"])
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return notes


def _swap(package_dir: Path, new: Path, build_id: str) -> list[str]:
    """Put ``new`` in place of ``package_dir``, keeping what the old one holds that a user made.

    The old package is renamed aside, listed, checked again there, its keepers copied into
    ``new``, and listed again: a file added to it meanwhile (since the build began, or during the
    copy) is never removed, as the old folder then goes back untouched. Afterwards only the files
    listed are unlinked and the emptied folders removed; a folder in which something appeared
    since is kept, and named.
    """
    if not package_dir.exists():
        new.rename(package_dir)
        package_dir.chmod(0o755)
        return []
    old = Path(tempfile.mkdtemp(dir=package_dir.parent, prefix=f".{package_dir.name}.old-"))
    old.rmdir()
    package_dir.rename(old)
    try:
        listed = listing(old)
        try:
            old_manifest = contract.require_ours(old) or {}
        except ToolError as exc:
            raise ToolError(f"{str(exc).replace(str(old), str(package_dir))} (it changed while the build ran)",
                            exc.code) from None
        notes = _carry_over(old, new, old_manifest, build_id, shown=package_dir.name)
        testpause.pause("package-carried")
        change = differs(listed, listing(old))
        if change:
            raise ToolError(f"{package_dir} changed while the build ran ({printable(change)}): left as it was; "
                            "run again when nothing writes into it")
    except BaseException:
        old.rename(package_dir)
        raise
    new.rename(package_dir)
    package_dir.chmod(0o755)
    testpause.pause("package-removing")
    kept = remove_listed(old, listed)
    if kept:
        log.warning("something appeared in the replaced package while it was removed (%s): kept as %s; look "
                    "inside, then remove it", kept, old)
    return notes


def listing(folder: Path) -> dict[str, tuple]:
    """Every entry below ``folder``, links not followed: relative path -> (kind, inode, size, mtime)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            info = os.lstat(os.path.join(root, name))
            rel = os.path.relpath(os.path.join(root, name), folder)
            found[rel] = (stat.S_IFMT(info.st_mode), info.st_ino) + \
                (() if stat.S_ISDIR(info.st_mode) else (info.st_size, info.st_mtime_ns))
    return found


def differs(before: dict, after: dict) -> str | None:
    """The first entry added, removed or changed between two listings, or None."""
    for rel in sorted(before.keys() | after.keys()):
        if before.get(rel) != after.get(rel):
            return rel + (" appeared" if rel not in before else " went away" if rel not in after else " changed")
    return None


def remove_listed(folder: Path, listed: dict) -> str | None:
    """Unlink the listed files, then remove the emptied folders, deepest first, and ``folder``;
    never anything else. Returns what kept ``folder`` (something that appeared in it), or None."""
    kept = None
    for rel in sorted(listed, key=lambda r: -r.count(os.sep)):
        path = folder / rel
        try:
            path.rmdir() if stat.S_ISDIR(listed[rel][0]) else path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            kept = kept or f"{rel}: {exc.strerror}"
    try:
        folder.rmdir()
    except OSError as exc:
        return kept or exc.strerror
    return None


def aside_name(build_id) -> str:
    """The folder name under previous/ for results of ``build_id`` (a manifest's: untrusted)."""
    return build_id if isinstance(build_id, str) and _PLAIN_ID.fullmatch(build_id) else "unknown"


def free_aside(previous: Path, build_id) -> Path:
    """previous/<id>/, or previous/<id>-2/, -3, ... when that is taken: a move never overwrites."""
    base, n = aside_name(build_id), 1
    while os.path.lexists(previous / (base if n == 1 else f"{base}-{n}")):
        n += 1
    return previous / (base if n == 1 else f"{base}-{n}")


def _carry_over(old: Path, new: Path, old_manifest: dict, build_id: str, shown: str) -> list[str]:
    """Keep previous/, .ipynb_checkpoints/ and y_hw.* of the same build; move another build's
    results, and an edited notebook, to previous/<its build id>/ (a fresh one: -2, -3...)."""
    for name in KEPT_DIRS:
        if _is_real_dir(old / name):
            try:
                shutil.copytree(old / name, new / name, ignore=_not_regular_entries)
            except (shutil.Error, OSError) as exc:
                raise ToolError(f"cannot copy {shown}/{name}/ into the new package ({_first_error(exc)}): "
                                f"the package is left as it was; fix or move that entry and run again") from None
    old_id = old_manifest.get("build_id", "unknown")
    results = [old / name for name in contract.RESULT_FILES if is_regular_file(old / name)]
    notebook = old / contract.NOTEBOOK
    edited = is_regular_file(notebook) and \
        sha256_file(notebook) != old_manifest.get("files", {}).get(contract.NOTEBOOK)
    aside = free_aside(new / contract.PREVIOUS, old_id)
    shown_aside = f"{shown}/{aside.relative_to(new).as_posix()}/"
    notes = []
    if old_id == build_id:
        _copy(results, new)
    elif results:
        _copy(results, aside)
        notes.append(f"{', '.join(p.name for p in results)} came from build {printable(old_id)}, not this one: "
                     f"moved to {shown_aside}")
    if edited:
        _copy([notebook], aside)
        notes.append(f"{contract.NOTEBOOK} was edited in the package of build {printable(old_id)}: the edited "
                     f"copy is kept in {shown_aside}")
    return notes


def _first_error(exc: OSError) -> str:
    """One line for an error of copytree (shutil.Error holds a list of (source, target, why))."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        source, _, why = exc.args[0][0]
        more = len(exc.args[0]) - 1
        return printable(f"{source}: {why}") + (f" and {more} more" if more else "")
    return printable(f"{exc.filename}: {exc.strerror}" if exc.filename else exc)


def _copy(paths: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.copy2(path, folder / path.name)


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _not_regular_entries(folder: str, names: list[str]) -> list[str]:
    """copytree's ``ignore``: links, FIFOs and devices in previous/ are not carried over."""
    return [n for n in names if not (is_regular_file(Path(folder) / n) or _is_real_dir(Path(folder) / n))]
