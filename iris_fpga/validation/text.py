"""The plain-text terminal report."""
from __future__ import annotations

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
    lines: list[str] = []
    n, classes = d["samples"], d["classes"]
    lines.append(f"Validation of {d['package']}  (build {d['build_id'] or 'unknown'})")
    lines.append(f"Test set: {n} samples, {d['features']} features, {len(classes)} classes "
                 f"({', '.join(classes)})")

    hw = d["hardware"]
    lines.append("")
    if not hw["present"]:
        lines.append("Hardware: no y_hw.npy - software sources only.")
        lines.append("  To get the hardware result, run on_target.py:")
        width = max(len(where) for where, _ in HOW_TO_GET_HARDWARE_STEPS)
        lines += [f"    {where + ':':<{width + 1}}  {cmd}" for where, cmd in HOW_TO_GET_HARDWARE_STEPS]
    else:
        match = ("matches manifest.json" if hw["build_id_matches"]
                 else f"DIFFERS from manifest.json's {hw['manifest_build_id']}: not compared")
        lines.append(f"Hardware: y_hw.npy from {hw['mode']} ({hw['mode_note']})")
        lines.append(f"  build {hw['build_id']} {match}")
        rec = hw.get("record", {})
        extra = []
        for key, label in (("pynq_version", "pynq"), ("date", "date"), ("bitfile", "bitfile")):
            if rec.get(key) is not None:
                extra.append(f"{label} {rec[key]}")
        lat = rec.get("batch_latency_s")
        if isinstance(lat, dict) and isinstance(lat.get("median"), (int, float)):
            extra.append(f"median batch latency {1e3 * lat['median']:.3g} ms")
        thr = rec.get("throughput_sps")
        if isinstance(thr, dict) and isinstance(thr.get("median"), (int, float)):
            extra.append(f"median {thr['median']:,.0f} samples/s")
        if extra:
            lines.append("  " + ", ".join(extra))

    lines.append("")
    lines.append("Accuracy against y_test.npy")
    rows = [[s["label"], s["file"], f"{s['correct']}/{s['total']}", f"{100 * s['accuracy']:.2f}%"]
            for s in d["sources"].values()]
    lines += _table(["source", "file", "correct", "accuracy"], rows, "llrr")

    if d["agreement"]:
        lines.append("")
        lines.append("Agreement between sources")
        rows = []
        for a in d["agreement"]:
            rule = (f"checked: exact classes, |diff| <= {a['tolerance']:g}" if a["checked"]
                    else "reported only (fixed point vs float)")
            rows.append([f"{d['sources'][a['a']]['label']} vs {d['sources'][a['b']]['label']}",
                         f"{a['class_agreement']}/{a['total']}", f"{a['max_abs_diff']:.6f}",
                         f"{a['mean_abs_diff']:.6f}", rule])
        lines += _table(["pair", "same class", "max |diff|", "mean |diff|", "rule"], rows, "lrrrl")

    groups: list[tuple[list[str], list]] = []  # identical matrices are printed once
    for s in d["sources"].values():
        same = next((g for g in groups if g[1] == s["confusion"]), None)
        if same:
            same[0].append(s["label"])
        else:
            groups.append(([s["label"]], s["confusion"]))
    for labels, confusion in groups:
        lines.append("")
        lines.append(f"Confusion matrix, {' = '.join(labels)} (rows: true class, columns: "
                     f"predicted)")
        rows = [[classes[i], *map(str, row)] for i, row in enumerate(confusion)]
        lines += _table(["true \\ predicted", *classes], rows)

    lines.append("")
    if not d["misclassified"]:
        lines.append("Misclassified samples: none")
    else:
        lines.append("Misclassified samples (* = wrong)")
        keys = list(d["sources"])
        raw = "raw_features" in d["misclassified"][0]
        header = ["#", "features (scaled)", *(["features (raw)"] if raw else []), "truth",
                  *(d["sources"][k]["label"] for k in keys)]
        rows = []
        for m in d["misclassified"]:
            feats = " ".join(f"{v:+.2f}" for v in m["features"])
            row = [str(m["index"]), feats]
            if raw:
                row.append(" ".join(f"{v:.2f}" for v in m["raw_features"]))
            row.append(m["truth"])
            for k in keys:
                ans = m["answers"][k]
                row.append(f"{ans['class']} {ans['probability']:.2f}{'' if ans['correct'] else ' *'}")
            rows.append(row)
        lines += _table(header, rows, "r" + "l" * (len(header) - 1))

    est = d["hardware_estimate"]
    if est is not None:
        lines.append("")
        lines.append("Hardware estimate (hardware_estimate.json)")
        lines.append("  " + (est.get("headline") or "(no headline: rerun python BuildModel.py --rtl)"))
        if est.get("what"):
            lines.append("  " + est["what"])

    if d["warnings"]:
        lines.append("")
        lines.append("Warnings")
        lines += [f"  - {w}" for w in d["warnings"]]

    lines.append("")
    lines.append("Checks")
    for c in d["checks"]:
        lines.append(f"  {c['status'].upper():<4}  {c['name']}: {c['message']}")
    if d["plots"]:
        lines.append("")
        lines.append("Figures: " + ", ".join(d["plots"]))
    lines.append("")
    lines.append(f"Verdict: {d['verdict'].upper()} (exit {d['exit_code']})")
    return "\n".join(lines)

