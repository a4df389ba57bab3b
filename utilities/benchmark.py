#!/usr/bin/env python3
"""Measure what the tool delivers and how fast: against the article's own flow, both recipes,
several seeds, one table.

Each build runs ``BuildModel.py`` as a separate process, exactly as a user would, so its wall
time includes Python and TensorFlow start-up and its peak memory is its own (``wait4``). First,
alternating with the seed article's code (``utilities/article_flow.py``): a fresh default build
(new folder, empty compile cache) and a second build with another seed that reuses the compiled
C-simulation library. Writes BENCHMARKS.md and BENCHMARKS.json beside it (the builds go to bench/);
prints the figures and ratios as it goes. ``--only-pairs`` runs the first part alone and replaces
only its section.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from iris_fpga.errors import ExitCode, ToolError  # noqa: E402
from iris_fpga.csim_cache import ENV as CACHE_ENV  # noqa: E402
from iris_fpga.fileio import atomic_write_bytes, atomic_write_json, load_json  # noqa: E402
from iris_fpga.versions import package_versions  # noqa: E402

RECIPES = ("article", "default")
STEP_COLUMNS = ("data", "train", "convert", "csim", "package")
PAIR_BUILDS = ("article", "fresh", "second")  # a round of against_the_article, in its columns' order


def timed_run(argv: list[str], cwd: Path, log_path: Path, env: dict | None = None) -> dict:
    """Run a command; return wall seconds, CPU seconds (user + system) of it and every process it waited
    for, peak RSS (MiB) of that process tree's largest member, exit code."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                env=None if env is None else {**os.environ, **env})
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "exit_code": proc.returncode,
    }


def build(recipe: str, seed: int, root: Path, extra: list[str] | None = None, name: str | None = None,
          env: dict | None = None) -> dict:
    folder = root / (name or f"{recipe}-seed{seed}")
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(REPO / "BuildModel.py"), "--recipe", recipe, "--seed", str(seed),
            "--to", "package", "--output-dir", "prj", "--package-dir", "package", *(extra or [])]
    run = timed_run(argv, folder, folder / "build.log", env)
    if run["exit_code"] != 0:
        raise ToolError(f"{' '.join(argv[1:])} failed (exit {run['exit_code']}): see {folder / 'build.log'}",
                        ExitCode.CHECK_FAILED)
    manifest = json.loads((folder / "package" / "manifest.json").read_text())
    state = json.loads((folder / "prj" / "pipeline" / "state.json").read_text())
    last_run = json.loads((folder / "prj" / "pipeline" / "last_run.json").read_text())
    return {
        "recipe": recipe,
        "seed": seed,
        "folder": str(folder),
        **run,
        "accuracy": manifest["accuracy"],
        "sparsity": manifest["sparsity"],
        "steps": last_run["seconds"],  # this run's own times (the manifest's may come from earlier runs)
        "reused": last_run["reused"],
        "train": state["train"]["result"],
        "csim": {k: state["csim"]["result"].get(k) for k in ("compile_s", "simulate_s", "library_from")},
        "build_id": manifest["build_id"],
    }


def emulated_throughput(package: Path, repeat: int) -> dict:
    argv = [sys.executable, "on_target.py", "--emulate", "--repeat", str(repeat), "--output", "y_hw.npy"]
    run = timed_run(argv, package, package.parent / "on_target.log")
    if run["exit_code"] != 0:
        raise ToolError(f"on_target.py --emulate failed: see {package.parent / 'on_target.log'}", ExitCode.CHECK_FAILED)
    record = json.loads((package / "y_hw.json").read_text())
    shown = package.relative_to(REPO) if package.is_relative_to(REPO) else package
    return {"command": f"cd {shown} && python on_target.py --emulate --repeat {repeat}", "record": record, **run}


