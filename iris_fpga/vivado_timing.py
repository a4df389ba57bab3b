"""Whether an implemented design meets timing, from Vivado's ``report_timing_summary`` text.

Vivado writes a bitstream even when timing is not met (``CRITICAL WARNING: [Timing 38-282]``), and
such a design may compute wrong results on the board, so the bitstream step reads the report. The
"Design Timing Summary" table gives WNS, TNS (setup) and WHS, THS (hold) for the whole design; the
"Timing Details" section gives the worst path of each clock, with its ``Source:`` and
``Destination:`` endpoints. Negative WNS or WHS means timing is not met.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import printable, read_untrusted

MAX_REPORT_BYTES = 1 << 26  # a timing summary of this design is tens of kB
FIGURES = ("wns_ns", "tns_ns", "whs_ns", "ths_ns")
COLUMNS = {"wns_ns": "WNS(ns)", "tns_ns": "TNS(ns)", "whs_ns": "WHS(ns)", "ths_ns": "THS(ns)"}
SLACK = re.compile(r"^Slack \((?:MET|VIOLATED)\)\s*:\s*(-?\d+(?:\.\d+)?)ns")
ENDPOINT = re.compile(r"^\s+(Source|Destination|Path Type):\s+(\S+)")


@dataclass(frozen=True)
class TimingPath:
    """One path of the report's Timing Details: its slack, kind (Setup or Hold) and endpoints."""
    slack_ns: float
    kind: str
    source: str
    destination: str


@dataclass(frozen=True)
class Timing:
    figures: dict  # wns_ns, tns_ns, whs_ns, ths_ns
    paths: tuple  # of TimingPath, as the report's Timing Details lists them

    @property
    def met(self) -> bool:
        return self.figures["wns_ns"] >= 0 and self.figures["whs_ns"] >= 0

    def worst(self, kind: str) -> TimingPath | None:
        """The path of ``kind`` with the least slack in Timing Details, if the report has one."""
        paths = [p for p in self.paths if p.kind == kind]
        return min(paths, key=lambda p: p.slack_ns) if paths else None

    def violations(self) -> str:
        """One clause per violated check: the worst slack and, when Timing Details has it, its path."""
        clauses = []
        for kind, worst, total in (("Setup", "wns_ns", "tns_ns"), ("Hold", "whs_ns", "ths_ns")):
            if self.figures[worst] >= 0:
                continue
            clause = (f"worst {kind.lower()} slack {self.figures[worst]:g} ns "
                      f"({COLUMNS[worst][:3]}; {COLUMNS[total][:3]} {self.figures[total]:g} ns)")
            path = self.worst(kind)
            if path is not None:
                clause += f" from {path.source} to {path.destination}"
            clauses.append(clause)
        return ", ".join(clauses)


def read_timing(report: Path) -> Timing:
    """The Design Timing Summary's four figures and Timing Details' paths; exit 3 if there is no summary."""
    text = read_untrusted(report, MAX_REPORT_BYTES, ExitCode.EXTERNAL_TOOL).decode(errors="replace")
    return Timing(design_summary(text, report), tuple(detail_paths(text)))


def design_summary(text: str, report: Path) -> dict:
    """WNS, TNS, WHS, THS from the table under ``| Design Timing Summary`` (header, dashes, one row)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "| Design Timing Summary"), None)
    header = next((i for i in range(start, min(start + 12, len(lines))) if "WNS(ns)" in lines[i]), None) \
        if start is not None else None
    if header is None:
        raise ToolError(f"Vivado's timing report has no Design Timing Summary; read {report}", ExitCode.EXTERNAL_TOOL)
    names = re.split(r"\s{2,}", lines[header].strip())
    row = next((line.split() for line in lines[header + 2:header + 5] if line.strip()), [])
    if len(row) != len(names):
        raise ToolError(f"Vivado's timing report has a Design Timing Summary without its row of figures; read {report}",
                        ExitCode.EXTERNAL_TOOL)
    values = dict(zip(names, row))
    figures = {}
    for key, column in COLUMNS.items():
        try:
            figures[key] = float(values[column])
        except (KeyError, ValueError):
            raise ToolError(f"Vivado's timing report gives {column} as {printable(values.get(column, 'nothing'))[:20]}"
                            f" (no timed paths?): timing is unchecked; read {report}", ExitCode.EXTERNAL_TOOL) from None
    return figures


def detail_paths(text: str) -> list[TimingPath]:
    """Every ``Slack (MET|VIOLATED)`` block after ``| Timing Details`` with its endpoints and kind."""
    _, found, details = text.partition("| Timing Details")
    paths, current = [], None
    for line in details.splitlines() if found else ():
        slack = SLACK.match(line)
        if slack:
            current = {"slack_ns": float(slack.group(1))}
            continue
        field = ENDPOINT.match(line) if current is not None else None
        if field:
            current[{"Source": "source", "Destination": "destination", "Path Type": "kind"}[field.group(1)]] = \
                printable(field.group(2))[:200]
            if len(current) == 4:
                paths.append(TimingPath(**current))
                current = None
    return paths
