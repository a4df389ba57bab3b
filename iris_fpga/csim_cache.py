"""Compiled C-simulation libraries, kept in a user-level cache and keyed by their sources.

hls4ml's library reads its weights at run time from ``weights/`` beside it (``iris_fpga.hls``
makes that path relative to the library), so what g++ makes depends on the network's topology and
types, not on its trained weights. The key hashes every source ``build_lib.sh`` can read, with
exactly these lines left out (``LEFT_OUT``), none of which the C-simulation compiles into code:

- ``build_lib.sh``: ``LIB_STAMP=...``, which only names the library file;
- ``firmware/parameters.h``: ``n_zeros``/``n_nonzeros``, counts of the trained weights, read only
  by ``multiplier_limit``, which only HLS pragmas read (g++ ignores them); left out only while
  every layer uses the latency strategy (a compressed Dense sizes arrays by ``n_nonzeros``);
- ``firmware/weights/*.h``: the ``//`` comments (min, max, zeros of the values) and the initializer
  line in their ``#else`` branch, compiled only under ``__SYNTHESIS__``, which the C-simulation
  does not define.

Any other difference is a different key. The compiler's ``--version`` line is part of the key.

The cache is ``$IRIS_FPGA_CSIM_CACHE`` (``off`` disables it), else ``$XDG_CACHE_HOME/iris-fpga/csim``,
else ``~/.cache/iris-fpga/csim``. It holds at most ``MAX_ENTRIES`` libraries (the least recently
used go first). Nothing in it is trusted: the folder must be this user's, not a link and not
writable by others; an entry is used only as a regular file (never a link or FIFO) of this user
whose bytes hash to the sha256 in its name, and only those verified bytes are copied out. Entries
are written atomically and never replaced.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from pathlib import Path

from iris_fpga.errors import ToolError
from iris_fpga.fileio import atomic_write_bytes, printable, read_untrusted
from iris_fpga.versions import compiler_version

log = logging.getLogger(__name__)

ENV = "IRIS_FPGA_CSIM_CACHE"
MAX_ENTRIES = 256
MAX_LIBRARY_BYTES = 64 << 20  # a library here is about 120 kB
# <key>-<sha256 of the bytes>.so (a library) or .txt (a tool's output, see ``remembered``)
ENTRY = re.compile(r"^([0-9a-f]{64})-([0-9a-f]{64})\.(so|txt)$")

_N_COUNT = re.compile(r"^\s*static const unsigned n_(?:non)?zeros = \d+;$")
LEFT_OUT = {
    "build_lib.sh": "LIB_STAMP=... (the library's file name)",
    "firmware/parameters.h": "static const unsigned n_zeros/n_nonzeros = N; (latency strategy only)",
    "firmware/weights/*.h": "// comments and the #else initializer (compiled only under __SYNTHESIS__)",
}


def cache_dir() -> Path | None:
    """The cache folder, or None when ``$IRIS_FPGA_CSIM_CACHE`` is ``off``."""
    given = os.environ.get(ENV, "")
    if given == "off":
        return None
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "iris-fpga" / "csim"


# -- the key ------------------------------------------------------------------------------------
def source_key(project: Path) -> str | None:
    """The sources' key (hex sha256), or None when the project holds something other than regular
    files and folders where g++ reads (then it is compiled, never cached)."""
    digest = hashlib.sha256(compiler_version().encode())
    for path in _sources(project):
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        name = path.relative_to(project).as_posix()
        text = keyed_text(name, path.read_bytes())
        digest.update(f"{name}\0{len(text)}\0".encode())
        digest.update(text)
    return digest.hexdigest()


def _sources(project: Path) -> list[Path]:
    """build_lib.sh, the project's top-level C++ and all of firmware/ but the weights' text files and
    libraries; a link anywhere in firmware/ is listed as itself (never followed), so the key refuses it."""
    found = [p for p in project.iterdir() if p.name == "build_lib.sh" or p.suffix in (".cpp", ".h")]
    for folder, dirs, files in os.walk(project / "firmware"):
        here = Path(folder)
        found += [here / name for name in dirs if (here / name).is_symlink()]
        found += [here / name for name in files
                  if not name.endswith(".so") and not (here.name == "weights" and name.endswith(".txt"))]
    return sorted(found)


def keyed_text(name: str, data: bytes) -> bytes:
    """``data`` with the lines of ``LEFT_OUT`` removed, for the file ``name`` (relative to the project)."""
    if name == "build_lib.sh":
        return _without(data, lambda line, _: line.startswith(b"LIB_STAMP="))
    if name == "firmware/parameters.h" and _latency_only(data):
        return _without(data, lambda line, _: _N_COUNT.match(line.decode(errors="replace")) is not None)
    if name.startswith("firmware/weights/") and name.endswith(".h") and _weights_header_shape(data):
        return _without(data, lambda line, previous: line.startswith(b"//") or previous == b"#else")
    return data


def _without(data: bytes, drop) -> bytes:
    lines, kept, previous = data.split(b"\n"), [], None
    for line in lines:
        if not drop(line, previous):
            kept.append(line)
        previous = line
    return b"\n".join(kept)


def _latency_only(parameters: bytes) -> bool:
    lines = parameters.split(b"\n")
    strategies = [line.split(b"=")[1].strip() for line in lines if b"static const unsigned strategy =" in line]
    compressed = [line for line in lines if b"ompressed" in line and not line.startswith(b"#include")]
    return all(s == b"nnet::latency;" for s in strategies) and not compressed


def _weights_header_shape(data: bytes) -> bool:
    """hls4ml's shape: ``#ifndef __SYNTHESIS__``, a declaration, ``#else``, the initializer, ``#endif``."""
    lines = [line for line in data.split(b"\n") if line.strip() and not line.startswith(b"//")]
    if lines.count(b"#else") != 1:
        return False
    at = lines.index(b"#else")
    return at >= 2 and lines[at - 2] == b"#ifndef __SYNTHESIS__" and lines[at + 2: at + 3] == [b"#endif"]