def rtl_emulation(work: Path, seed: int, csim_package: Path, samples: int = 100_000) -> dict:
    """An --accelerator rtl build; its --emulate on the test set (wall time with start-up and load), and
    RTL against C-simulation emulation over ``samples`` random inputs (samples/s, outputs identical)."""
    import numpy as np

    built = build("default", seed, work, ["--accelerator", "rtl"], name=f"rtl-seed{seed}")
    package = Path(built["folder"]) / "package"
    test_set = emulated_throughput(package, 1)
    inputs = work / "emulation-inputs"
    inputs.mkdir(exist_ok=True)
    x = np.random.default_rng(seed).normal(size=(samples, 4)).astype(np.float32)
    np.save(inputs / "x.npy", x)
    runs = {}
    for kind, folder in (("rtl", package), ("csim", csim_package)):
        out = inputs / f"y_{kind}.npy"
        argv = [sys.executable, "on_target.py", "--emulate", "--input", str(inputs / "x.npy"), "--output", str(out)]
        run_ = timed_run(argv, folder, inputs / f"{kind}.log")
        if run_["exit_code"] != 0:
            raise ToolError(f"on_target.py --emulate ({kind}) failed: see {inputs / f'{kind}.log'}", ExitCode.CHECK_FAILED)
        runs[kind] = {**run_, "record": json.loads(out.with_suffix(".json").read_text())}
    identical = bool(np.array_equal(np.load(inputs / "y_rtl.npy"), np.load(inputs / "y_csim.npy")))
    ip = json.loads((package / "hardware_estimate.json").read_text())["ip"]
    return {"command": f"cd {Path(built['folder']).relative_to(REPO)}/package && python on_target.py --emulate",
            "samples": samples,
            "test_set": test_set, "runs": runs, "rtl_equals_csim": identical,
            "emulator_step_s": built["steps"].get("emulator"),
            "ip": {"headline": ip["headline"], "seconds": ip["seconds"], "step_s": built["steps"].get("ip"),
                   "longest_path_cells": ip["longest_path_cells"]}}


def article_flow(folder: Path) -> dict:
    """``python utilities/article_flow.py`` in a new ``folder``: the article's code, timed like a build."""
    folder.mkdir(parents=True, exist_ok=True)
    run = timed_run([sys.executable, str(REPO / "utilities" / "article_flow.py")], folder, folder / "article.log")
    if run["exit_code"] != 0:
        raise ToolError(f"utilities/article_flow.py failed (exit {run['exit_code']}): see {folder / 'article.log'}",
                        ExitCode.CHECK_FAILED)
    return run


def against_the_article(work: Path, pairs: int) -> dict:
    """``pairs`` rounds, each: the article's flow and a fresh default build (seed 0, new folder, empty
    compile cache), in alternating order, then a second build with seed I+1 reusing that cache. The
    rounds go into a new folder of ``work`` (an earlier run's builds there would be reused, not built)."""
    rows = []
    rounds = Path(tempfile.mkdtemp(prefix="pairs-", dir=work))
    for i in range(pairs):
        root = rounds / f"pair{i}"
        env = {CACHE_ENV: str(root / "csim-cache")}  # empty: nothing compiled yet
        load = os.getloadavg()[0]
        first, then = ("article", "fresh") if i % 2 == 0 else ("fresh", "article")
        row = {"pair": i, "load_before": round(load, 2)}
        for what in (first, then):
            row[what] = (article_flow(root / "article") if what == "article" else
                         build("default", 0, root, name="fresh", env=env))
        row["second"] = build("default", i + 1, root, name="second", env=env)
        row["load_after"] = round(os.getloadavg()[0], 2)
        rows.append(row)
        print(f"pair {i}: article {row['article']['seconds']:.2f} s, fresh {row['fresh']['seconds']:.2f} s "
              f"(library: {row['fresh']['csim']['library_from']}), second (seed {i + 1}) "
              f"{row['second']['seconds']:.2f} s (library: {row['second']['csim']['library_from']}); CPU "
              + ", ".join(f"{what} {row[what]['cpu_s']:.1f} s" for what in PAIR_BUILDS)
              + f"; load {row['load_before']:.1f}-{row['load_after']:.1f}", flush=True)
    median = {what: statistics.median(r[what]["seconds"] for r in rows) for what in PAIR_BUILDS}
    ratios = {what: median[what] / median["article"] for what in ("fresh", "second")}
    cpu = {what: statistics.median(r[what]["cpu_s"] for r in rows) for what in PAIR_BUILDS}
    print(f"median: article {median['article']:.2f} s, fresh {median['fresh']:.2f} s ({ratios['fresh']:.2f}x, goal "
          f"<= 0.8), second {median['second']:.2f} s ({ratios['second']:.2f}x, goal <= 0.7); CPU seconds: "
          + ", ".join(f"{what} {value:.1f}" for what, value in cpu.items()))
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rows": rows, "median": median,
            "ratios": ratios, "cpu_median": cpu,
            "command": "python utilities/benchmark.py --only-pairs  (part of make bench)"}


