"""What a step is, what it returns, and what the steps share."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from iris_fpga import data as iris_data
from iris_fpga.cache import StepState
from iris_fpga.config import BuildConfig, keyed_by

# Work files of <output-dir>/pipeline/ that more than one step reads.
WEIGHTS = "weights.npz"  # train: the exact trained state
HLS_CONFIG = "hls_config.json"  # convert: the hls4ml configuration
GRAPH = "rtl_graph.json"  # csim: what the rtl step needs from the compiled hls4ml model


@dataclass(frozen=True)
class Outcome:
    """What a step returns.

    ``result``: a small JSON-able record (kept in the cache, used by later steps and the summary);
    ``outputs``: the files it made, whose checksums make reuse safe; ``skipped``: why the step
    did nothing (its outcome is then neither cached nor a result).
    """

    result: dict = field(default_factory=dict)
    outputs: tuple[Path, ...] = ()
    skipped: str | None = None


def always(build: "Build") -> str | None:
    return None


@dataclass(frozen=True)
class Step:
    """One row of the step table.

    ``settings`` (the BuildConfig fields whose declaration names the step, see ``config.Setting``)
    and ``versions`` (packages, or ``g++``) are what its cache key hashes, with ``code`` (source
    this project compiles into the outputs); ``upstream`` the steps whose keys its key includes.
    ``when`` gives the reason the step takes no part in this run (None: it does). ``may_skip``
    says when the step may decline at run time; later steps then do without it, so ``--from``
    never requires it. ``publishes`` names files of the staging folder that the package gets
    whenever the step has a result. ``summary`` turns its result into (label, text) lines. A step
    with ``cached=False`` always runs.
    """

    name: str
    run: Callable[["Build"], Outcome]
    versions: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()
    when: Callable[["Build"], str | None] = always
    may_skip: str = ""
    publishes: tuple[str, ...] = ()
    summary: Callable[["Build", dict], list[tuple[str, str]]] | None = None
    cached: bool = True
    code: tuple[str, ...] = ()  # texts of this project's own code that the outputs depend on
    standalone: bool = False  # reads only package/: ``--from`` it needs no pipeline state

    @property
    def settings(self) -> tuple[str, ...]:
        return keyed_by(self.name)

    def published(self, result: dict):
        """(name in the package, path in the staging folder) of each file the package gets from this step.

        ``publishes`` entries are names (staged under that name) or (name, staged path) pairs; a
        result may add names it made only in some runs (its ``published`` list).
        """
        entries = (*self.publishes, *result.get("published", ()))
        return [(entry, entry) if isinstance(entry, str) else tuple(entry) for entry in entries]


class Build:
    """The settings, the folders, the results so far, and the shared inputs, loaded when needed."""

    def __init__(self, config: BuildConfig, deploy_options: Any = None):
        self.config = config
        self.deploy_target = None
        if deploy_options is not None and getattr(deploy_options, "host", None):
            from iris_fpga.deploy import DeployTarget  # checked now, before any step runs

            self.deploy_target = DeployTarget.from_options(deploy_options)
        self.output_dir = Path(config.output_dir).resolve()
        self.package_dir = Path(config.package_dir).resolve()
        self.work = self.output_dir / "pipeline"
        self.staging = self.work / "staging"
        self.state = StepState(self.work / "state.json", self.output_dir)
        self.results: dict[str, dict] = {}  # by step: run, reused or taken from an earlier run
        self.timings: dict[str, float] = {}  # seconds of the steps that ran now
        self.skipped: dict[str, str] = {}  # by step: why it did nothing
        self.step_keys: dict[str, str] = {}
        self.active_steps: set[str] = set()  # the steps this run takes part in (the runner's choice)
        self.loaded: dict[str, Any] = {}  # "split", "model", "hls_model": kept by the step that made them

    def split(self) -> iris_data.Split:
        if "split" not in self.loaded:
            self.loaded["split"] = iris_data.load_saved(self.staging)
        return self.loaded["split"]

    def model(self):
        """The trained Keras model, rebuilt from the train step's weights when it did not run now."""
        if "model" not in self.loaded:
            from iris_fpga import model as iris_model

            split = self.split()
            self.loaded["model"] = iris_model.load_model(
                self.work / WEIGHTS, self.config, split.X_train.shape[1], split.y_train.shape[1])
        return self.loaded["model"]

    def hls_model(self):
        if "hls_model" not in self.loaded:
            self.convert()
        return self.loaded["hls_model"]

    def convert(self) -> dict:
        """Write the hls4ml project and keep its ModelGraph; returns the hls4ml configuration."""
        from iris_fpga import hls

        cfg = hls.hls_config(self.model(), self.config)
        self.loaded["hls_model"] = hls.convert(self.model(), self.config, self.output_dir, cfg)
        return cfg