def remembered(project: Path, what: tuple[str, ...], make) -> list[str]:
    """The text lines ``make()`` returns, kept under the project's source key and ``what`` (the tool's
    own source and arguments): for a tool compiled against the project's headers whose output, like
    the library, depends on the sources and not on the weights (the softmax tables)."""
    sources = source_key(project)
    if sources is None:
        return make()
    key = hashlib.sha256("\0".join((sources, *what)).encode()).hexdigest()
    cached = fetch(key, ".txt")
    if cached is not None:
        return cached.decode().splitlines()
    lines = make()
    store_bytes(key, "\n".join(lines).encode(), ".txt")
    return lines


# -- the folder ---------------------------------------------------------------------------------
def _usable_dir(create: bool) -> Path | None:
    """The cache folder when it is safe to use: this user's, a real folder, not writable by others."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = folder.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        log.warning("          %s is not a folder of this user that only it may write to: the compile "
                    "cache is not used (set %s to another folder, or to off)", printable(folder), ENV)
        return None
    return folder


def fetch(key: str, suffix: str = ".so") -> bytes | None:
    """The verified bytes cached under ``key`` (a library, or with ``.txt`` a tool's output), or None."""
    folder = _usable_dir(create=False)
    if folder is None:
        return None
    for path in sorted(folder.glob(f"{key}-*{suffix}")):
        data = _verified(path)
        if data is not None:
            try:
                os.utime(path, follow_symlinks=False)  # recently used: evicted last
            except OSError:
                pass
            return data
    return None


def _verified(path: Path) -> bytes | None:
    match = ENTRY.match(path.name)
    if match is None:
        return None
    try:
        if path.lstat().st_uid != os.geteuid():
            return None
        data = read_untrusted(path, MAX_LIBRARY_BYTES)  # no link, no FIFO, bounded
    except (OSError, ToolError):
        return None
    return data if hashlib.sha256(data).hexdigest() == match.group(2) else None


def store(key: str, library: Path) -> None:
    """Keep ``library`` under ``key``."""
    try:
        data = read_untrusted(library, MAX_LIBRARY_BYTES)
    except ToolError as exc:
        log.warning("          the compile cache could not keep %s (%s)", printable(library), exc)
        return
    store_bytes(key, data)


def store_bytes(key: str, data: bytes, suffix: str = ".so") -> None:
    """Keep ``data`` under ``key`` (atomically; an entry with the same bytes is left as it is), then
    drop the least recently used entries beyond ``MAX_ENTRIES``."""
    folder = _usable_dir(create=True)
    if folder is None:
        return
    try:
        entry = folder / f"{key}-{hashlib.sha256(data).hexdigest()}{suffix}"
        if not os.path.lexists(entry):
            atomic_write_bytes(entry, data)
        _evict(folder)
    except (OSError, ToolError) as exc:
        log.warning("          the compile cache %s could not keep the library (%s)", printable(folder), exc)


def _evict(folder: Path) -> None:
    entries = []
    for path in folder.iterdir():
        if ENTRY.match(path.name):
            try:
                entries.append((path.lstat().st_mtime, path))
            except OSError:
                continue
    for _, path in sorted(entries)[: max(0, len(entries) - MAX_ENTRIES)]:
        path.unlink(missing_ok=True)