def pairs_markdown(pairs: dict) -> list[str]:
    rows, median, ratios = pairs["rows"], pairs["median"], pairs["ratios"]
    lines = ["## Against the article's own flow", "",
             f"Measured {pairs['date']} with `{pairs['command']}`: `utilities/article_flow.py` (the seed article's "
             "code, changed only where today's stack needs it; no bitstream without Vivado) against `python "
             "BuildModel.py --to package` (default recipe), each a new process in a new folder, in alternating "
             "order. Fresh: seed 0 with an empty compile cache. Second: seed I+1 right after, reusing the library "
             "the fresh build compiled (the compile cache). Wall seconds, CPU seconds (user + system, the process "
             "and every process it waited for: g++ included), load average (1 min) before and after each round on "
             "this 2-core machine. A build overlaps work (the early compile with training); the overlap pays only "
             "while a core is idle, so the more loaded the machine, the nearer the wall ratio comes to the CPU "
             "ratio:", "",
             "| round | article | fresh | second | CPU s (article / fresh / second) | library (fresh / second) | load |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        cpu = " / ".join(f"{r[what]['cpu_s']:.1f}" for what in PAIR_BUILDS)
        lines.append(f"| {r['pair']} | {r['article']['seconds']:.2f} | {r['fresh']['seconds']:.2f} | "
                     f"{r['second']['seconds']:.2f} | {cpu} | {r['fresh']['csim']['library_from']} / "
                     f"{r['second']['csim']['library_from']} | {r['load_before']:.1f}-{r['load_after']:.1f} |")
    verdict = {what: ("met" if ratios[what] <= goal else "missed") for what, goal in (("fresh", 0.8), ("second", 0.7))}
    lines += ["", f"Medians: article {median['article']:.2f} s, fresh {median['fresh']:.2f} s, second "
              f"{median['second']:.2f} s. **Fresh/article {ratios['fresh']:.2f}** (goal <= 0.8: {verdict['fresh']}), "
              f"**second/article {ratios['second']:.2f}** (goal <= 0.7: {verdict['second']}). Median CPU seconds: "
              + ", ".join(f"{what} {value:.1f}" for what, value in pairs["cpu_median"].items()) + ".", ""]
    return lines


def summarize(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def markdown(report: dict) -> str:
    lines = ["# Benchmarks", "", *(pairs_markdown(report["pairs"]) if report.get("pairs") else []),
        f"The sections below: measured {report['date']} on this project's machine kind ({report['machine']}), "
        f"with `{report['command']}`. Every figure below comes from that run; "
        "`BENCHMARKS.json` holds the raw numbers.",
        "",
        "## Accuracy and sparsity, seeds " + ", ".join(map(str, report["seeds"])),
        "",
        "| recipe | Keras accuracy mean (min-max) | C-sim accuracy mean (min-max) | Keras/C-sim class agreement (min) | sparsity overall mean (min-max) | per layer (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for recipe in RECIPES:
        r = report["recipes"][recipe]
        k, c, a, s = r["keras"], r["csim"], r["agreement"], r["sparsity"]
        per = ", ".join(f"{n} {100 * v:.1f}%" for n, v in r["per_layer"].items())
        lines.append(
            f"| {recipe} | {100 * k['mean']:.2f}% ({100 * k['min']:.2f}-{100 * k['max']:.2f}) "
            f"| {100 * c['mean']:.2f}% ({100 * c['min']:.2f}-{100 * c['max']:.2f}) "
            f"| {100 * a['min']:.2f}% | {100 * s['mean']:.1f}% ({100 * s['min']:.1f}-{100 * s['max']:.1f}) | {per} |"
        )
    lines += [
        "",
        "## Time per step (seconds, mean over seeds) and the default/article ratio",
        "",
        "| | " + " | ".join(STEP_COLUMNS) + " | of which: TF import | fit | g++ compile | C-sim predict | whole run (wall) | peak memory (MiB) |",
        "|---|" + "---|" * (len(STEP_COLUMNS) + 6),
    ]
    for recipe in RECIPES:
        t = report["recipes"][recipe]["time"]
        lines.append(f"| {recipe} | " + " | ".join(f"{t[s]:.2f}" for s in STEP_COLUMNS)
                     + f" | {t['import']:.2f} | {t['fit']:.2f} | {t['compile']:.2f} | {t['simulate']:.3f}"
                     f" | {t['wall']:.2f} | {report['recipes'][recipe]['peak_rss_mib']:.0f} |")
    ratio = report["ratios"]
    lines.append("| default/article | " + " | ".join(f"{ratio[s]:.2f}" for s in STEP_COLUMNS)
                 + f" | {ratio['import']:.2f} | {ratio['fit']:.2f} | {ratio['compile']:.2f} | {ratio['simulate']:.2f}"
                 f" | **{ratio['wall']:.2f}** | |")
    verdict = "met" if ratio["wall"] <= 1.0 else f"missed by {100 * (ratio['wall'] - 1):.1f}%"
    lines += [
        "",
        f"Whole run, default/article: {ratio['wall']:.3f} (target <= 1.0: {verdict}). Both recipes train the "
        "same 90 steps (30 epochs of 3 batches); the default's pruning adds mask updates, the rest is identical "
        "work, so the two differ by run-to-run noise. Cuts that serve both: the three g++ compiles of the "
        "C-simulation run in parallel, the C-simulation is compiled once with tracing included (the rtl export "
        "would otherwise recompile it), and TensorFlow is imported only by steps that need it.",
    ]
    rerun = report["rerun"]
    lines += [
        "",
        "## Re-running with nothing changed",
        "",
        f"`{rerun['command']}` in the folder of the default seed-{report['seeds'][0]} build: "
        f"{rerun['seconds']:.2f} s against {rerun['fresh_seconds']:.2f} s fresh, "
        f"**{100 * rerun['ratio']:.1f}%** (target <= 20%); steps reused: {', '.join(rerun['reused']) or 'none'}.",
    ]
    if report.get("rtl"):
        rtl = report["rtl"]
        lines += ["", "## The rtl step", "",
                  f"`{rtl['command']}`: {rtl['seconds']:.1f} s wall ({rtl['step_seconds']:.1f} s in the step). {rtl['headline']}"]
    if report.get("emulation"):
        em = report["emulation"]["record"]
        lines += ["", "## Emulated board", "",
                  f"`{report['emulation']['command']}`: {em.get('throughput_sps', {}).get('median', 0):,.0f} samples/s median "
                  f"(max {em.get('throughput_sps', {}).get('max', 0):,.0f}) through the unmodified driver and the "
                  "C-simulation library, in emulation: this is not a board figure."]
    if report.get("rtl_emulation"):
        em = report["rtl_emulation"]
        ip = em["ip"]
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in ip["seconds"].items())
        lines += ["", "## The accelerator IP (`--accelerator rtl`, the `ip` step)", "",
                  f"{ip['headline']}. Longest chain of cells between registers (yosys, a timing proxy): "
                  f"{ip['longest_path_cells']}. The step took {ip['step_s'] or 0:.1f} s ({parts})."]
        sps = {k: v["record"]["throughput_sps"]["max"] for k, v in em["runs"].items()}
        lines += ["", "## Emulated board running the RTL (`--accelerator rtl`)", "",
                  f"`{em['command']}` on the test set: {em['test_set']['seconds']:.2f} s wall, start-up and load "
                  f"included (target < 10 s); the IP counted {em['test_set']['record']['ip_cycles_per_sample']} "
                  f"cycles per sample. Over {em['samples']:,} random inputs, one pass: the Verilated IP "
                  f"{sps['rtl']:,.0f} samples/s, the C-simulation {sps['csim']:,.0f} samples/s (this computer, not a "
                  f"board); outputs identical: {em['rtl_equals_csim']}. The emulator step (Verilator build of the "
                  f"library) took {em['emulator_step_s'] or 0:.1f} s."]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 for each recipe")
    parser.add_argument("--work", type=Path, default=REPO / "bench", help="where the builds go")
    parser.add_argument("--repeat", type=int, default=100, help="on_target.py --repeat for the emulated throughput")
    parser.add_argument("--no-rtl", action="store_true", help="skip the rtl step and the rtl accelerator's emulation")
    parser.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--pairs", type=int, default=5, help="rounds against the article's flow")
    parser.add_argument("--only-pairs", action="store_true", help="only the rounds against the article's flow; "
                        "the other sections of BENCHMARKS.md/.json are kept as they are")
    args = parser.parse_args(argv)
    try:
        if args.seeds < 1 or args.pairs < 1:
            raise ToolError("--seeds and --pairs must be at least 1")
        if args.only_pairs:
            return only_pairs(args)
        return run(args)
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code


def only_pairs(args) -> int:
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    raw = args.markdown.with_suffix(".json")
    report = load_json(raw, max_bytes=16 << 20)
    report["pairs"] = against_the_article(work, args.pairs)
    atomic_write_json(raw, report)
    atomic_write_bytes(args.markdown, markdown(report).encode())
    print(f"wrote {args.markdown} and {raw}")
    return 0


def run(args) -> int:
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    pairs = against_the_article(work, args.pairs)
    seeds = list(range(args.seeds))
    builds = {recipe: [] for recipe in RECIPES}
    for seed in seeds:
        for recipe in RECIPES:  # interleaved, so that machine drift hits both recipes alike
            b = build(recipe, seed, work)
            builds[recipe].append(b)
            print(f"{recipe:8s} seed {seed}: {b['seconds']:6.2f} s, Keras {100 * b['accuracy']['keras']:.2f}%, "
                  f"C-sim {100 * b['accuracy']['csim']:.2f}%, sparsity {100 * b['sparsity']['overall']:.1f}%, "
                  f"peak {b['peak_rss_mib']:.0f} MiB", flush=True)
    recipes = {}
    for recipe, runs in builds.items():
        def mean(field, runs=runs) -> float:
            return statistics.fmean(field(r) for r in runs)

        time_ = {**{s: mean(lambda r, s=s: r["steps"].get(s) or 0.0) for s in STEP_COLUMNS},
                 "import": mean(lambda r: r["train"]["import_s"]), "fit": mean(lambda r: r["train"]["fit_s"]),
                 "compile": mean(lambda r: r["csim"]["compile_s"]), "simulate": mean(lambda r: r["csim"]["simulate_s"]),
                 "wall": mean(lambda r: r["seconds"])}
        layers = runs[0]["sparsity"]["per_layer"]
        recipes[recipe] = {
            "keras": summarize([r["accuracy"]["keras"] for r in runs]),
            "csim": summarize([r["accuracy"]["csim"] for r in runs]),
            "agreement": summarize([r["accuracy"]["agreement"] for r in runs]),
            "sparsity": summarize([r["sparsity"]["overall"] for r in runs]),
            "per_layer": {n: statistics.fmean(r["sparsity"]["per_layer"][n] for r in runs) for n in layers},
            "time": time_,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "runs": runs,
        }
    ratios = {k: recipes["default"]["time"][k] / recipes["article"]["time"][k]
              if recipes["article"]["time"][k] else float("nan") for k in recipes["default"]["time"]}
    print(f"default/article wall-time ratio: {ratios['wall']:.2f} (target <= 1.0)")

    fresh = builds["default"][0]
    again = build("default", seeds[0], work)
    rerun = {"command": "python BuildModel.py --recipe default --seed 0 --to package --output-dir prj --package-dir package",
             "seconds": again["seconds"], "fresh_seconds": fresh["seconds"],
             "ratio": again["seconds"] / fresh["seconds"], "reused": again["reused"]}
    print(f"unchanged rerun: {again['seconds']:.2f} s vs {fresh['seconds']:.2f} s fresh = {100 * rerun['ratio']:.1f}% (target <= 20%)")

    rtl = None
    if not args.no_rtl:
        folder = Path(fresh["folder"])
        argv = [sys.executable, str(REPO / "BuildModel.py"), "--seed", str(seeds[0]), "--rtl", "--from", "rtl",
                "--to", "rtl", "--output-dir", "prj", "--package-dir", "package"]
        run_ = timed_run(argv, folder, folder / "rtl.log")
        if run_["exit_code"] != 0:
            raise ToolError(f"the rtl step failed (exit {run_['exit_code']}): see {folder / 'rtl.log'}", ExitCode.CHECK_FAILED)
        state = json.loads((folder / "prj" / "pipeline" / "state.json").read_text())
        from iris_fpga.datapath import headline

        rtl = {"command": "python BuildModel.py --rtl --from rtl --to rtl", "seconds": run_["seconds"],
               "step_seconds": state["rtl"]["seconds"], "headline": headline(state["rtl"]["result"]["report"])}
        print(f"rtl step: {rtl['step_seconds']:.1f} s; {rtl['headline']}")

    emulation = emulated_throughput(Path(fresh["folder"]) / "package", args.repeat)
    sps = emulation["record"].get("throughput_sps", {})
    print(f"emulated board: {sps.get('median', 0):,.0f} samples/s median (emulation, not a board)")

    rtl_emulation_ = None
    if not args.no_rtl:
        rtl_emulation_ = rtl_emulation(work, seeds[0], Path(fresh["folder"]) / "package")
        print(f"rtl emulation: test set {rtl_emulation_['test_set']['seconds']:.2f} s wall; "
              + ", ".join(f"{k} {v['record']['throughput_sps']['max']:,.0f} samples/s"
                          for k, v in rtl_emulation_["runs"].items())
              + f" over {rtl_emulation_['samples']:,}; identical: {rtl_emulation_['rtl_equals_csim']}")

    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "command": "make bench  (python utilities/benchmark.py)",
        "seeds": seeds,
        "versions": package_versions(),
        "recipes": recipes,
        "ratios": ratios,
        "rerun": rerun,
        "rtl": rtl,
        "emulation": emulation,
        "rtl_emulation": rtl_emulation_,
        "pairs": pairs,
    }
    raw = args.markdown.with_suffix(".json")
    atomic_write_json(raw, report)
    atomic_write_bytes(args.markdown, markdown(report).encode())
    print(f"wrote {args.markdown} and {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
