"""Where validation may write (``--plot DIR``, ``--html FILE``): never into the package it reads.

``--html package/manifest.json`` would replace the manifest, ``--plot package`` add files the
manifest does not list. Both are refused before anything is read or written, as ``on_target.py
--output`` refuses a file of the package. Links are resolved first: a path that leads into the
package through a link, or a link inside the package that leads out, is refused just the same.
"""
from __future__ import annotations

from pathlib import Path

from iris_fpga.errors import ToolError
from iris_fpga.validation.plots import FIGURES


def check_outputs(package_dir: Path | str, plot_dir: Path | str | None = None,
                  html: Path | str | None = None) -> None:
    """Refuse (exit 2) a ``--plot`` folder or ``--html`` file that is, or lies in, ``package_dir``."""
    targets = [("--html", Path(html))] if html is not None else []
    if plot_dir is not None:
        targets += [("--plot", Path(plot_dir)), *(("--plot", Path(plot_dir) / name) for name in FIGURES)]
    package = Path(package_dir).resolve()
    for option, path in targets:
        # Where the path leads, and where a write would put it (a rename replaces a link itself).
        for where in (path.resolve(), path.parent.resolve() / path.name):
            if where == package or package in where.parents:
                raise ToolError(f"{option} {path} lies in the package folder {package_dir} ({where}): validation "
                                "writes nothing into the package it checks; choose a path outside it")
