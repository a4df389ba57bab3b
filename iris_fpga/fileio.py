"""Files in and out: atomic writes (a result is complete or absent, never half-written),
checksums, and bounded reads of files that may be hostile.

The bounded loaders (:func:`load_json`, :func:`load_npy` and their ``parse_*`` forms for bytes
already in memory, e.g. fetched from a board) check a file before they load it: a regular file,
not a link, FIFO or folder; a size cap; for JSON a nesting-depth cap and finite numbers; for .npy
the header's dtype (never objects, so never pickle) and shape against the file's size and an
element cap. Every refusal is a one-line :class:`~iris_fpga.errors.ToolError` with the caller's
exit code, whose text has the file's own strings passed through :func:`printable`.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from iris_fpga.errors import ExitCode, ToolError

#: Caps for files read back from disk or a board: far above anything a package of this tool holds
#: (its largest JSON is a few kB, its arrays a few hundred values), far below what hurts.
MAX_JSON_BYTES = 1 << 20
MAX_JSON_DEPTH = 32
MAX_NPY_BYTES = 1 << 28
MAX_NPY_ELEMENTS = 1 << 24
NUMERIC_KINDS = "biuf"  # numpy dtype kinds of plain numbers: bool, signed, unsigned, float
TEXT_KINDS = "US"  # numpy dtype kinds of fixed-width text: unicode, bytes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_save_npy(path: Path, array) -> None:
    """``numpy.save`` without pickles, atomically."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_regular_file(path: Path) -> bool:
    """Whether ``path`` itself is a regular file: not a link (not followed), FIFO, device or folder."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def refuse_link(path: Path, what: str, code: ExitCode = ExitCode.USAGE) -> None:
    """Refuse a folder given as a symbolic link (``what`` names the option): a command acts on the
    folder a user names, never on one a link leads it to. Folders above it may be links."""
    if Path(path).is_symlink():
        raise ToolError(f"{what} {printable(path)} is a symbolic link (to {printable(os.readlink(path))}): "
                        "give the folder itself", code)


def printable(text: object) -> str:
    """``str(text)`` with every non-printable character escaped as ``repr`` does (``\\x1b``,
    ``\\n``, ``\\u202e``), so a string from a file can neither rewrite the terminal nor start a
    line of its own. Printable text, including non-ASCII letters, is unchanged."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def read_untrusted(path: Path, max_bytes: int, code: ExitCode = ExitCode.USAGE) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them.

    Never follows a symbolic link (in the last component) and never blocks on a FIFO: the file is
    opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked through its descriptor. A missing file
    raises ``ToolError`` too; callers that know who makes the file check for it first.
    """
    path = Path(path)
    name = printable(path.name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        what = "is a symbolic link: refused" if exc.errno == errno.ELOOP else f"cannot be read ({exc.strerror})"
        raise ToolError(f"{name} {what}", code) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ToolError(f"{name} is not a regular file (a folder, FIFO or device): refused", code)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ToolError(f"{name} cannot be read ({exc.strerror})", code) from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ToolError(f"{name} is larger than {max_bytes} bytes, more than such a file of this tool holds",
                        code)
    return data


def open_for_writing(path: Path, code: ExitCode = ExitCode.USAGE):
    """``open(path, "w")`` for a file this tool writes as it goes (a log): created or emptied, and
    only a regular file. Never through a symbolic link (``O_NOFOLLOW``), never blocking on a FIFO
    (``O_NONBLOCK`` until the type is known); ToolError otherwise, naming the file."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0),
                     0o666)
    except OSError as exc:
        what = "is a symbolic link: refused" if exc.errno == errno.ELOOP else f"cannot be written ({exc.strerror})"
        raise ToolError(f"{printable(path)} {what}", code) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ToolError(f"{printable(path)} is not a regular file (a folder, FIFO or device): refused", code)
    os.ftruncate(fd, 0)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "w")


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_JSON_BRACKETS = re.compile(r"[\[\]{}]")


def _json_depth_exceeds(text: str, max_depth: int) -> bool:
    """Whether brackets outside strings nest deeper than ``max_depth`` (counted before parsing:
    ``json.loads`` recurses once per level and raises RecursionError near 1,000)."""
    depth = 0
    for bracket in _JSON_BRACKETS.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > max_depth:
            return True
    return False


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _refuse_constant(text: str):
    raise ValueError(f"{text} is not a JSON number")


