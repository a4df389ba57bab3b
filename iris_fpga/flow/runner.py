"""The runner: ``BuildModel`` runs the steps of ``STEPS`` (``iris_fpga.flow.steps``) in order.

It decides from the table alone which steps take part, which are reused (their cache keys, from
settings and versions, before any heavy import), what an earlier run left that ``--from`` needs,
and it writes ``last_run.json`` and the summary. The command line is ``iris_fpga.flow.cli``.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from iris_fpga.cache import cache_keys
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import atomic_write_json
from iris_fpga.flow.context import Build, Step
from iris_fpga.flow.steps import STEP_NAMES, STEPS
from iris_fpga.packaging import check_folders
from iris_fpga.versions import versions_of

log = logging.getLogger("BuildModel")


class BuildModel(Build):
    """The whole workstation flow: runs the steps of ``iris_fpga.flow.steps.STEPS`` in order."""

    def keys(self) -> dict[str, str]:
        """Cache keys of all cached steps, from settings and versions alone (no heavy import)."""
        names = tuple(sorted({name for step in STEPS for name in step.versions}))
        return cache_keys(STEPS, self.config, versions_of(names))

    def run(self, start: str = "data", stop: str = "deploy") -> int:
        steps = STEPS[STEP_NAMES.index(start): STEP_NAMES.index(stop) + 1]
        self.skipped.update({step.name: why for step in steps if (why := step.when(self))})
        active = [step for step in steps if step.name not in self.skipped]
        if not active:
            reasons = "; ".join(f"{n}: {why}" for n, why in self.skipped.items())
            raise ToolError(f"--from {start} --to {stop} runs no step ({reasons})")
        standalone = all(step.standalone for step in active)  # deploy: touches only package/
        self.prepare([step.name for step in steps], standalone)
        self.step_keys = self.keys()
        self.gather(active, start)
        self.active_steps = {step.name for step in active}
        try:
            for i, step in enumerate(active, 1):
                self.run_step(step, f"[{i}/{len(active)}]")
        finally:
            early = self.loaded.pop("early_compile", None)  # started by train, not taken by csim
            if early is not None:
                early.cancel()
        if not standalone:
            self.work.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.work / "last_run.json", {
                "seconds": self.timings,
                "reused": [step.name for step in active if step.name not in self.timings],
                "skipped": self.skipped,
            })
        self.summary()
        return ExitCode.OK

    def prepare(self, names: list[str], standalone: bool = False) -> None:
        """Refuse what would fail later, before any step runs: unknown board, unwritable folders.
        Standalone steps write no folder of the build: they check their own."""
        from iris_fpga.hls import check_board

        check_board(self.config.board)
        if standalone:
            return
        check_folders(self.config.output_dir, self.config.package_dir, replace_package="package" in names)
        for folder in (self.output_dir, self.package_dir.parent):
            _check_writable(folder)

    def gather(self, active: list[Step], start: str) -> None:
        """Results of the cached steps before the last active one that do not run now.

        A step before ``--from`` must have finished with today's settings, unless it is not part
        of this run or may skip; the result of any other earlier run is used when still valid.
        """
        if all(step.standalone for step in active):
            return
        running = {step.name for step in active}
        for step in STEPS[: STEP_NAMES.index(active[-1].name)]:
            if step.name in running or step.name not in self.step_keys:
                continue
            result = self.state.reusable(step.name, self.step_keys[step.name])
            if result is not None:
                self.results[step.name] = result
            elif STEP_NAMES.index(step.name) < STEP_NAMES.index(start) and not step.may_skip \
                    and step.when(self) is None:
                raise ToolError(
                    f"--from {start} needs the outputs of step {step.name!r} made with these settings, "
                    f"and {self.work} has none: run with --from {step.name} (or without --from)"
                )

    def run_step(self, step: Step, counter: str) -> None:
        """Reuse the step's recorded result when its key matches, else run it and record what it made."""
        key = self.step_keys.get(step.name)
        reused = self.state.reusable(step.name, key) if key else None
        if reused is not None:
            self.results[step.name] = reused
            log.info("%s %-9s reused (inputs unchanged, key %s)", counter, step.name, key)
            return
        log.info("%s %-9s ...", counter, step.name)
        t0 = time.perf_counter()
        outcome = step.run(self)
        seconds = time.perf_counter() - t0
        self.timings[step.name] = round(seconds, 3)
        if outcome.skipped:
            self.skipped[step.name] = outcome.skipped
        else:
            self.results[step.name] = outcome.result
            if key:
                self.state.record(step.name, key, outcome.result, list(outcome.outputs), seconds)
        done = "skipped (see the summary) after" if outcome.skipped else "done in"
        log.info("%s %-9s %s %.1f s", counter, step.name, done, seconds)

    def summary(self) -> None:
        log.info("")
        log.info("Summary")
        for step in STEPS:
            if step.name in self.skipped:
                lines = [(step.name, f"skipped: {self.skipped[step.name]}")]
            elif step.name in self.results and step.summary:
                lines = step.summary(self, self.results[step.name])
            else:
                lines = []
            for label, text in lines:
                log.info("  %-12s %s", label, text)
        if self.timings:
            log.info("  time         %s", ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))


def _check_writable(folder: Path) -> None:
    """Refuse a folder this user cannot write to, before any step runs."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ToolError(f"cannot write to {folder} ({exc.strerror}): choose a writable folder") from None
