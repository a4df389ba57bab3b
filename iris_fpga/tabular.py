"""A user's CSV table for ``--csv FILE --target COLUMN``: read once, checked whole, refused in one line.

The table is a header row, then one sample per row: numeric feature columns (any finite number
Python's ``float`` reads) and the target column of class labels (text or integers). It is read
with the csv module (commas, RFC 4180 quoting) from UTF-8 (a BOM allowed), through fileio's
bounded reader (a regular file, no link or FIFO, at most ``MAX_CSV_BYTES``; a field at most
``MAX_FIELD_CHARS``). Every refusal names the row (its line in the file; 1 is the header) or the column, with the file's
own text escaped, and is exit 2 (``ToolError``'s default).
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iris_fpga.errors import ToolError
from iris_fpga.fileio import printable, read_untrusted

MAX_CSV_BYTES = 64 << 20  # far above a table a small network on the xc7z020 learns from
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the features are float32
MAX_FIELD_CHARS = 1 << 16  # one value or label; the csv module's own cap is 128 kB


@dataclass(frozen=True)
class Table:
    features: list[str]
    X: np.ndarray  # float32, samples x features
    labels: np.ndarray  # str, one per sample
    sha256: str


def read_table(path: Path, target: str, test_size: float, expected_sha256: str | None = None) -> Table:
    """The table at ``path`` with ``target`` as its class column, or a one-line ``ToolError``.

    ``test_size``: the data step's stratified test part, which each class must be able to fill.
    ``expected_sha256``: the digest the build started with (the data step's key); a table changed
    since is refused rather than trained on under the old key.
    """
    data = read_untrusted(path, MAX_CSV_BYTES)
    name = printable(path.name)
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise ToolError(f"{name} changed since the build started (sha256 {digest[:16]}..., not "
                        f"{expected_sha256[:16]}...): run the build again")
    rows = _rows(_text(data, name), name)
    if not rows:
        raise ToolError(f"{name} is empty: a CSV table needs a header row and one row per sample")
    (_, header), body = rows[0], rows[1:]
    column = _target_column(header, target, name)
    features = [h for i, h in enumerate(header) if i != column]
    if not features:
        raise ToolError(f"{name} has no feature column besides the target {printable(target)!r}")
    if not body:
        raise ToolError(f"{name} has a header row but no samples")
    X = np.empty((len(body), len(features)), dtype=np.float32)
    labels = []
    for sample, (number, row) in enumerate(body):
        if len(row) != len(header):
            raise ToolError(f"{name} row {number} has {len(row)} fields, the header {len(header)}")
        label = row[column].strip()
        if not label:
            raise ToolError(f"{name} row {number}: the target column {printable(target)!r} is empty")
        labels.append(label)
        values = [cell for i, cell in enumerate(row) if i != column]
        X[sample] = [_number(cell, number, feature, name) for cell, feature in zip(values, features)]
    labels = np.asarray(labels, dtype=str)
    _check_classes(labels, target, test_size, name)
    return Table(features, X, labels, digest)


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ToolError(f"{name} is not UTF-8: row {line} holds byte 0x{data[exc.start]:02x}; save the table "
                        "as UTF-8 CSV") from None


def _rows(text: str, name: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each row, blank lines left out; a field beyond the cap or broken quoting is
    refused."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    previous = csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        return [(reader.line_num, row) for row in reader if row]
    except csv.Error as exc:
        raise ToolError(f"{name} row {reader.line_num}: not a CSV row this tool reads ({printable(exc)}); "
                        f"fields are at most {MAX_FIELD_CHARS} characters") from None
    finally:
        csv.field_size_limit(previous)


def _target_column(header: list[str], target: str, name: str) -> int:
    names = [h.strip() for h in header]
    repeated = [h for h, count in Counter(names).items() if count > 1]
    if repeated:
        raise ToolError(f"{name} row 1 names column {printable(repeated[0])!r} twice: give each column its own name")
    if target not in names:
        shown = ", ".join(repr(printable(h)) for h in names[:8]) + (", ..." if len(names) > 8 else "")
        raise ToolError(f"{name} has no column {printable(target)!r} for --target (its columns: {shown})")
    return names.index(target)


def _number(cell: str, row: int, feature: str, name: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ToolError(f"{name} row {row}, column {printable(feature)!r}: {printable(cell)[:40]!r} is not a "
                        "number (feature columns are numeric; the class column is --target)") from None
    if not abs(value) <= FLOAT32_MAX:  # NaN fails this too
        raise ToolError(f"{name} row {row}, column {printable(feature)!r}: {printable(cell)[:40]!r} is not a "
                        "finite number a float32 holds (NaN, infinite or beyond 3.4e38)")
    return value


def _check_classes(labels: np.ndarray, target: str, test_size: float, name: str) -> None:
    """At least two classes, and enough samples of each for a stratified test part of ``test_size``."""
    counts = Counter(labels.tolist())
    if len(counts) < 2:
        raise ToolError(f"{name} column {printable(target)!r} holds one class ({printable(labels[0])!r}): a "
                        "classifier needs at least two")
    rare, fewest = min(counts.items(), key=lambda item: item[1])
    n_test = math.ceil(test_size * len(labels))
    if fewest < 2 or n_test < len(counts) or len(labels) - n_test < len(counts):
        raise ToolError(f"{name} column {printable(target)!r}: {len(labels)} samples in {len(counts)} classes "
                        f"(class {printable(rare)!r} has {fewest}) are too few for a stratified test part of "
                        f"{test_size:g}: each class needs at least 2 samples and the test part one per class")