def parse_json(data: bytes, name: str, *, max_depth: int = MAX_JSON_DEPTH,
               code: ExitCode = ExitCode.USAGE) -> Any:
    """Parse UTF-8 JSON from an untrusted source; ``name`` is the file named in errors.

    Refused: invalid UTF-8 or JSON, nesting deeper than ``max_depth``, integers beyond Python's
    digit limit, floats that overflow, and the non-standard NaN/Infinity. The caller checks the
    type of what it uses.
    """
    name = printable(name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ToolError(f"{name} is not UTF-8 text (byte {exc.start})", code) from None
    if _json_depth_exceeds(text, max_depth):
        raise ToolError(f"{name} nests deeper than {max_depth} levels of JSON: not a file of this tool", code)
    try:
        return json.loads(text, parse_float=_finite_float, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # RecursionError: a guard, the depth check comes first
        reason = str(exc).split(";")[0]  # Python's digit-limit message goes on to advise a setting
        raise ToolError(f"{name} is not valid JSON ({printable(reason)})", code) from None


def load_json(path: Path, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH,
              code: ExitCode = ExitCode.USAGE) -> Any:
    """:func:`parse_json` of the regular file ``path`` (see :func:`read_untrusted`)."""
    return parse_json(read_untrusted(path, max_bytes, code), Path(path).name, max_depth=max_depth, code=code)


def parse_npy(data: bytes, name: str, *, kinds: str = NUMERIC_KINDS, what: str = "numeric",
              max_elements: int = MAX_NPY_ELEMENTS, code: ExitCode = ExitCode.USAGE):
    """A numpy array from untrusted .npy bytes, its header checked before any data is read.

    The header (format 1.0 or 2.0) must describe a plain array whose dtype kind is in ``kinds``
    (``what`` names them in the error: "y_hls.npy is not numeric (dtype <U5)"): never objects,
    records or sub-arrays. Its shape must hold at most ``max_elements`` values whose bytes are
    exactly what follows the header. Returns a writable array that owns its data.
    """
    import numpy as np
    from numpy.lib import format as npy_format

    name = printable(name)
    if not data.startswith(npy_format.MAGIC_PREFIX):
        raise ToolError(f"{name} is not a .npy file (no NumPy header)", code)
    fh = io.BytesIO(data)
    try:
        version = npy_format.read_magic(fh)
        read_header = {(1, 0): npy_format.read_array_header_1_0,
                       (2, 0): npy_format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ToolError(f"{name} is .npy format {version[0]}.{version[1]}: only 1.0 and 2.0 hold "
                            "plain arrays", code)
        shape, fortran_order, dtype = read_header(fh)
    except ValueError as exc:
        raise ToolError(f"{name} is corrupt or truncated ({printable(exc)})", code) from None
    if dtype.hasobject:
        raise ToolError(f"{name} holds an object array, which is refused (it would need pickle)", code)
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None \
            or dtype.itemsize == 0:
        raise ToolError(f"{name} is not {what} (dtype {printable(dtype)})", code)
    if any(n < 0 for n in shape):
        raise ToolError(f"{name} header claims shape {shape}: a negative length", code)
    count = math.prod(shape)
    if count > max_elements or any(n > max_elements for n in shape):  # (0, 10**12) is no array either
        raise ToolError(f"{name} header claims shape {shape}, {count} values: more than the "
                        f"{max_elements} such a file of this tool may hold", code)
    size = count * dtype.itemsize
    if len(data) - fh.tell() != size:
        raise ToolError(f"{name} is truncated or padded: its header claims shape {shape} of {dtype} "
                        f"({size} bytes of data), the file holds {len(data) - fh.tell()}", code)
    array = np.frombuffer(data, dtype=dtype, count=count, offset=fh.tell())
    return array.reshape(shape, order="F" if fortran_order else "C").copy()


def load_npy(path: Path, *, kinds: str = NUMERIC_KINDS, what: str = "numeric",
             max_bytes: int = MAX_NPY_BYTES, max_elements: int = MAX_NPY_ELEMENTS,
             code: ExitCode = ExitCode.USAGE):
    """:func:`parse_npy` of the regular file ``path`` (see :func:`read_untrusted`)."""
    return parse_npy(read_untrusted(path, max_bytes, code), Path(path).name, kinds=kinds, what=what,
                     max_elements=max_elements, code=code)
