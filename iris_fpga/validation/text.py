"""The plain-text terminal report.

Every line passes through :func:`~iris_fpga.fileio.printable`: class names, dates, modes,
headlines and build ids come from files, and none of them may move the cursor, recolour the
terminal or start a line of its own (e.g. a fake "PASS" hiding a FAIL).
"""
from __future__ import annotations

from iris_fpga.config import CSV_DATASET
from iris_fpga.fileio import printable
from iris_fpga.validation.checks import HOW_TO_GET_HARDWARE_STEPS, Report


def _table(header: list[str], rows: list[list[str]], align: str = "", indent: str = "  "
           ) -> list[str]:
    """Plain-text table; ``align`` has one letter per column, ``l`` or ``r`` (default: first
    column left, the others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    fmt = lambda r: indent + "  ".join(  # noqa: E731
        str(v).ljust(w) if a == "l" else str(v).rjust(w) for v, w, a in zip(r, widths, align)
    ).rstrip()
    return [fmt(header), indent + "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]


def format_report(report: Report) -> str:
    """The plain-text terminal report."""
    d = report.to_dict()
    sections = (_heading(d), _hardware(d["hardware"]), _accuracy(d), _agreement(d), *_confusions(d),
                _misclassified(d), _estimate(d["hardware_estimate"]), _warnings(d["warnings"]), _verdict(d))
    lines = [line for section in sections if section for line in ("", *section)][1:]
    return "\n".join(printable(line) for line in lines)


def dataset_name(dataset: dict | None) -> str:
    """The data set in words: its name, or for a table its label column and the start of its sha256."""
    if dataset is None:
        return "unknown (manifest.json absent or without a dataset)"
    if dataset["name"] != CSV_DATASET:
        return dataset["name"]
    return f"a CSV table (labels in column {dataset.get('target')!r}, sha256 {dataset.get('sha256', '?')[:16]}...)"


def _heading(d: dict) -> list[str]:
    classes = d["classes"]
    return [f"Validation of {d['package']}  (build {d['build_id'] or 'unknown'})",
            f"Data set: {dataset_name(d['dataset'])}",
            f"Test set: {d['samples']} samples, {d['features']} features, {len(classes)} classes "
            f"({', '.join(classes)})"]


def hardware_origin(hw: dict) -> str:
    """Where y_hw.npy came from (a board, or which emulation), or that there is none: one line."""
    if not hw["present"]:
        return "Hardware: no y_hw.npy - software sources only."
    return f"Hardware: y_hw.npy from {hw['mode']} ({hw['mode_note']})"


def _hardware(hw: dict) -> list[str]:
    if not hw["present"]:
        width = max(len(where) for where, _ in HOW_TO_GET_HARDWARE_STEPS)
        return [hardware_origin(hw),
                "  To get the hardware result, run on_target.py:",
                *(f"    {where + ':':<{width + 1}}  {cmd}" for where, cmd in HOW_TO_GET_HARDWARE_STEPS)]
    match = ("matches manifest.json" if hw["build_id_matches"]
             else f"DIFFERS from manifest.json's {hw['manifest_build_id']}: not compared")
    lines = [hardware_origin(hw), f"  build {hw['build_id']} {match}"]
    if not hw["pair_matches"]:
        lines.append("  y_hw.npy is NOT the array y_hw.json records (output_sha256): not compared")
    rec = hw.get("record", {})
    extra = [f"{label} {rec[key]}" for key, label in (("pynq_version", "pynq"), ("date", "date"),
                                                       ("bitfile", "bitfile")) if rec.get(key) is not None]
    lat = (rec.get("batch_latency_s") or {}).get("median")
    if lat is not None:
        extra.append(f"median batch latency {1e3 * lat:.3g} ms")
    thr = (rec.get("throughput_sps") or {}).get("median")
    if thr is not None:
        extra.append(f"median {thr:,.0f} samples/s")
    return lines + (["  " + ", ".join(extra)] if extra else [])


def _accuracy(d: dict) -> list[str]:
    rows = [[s["label"], s["file"], f"{s['correct']}/{s['total']}", f"{100 * s['accuracy']:.2f}%"]
            for s in d["sources"].values()]
    return ["Accuracy against y_test.npy", *_table(["source", "file", "correct", "accuracy"], rows, "llrr")]


def _agreement(d: dict) -> list[str]:
    if not d["agreement"]:
        return []
    rows = []
    for a in d["agreement"]:
        rule = (f"checked: exact classes, |diff| <= {a['tolerance']:g}" if a["checked"]
                else "reported only (fixed point vs float)")
        rows.append([f"{d['sources'][a['a']]['label']} vs {d['sources'][a['b']]['label']}",
                     f"{a['class_agreement']}/{a['total']}", f"{a['max_abs_diff']:.6f}",
                     f"{a['mean_abs_diff']:.6f}", rule])
    return ["Agreement between sources",
            *_table(["pair", "same class", "max |diff|", "mean |diff|", "rule"], rows, "lrrrl")]


def _confusions(d: dict) -> list[list[str]]:
    """One section per distinct confusion matrix (identical ones are printed once)."""
    groups: list[tuple[list[str], list]] = []
    for s in d["sources"].values():
        same = next((g for g in groups if g[1] == s["confusion"]), None)
        if same:
            same[0].append(s["label"])
        else:
            groups.append(([s["label"]], s["confusion"]))
    classes = d["classes"]
    return [[f"Confusion matrix, {' = '.join(labels)} (rows: true class, columns: predicted)",
             *_table(["true \\ predicted", *classes],
                     [[classes[i], *map(str, row)] for i, row in enumerate(confusion)])]
            for labels, confusion in groups]


def _misclassified(d: dict) -> list[str]:
    if not d["misclassified"]:
        return ["Misclassified samples: none"]
    keys = list(d["sources"])
    raw = "raw_features" in d["misclassified"][0]
    header = ["#", "features (scaled)", *(["features (raw)"] if raw else []), "truth",
              *(d["sources"][k]["label"] for k in keys)]
    rows = []
    for m in d["misclassified"]:
        row = [str(m["index"]), " ".join(f"{v:+.2f}" for v in m["features"])]
        if raw:
            row.append(" ".join(f"{v:.2f}" for v in m["raw_features"]))
        row.append(m["truth"])
        for k in keys:
            ans = m["answers"][k]
            row.append(f"{ans['class']} {ans['probability']:.2f}{'' if ans['correct'] else ' *'}")
        rows.append(row)
    return ["Misclassified samples (* = wrong)", *_table(header, rows, "r" + "l" * (len(header) - 1))]


def _estimate(est: dict | None) -> list[str]:
    if est is None:
        return []
    return ["Hardware estimate (hardware_estimate.json)",
            "  " + (est.get("headline") or "(no headline: rerun python BuildModel.py --rtl)"),
            *(["  " + est["what"]] if est.get("what") else [])]


def _warnings(warnings: list[str]) -> list[str]:
    return ["Warnings", *(f"  - {w}" for w in warnings)] if warnings else []


def _verdict(d: dict) -> list[str]:
    lines = ["Checks", *(f"  {c['status'].upper():<4}  {c['name']}: {c['message']}" for c in d["checks"])]
    if d["plots"]:
        lines += ["", "Figures: " + ", ".join(d["plots"])]
    return lines + ["", f"Verdict: {d['verdict'].upper()} (exit {d['exit_code']})"]
