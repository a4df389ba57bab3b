"""Which steps can be reused: each step's key hashes its settings, versions and upstream keys.

The keys are computed before any heavy import, so a run with nothing changed decides to reuse its
steps without loading TensorFlow. A step is reused only when its key matches and every output it
recorded still exists with the checksum it had.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from iris_fpga.fileio import atomic_write_json, sha256_file


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
    folder stays reusable.
    """

    def __init__(self, path: Path, root: Path):
        self.path = Path(path)
        self.root = Path(root)
        try:
            self.steps: dict[str, dict[str, Any]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.steps = {}

    def reusable(self, step: str, key: str) -> dict[str, Any] | None:
        """The recorded result of ``step`` if it was made from ``key`` and its outputs are intact."""
        record = self.steps.get(step)
        if not record or record.get("key") != key:
            return None
        for name, digest in record.get("outputs", {}).items():
            path = self.root / name
            if not path.is_file() or sha256_file(path) != digest:
                return None
        return record.get("result", {})

    def record(self, step: str, key: str, result: dict[str, Any], outputs: list[Path], seconds: float) -> None:
        self.steps[step] = {
            "key": key,
            "result": result,
            "outputs": {Path(p).relative_to(self.root).as_posix(): sha256_file(p) for p in outputs},
            "seconds": round(seconds, 3),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, self.steps)
