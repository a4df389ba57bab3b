"""The ``--html`` page: the report and every figure in one file, to open or attach to a bug report.

Self-contained: figures are inlined as ``data:`` URIs, the style is inline, and a
Content-Security-Policy forbids every other source, so opening the page makes no network request.
Every string from the package's files passes through :func:`~iris_fpga.fileio.printable` and then
:func:`html.escape`: a class name or a date cannot add markup, a script or a fake verdict.
"""
from __future__ import annotations

import base64
import html
import struct
from pathlib import Path

from iris_fpga import contract
from iris_fpga.errors import ToolError
from iris_fpga.fileio import atomic_write_bytes, printable, read_untrusted
from iris_fpga.validation.checks import Report
from iris_fpga.validation.load import PackageData
from iris_fpga.validation.text import dataset_name, format_report, hardware_origin

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PROFILE_BYTES = 8 << 20  # the profile PNG is about 100 kB
CAPTIONS = {
    "confusion.png": "Confusion matrices: true class (rows) against predicted class (columns), per source.",
    "probabilities.png": "Every test sample's probability per class from each source; green ticks mark the true class.",
    contract.PROFILE: "Numerical profile (from the build): weights and float activations against the fixed-point "
                      "types hls4ml chose; values beyond a type's range wrap or saturate.",
}
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.verdict { font-size: 1.3em; font-weight: bold; padding: 0.4em 0.7em; border-radius: 4px; display: inline-block; }
.pass { background: #e3f4e1; color: #1b5e20; } .fail { background: #fde2e1; color: #a01c14; }
table { border-collapse: collapse; } td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 13px; }
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(text: object) -> str:
    return html.escape(printable(text))


def package_profile(data: PackageData) -> bytes | None:
    """The build's numerical profile PNG when the manifest lists it, checked against the manifest."""
    manifest = data.manifest
    if not manifest or contract.PROFILE not in manifest["files"]:
        return None
    problems = contract.verify(data.package_dir, manifest, [contract.PROFILE])
    if problems:
        raise ToolError(f"{printable(problems[0])}: the package changed after the package step; "
                        "rerun python BuildModel.py")
    png = read_untrusted(data.package_dir / contract.PROFILE, MAX_PROFILE_BYTES)
    if not png.startswith(PNG_SIGNATURE) or len(png) < 24:
        raise ToolError(f"{contract.PROFILE} is not a PNG image: rerun python BuildModel.py")
    return png


def render_page(report: Report, figures: dict[str, bytes]) -> str:
    """The whole page as text; ``figures`` maps a file name to PNG bytes, shown in that order."""
    d = report.to_dict()
    verdict = d["verdict"]
    title = f"Validation: {verdict.upper()}, build {d['build_id'] or 'unknown'}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Validation of {_e(d['package'])}</h1>",
        f"<p>Data set: {_e(dataset_name(d['dataset']))}.</p>",
        f"<p>Build {_e(d['build_id'] or 'unknown')}; test set of {d['samples']} samples, "
        f"{d['features']} features, classes {_e(', '.join(d['classes']))}.</p>",
        f"<p>{_e(hardware_origin(d['hardware']))}</p>",  # a result of emulation says so at the top
        f'<p class="verdict {verdict}">Verdict: {verdict.upper()} (exit {d["exit_code"]})</p>',
        "<h2>Accuracy against y_test.npy</h2>",
        _table(["source", "file", "correct", "accuracy"],
               [[s["label"], s["file"], f"{s['correct']}/{s['total']}", f"{100 * s['accuracy']:.2f}%"]
                for s in d["sources"].values()], numeric={2, 3}),
        "<h2>Checks</h2>",
        _table(["result", "check", "detail"], [[c["status"].upper(), c["name"], c["message"]] for c in d["checks"]]),
        *_figures(figures),
        "<h2>The full report</h2>",
        f"<pre>{html.escape(format_report(report))}</pre>",
        "<p>Written by utilities/validate_model.py --html; the figures are inside this file.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>{_e(v)}</td>'
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figures(figures: dict[str, bytes]) -> list[str]:
    if not figures:
        return []
    out = ["<h2>Figures</h2>"]
    for name, png in figures.items():
        width, height = struct.unpack(">II", png[16:24])  # the PNG's IHDR: reserves the space before decoding
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        out.append(f'<figure><img src="{uri}" alt="{_e(name)}" width="{width}" height="{height}">'
                   f"<figcaption>{_e(CAPTIONS.get(name, name))}</figcaption></figure>")
    return out


def write_html(report: Report, figures: dict[str, bytes], path: Path | str) -> Path:
    """Write the page to ``path`` atomically (complete or absent, never half-written)."""
    path = Path(path)
    page = render_page(report, figures).encode("utf-8")
    try:
        atomic_write_bytes(path, page)
    except OSError as exc:
        raise ToolError(f"cannot write {printable(path)}: {printable(exc.strerror or exc)}") from None
    return path
