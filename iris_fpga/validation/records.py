"""The JSON files validation reads (y_hw.json, hardware_estimate.json, scaler.json, the manifest's
``dataset``): loaded with the bounded loader, and every field validation uses checked for its type before it is used."""
from __future__ import annotations

import reprlib
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

from iris_fpga.errors import ToolError
from iris_fpga.fileio import load_json, printable
from iris_fpga.validation.sources import MODE_NOTES, Maker


class Field(NamedTuple):
    name: str
    valid: Callable[[Any], bool]
    expected: str  # for the message: "expected <expected>"
    required: bool = False


def _text(value) -> bool:
    return isinstance(value, str) and value != ""


def _optional_text(value) -> bool:
    return value is None or isinstance(value, str)


def _real(value) -> bool:
    """A JSON number a float holds (a 4,000-digit integer parses, but would overflow in arithmetic)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and -sys.float_info.max <= value <= sys.float_info.max


def _number(value) -> bool:
    return _real(value) and value >= 0


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _sha256(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _timing(value) -> bool:
    return value is None or isinstance(value, dict) and all(_number(v) for v in value.values())


def _finite_list(value) -> bool:
    return isinstance(value, list) and all(_real(v) for v in value)


HW_RECORD = (
    Field("build_id", _text, "the build id, text", required=True),
    Field("mode", lambda v: isinstance(v, str) and v in MODE_NOTES,
          " or ".join(repr(m) for m in MODE_NOTES), required=True),
    Field("emulated", lambda v: v is None or v in ("csim", "rtl"), "'csim', 'rtl' or absent"),
    Field("pynq_version", _optional_text, "text or null"),
    Field("date", _optional_text, "text or null"),
    Field("bitfile", _optional_text, "text or null"),
    Field("samples", _count, "a count"),
    Field("output_sha256", _sha256, "the sha256 of y_hw.npy, 64 hex digits", required=True),
    Field("repeat", _count, "a count"),
    Field("batch_latency_s", _timing, "an object of seconds (numbers >= 0) or null"),
    Field("throughput_sps", _timing, "an object of samples/s (numbers >= 0) or null"),
)
ESTIMATE = (
    Field("headline", _optional_text, "text"),
    Field("what_was_estimated", _optional_text, "text"),
    Field("fits", lambda v: v is None or isinstance(v, bool), "true, false or null"),
)
SCALER = (
    Field("mean", _finite_list, "a list of numbers", required=True),
    Field("scale", _finite_list, "a list of numbers", required=True),
)


DATASET = (  # manifest.json's ``dataset``, the fields the report repeats
    Field("name", _text, "the data set's name, text", required=True),
    Field("target", _text, "the table's label column, text"),
    Field("sha256", _sha256, "the table's sha256, 64 hex digits"),
)


def read_record(path: Path, fields: tuple[Field, ...], maker: Maker) -> dict:
    """The JSON object in ``path`` with ``fields`` checked; ToolError(USAGE) naming the first wrong one."""
    return check_record(load_json(path), printable(path.name), fields, maker)


def check_record(record, name: str, fields: tuple[Field, ...], maker: Maker) -> dict:
    """``record`` (called ``name`` in messages) if it is an object whose ``fields`` are right."""
    if not isinstance(record, dict):
        raise ToolError(f"{name} is not a JSON object; rerun {maker.rerun}")
    for field in fields:
        if field.name not in record:
            if field.required:
                raise ToolError(f"{name} has no {field.name!r} field; rerun {maker.rerun}")
            continue
        if not field.valid(record[field.name]):
            raise ToolError(f"{name} field {field.name!r} is {printable(reprlib.repr(record[field.name]))}: "
                            f"expected {field.expected}; rerun {maker.rerun}")
    return record
