"""Versions of everything that shapes a build, read without importing the heavy packages."""
from __future__ import annotations

import functools
import importlib.metadata
import platform
import shutil
import subprocess

PACKAGES = (
    "tensorflow",
    "tf-keras",
    "qkeras",
    "tensorflow-model-optimization",
    "hls4ml",
    "scikit-learn",
    "numpy",
)
COMPILER = "g++"  # the C-simulation library depends on it: a "version" like the packages'
VIVADO = "vivado"  # the bitstream depends on it: which Vivado would run (see vivado.installed)


@functools.lru_cache(maxsize=None)
def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@functools.lru_cache(maxsize=None)
def compiler_version(compiler: str = "g++") -> str:
    """First line of ``g++ --version``, or 'not found': the C-simulation library depends on it."""
    path = shutil.which(compiler)
    if path is None:
        return "not found"
    result = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return (result.stdout.splitlines() or ["unknown"])[0]


def versions_of(names: tuple[str, ...]) -> dict[str, str]:
    """Versions of ``names``: Python distributions, ``g++`` (its first ``--version`` line) and
    ``vivado`` (the installed tools' identity, without starting Vivado)."""
    found = dict(package_versions(tuple(name for name in names if name not in (COMPILER, VIVADO))))
    if COMPILER in names:
        found[COMPILER] = compiler_version()
    if VIVADO in names:
        from iris_fpga.vivado import installed

        found[VIVADO] = installed()
    return found
