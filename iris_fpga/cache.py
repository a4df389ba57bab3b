"""Which steps can be reused: each step's key hashes its settings, versions and upstream keys.

The keys are computed before any heavy import, so a run with nothing changed decides to reuse its
steps without loading TensorFlow. A step is reused only when its key matches and every output it
recorded still exists with the checksum it had.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

from iris_fpga.errors import ToolError
from iris_fpga.fileio import atomic_write_json, is_regular_file, load_json, sha256_file

log = logging.getLogger(__name__)


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_keys(steps: Sequence, config, versions: Mapping[str, str]) -> dict[str, str]:
    """The key of every cached step of the table ``steps`` (in order, so upstream keys come first).

    A key hashes the step's name, its upstream steps' keys, the settings it declares and the
    versions of the packages it declares (``versions`` maps every declared name to its version),
    and the project's own code it declares.
    """
    keys: dict[str, str] = {}
    for step in steps:
        if step.cached:
            keys[step.name] = fingerprint(
                step.name,
                [keys[name] for name in step.upstream],
                config.subset(*step.settings),
                {name: versions[name] for name in step.versions},
                *step.code,
            )
    return keys


class StepState:
    """The record of finished steps in ``<output-dir>/pipeline/state.json``.

    Outputs are recorded relative to ``root`` (the output folder), so a moved or copied build
    folder stays reusable. The file is read like any file that may be hostile (fileio's bounded
    reader: no link, FIFO or device, capped size and depth, finite numbers) and its shape checked;
    anything unexpected means no reusable state, said in one line, and the steps run again.
    """

    def __init__(self, path: Path, root: Path):
        self.path = Path(path)
        self.root = Path(root)
        self.steps: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        if not os.path.lexists(self.path):
            return {}
        try:
            steps = load_json(self.path)
            problem = _state_problem(steps)
        except ToolError as exc:
            problem = str(exc)
        if problem is None:
            return steps
        log.warning("%s: no reusable state (%s); the steps run again", self.path, problem)
        return {}

    def reusable(self, step: str, key: str) -> dict[str, Any] | None:
        """The recorded result of ``step`` if it was made from ``key`` and its outputs are intact."""
        record = self.steps.get(step)
        if not record or record.get("key") != key:
            return None
        for name, digest in record.get("outputs", {}).items():
            path = self.root / name
            if not is_regular_file(path) or sha256_file(path) != digest:
                return None
        return record.get("result", {})

    def record(self, step: str, key: str, result: dict[str, Any], outputs: list[Path], seconds: float) -> None:
        self.steps[step] = {
            "key": key,
            "result": result,
            "outputs": {Path(p).relative_to(self.root).as_posix(): sha256_file(p) for p in outputs},
            "seconds": round(seconds, 3),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, self.steps)  # a rename: replaces a link or FIFO there, never follows it
        except OSError as exc:
            raise ToolError(f"cannot record step {step} in {self.path} ({exc.strerror}): remove what is in "
                            "its place") from None


def _state_problem(steps: Any) -> str | None:
    """What makes ``steps`` no record :meth:`StepState.record` writes, or None."""
    if not isinstance(steps, dict):
        return f"a JSON {type(steps).__name__}, not an object of steps"
    for name, record in steps.items():
        if not isinstance(record, dict) or not isinstance(record.get("key"), str) \
                or not isinstance(record.get("result", {}), dict) or not isinstance(record.get("outputs", {}), dict):
            return f"step {name!r} is not a record of key, result and outputs"
        for output, digest in record.get("outputs", {}).items():
            pure = PurePosixPath(output)
            if not isinstance(digest, str) or pure.is_absolute() or ".." in pure.parts or not output:
                return f"step {name!r} records {output!r}, not a file inside the output folder with its sha256"
    return None
