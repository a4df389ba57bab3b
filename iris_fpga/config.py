"""The build's settings as data: one dataclass, written into every output and read back from it.

Each setting is declared once, as a field of ``BuildConfig`` made with ``setting(...)``: its
default, help, range or check, and the steps whose cache keys it enters. The command line
(``iris_fpga.flow.cli``), ``BuildConfig.validated`` and ``Step.settings`` are made from these
declarations, so a new setting is one field and its use in a step.

Recipes are named sets of training settings. ``default`` really prunes and reaches the article's
accuracy within the article's own training budget; ``article`` reproduces the seed article's
settings exactly, whose pruning schedule starts after step 2000 while its training lasts 90 steps,
so it never prunes.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import printable

RECIPES: dict[str, dict[str, Any]] = {
    # The article's training budget (30 epochs, 90 steps), but a learning rate that learns the task
    # in that budget and a pruning schedule that starts inside it.
    "default": {
        "epochs": 30,
        "lr": 5e-3,
        "batch_size": 32,
        "validation_split": 0.25,
        "sparsity": 0.75,
        "pruning_begin_step": 20,
        "pruning_frequency": 10,
    },
    "article": {
        "epochs": 30,
        "lr": 1e-4,
        "batch_size": 32,
        "validation_split": 0.25,
        "sparsity": 0.75,
        "pruning_begin_step": 2000,
        "pruning_frequency": 100,
    },
}

# The network (issue 16): the article's QDense 64-32-32-3 with 6-bit weights, biases and ReLUs.
ARTICLE_HIDDEN = (64, 32, 32)
ARTICLE_BITS = 6
HIDDEN_LAYERS = range(1, 7)  # how many hidden layers --hidden may give
HIDDEN_WIDTH = range(1, 257)  # units per hidden layer
QUANTIZER_BITS = range(2, 17)  # --weight-bits and --activation-bits


def parse_widths(text: str) -> tuple[int, ...]:
    """``"64,32,32"`` -> (64, 32, 32); anything else is a usage error (ranges: ``validated``)."""
    if not re.fullmatch(r"[0-9]+(,[0-9]+)*", text):
        raise ToolError(f"--hidden takes comma-separated whole numbers such as 64,32,32 (got {text!r})")
    return tuple(int(part) for part in text.split(","))


MAX_FOLDS = 20  # --cv-fold I/K: K from 2 to this (each class needs K members in the training part)


def parse_fold(text: str) -> tuple[int, int]:
    """``"2/3"`` -> (2, 3): fold 2 of 3; anything else is a usage error (ranges: ``check_fold``)."""
    if not re.fullmatch(r"[0-9]{1,6}/[0-9]{1,6}", text):
        raise ToolError(f"--cv-fold takes I/K, fold I of K, such as 1/3 (got {printable(text)!r})")
    fold, folds = text.split("/")
    return int(fold), int(folds)


def check_fold(label: str, value: Any) -> None:
    if value is None:
        return
    ok = (isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                              for v in value))
    if not ok or not (2 <= value[1] <= MAX_FOLDS and 1 <= value[0] <= value[1]):
        raise ToolError(f"{label} takes I/K with K from 2 to {MAX_FOLDS} and I from 1 to K, such as 1/3 "
                        f"(got {printable(_fold_text(value) if ok else value)})")


def _fold_text(value: tuple[int, int] | None) -> str | None:
    return None if value is None else f"{value[0]}/{value[1]}"


def dense_layer_names(n_hidden: int) -> tuple[str, ...]:
    """Keras/hls4ml names of the Dense layers: fc1 .. fcN, then output (the article's names for N = 3)."""
    return tuple(f"fc{i}" for i in range(1, n_hidden + 1)) + ("output",)

# scikit-learn's bundled data sets (no download); "csv" is a user's table, named by --csv and --target.
DATASETS = ("iris", "wine", "breast_cancer", "digits")
CSV_DATASET = "csv"

# Boards that work end to end: on_target.py drives a PYNQ-Z2 (it checks the bitstream's part,
# xc7z020). hls4ml knows others (zcu102, Alveo cards), whose packages no board script here runs.
BOARDS = ("pynq-z2",)
# hls: hls4ml's VivadoAccelerator IP (Vivado HLS 2020.1 + Vivado); rtl: the project's own Verilog IP
# (iris_fpga.ip: da4ml's datapath, hls4ml's softmax, myproject_axi's ports; Vivado alone).
ACCELERATORS = ("hls", "rtl")
MAX_REUSE_FACTOR = 1 << 16  # hls4ml writes it into C++ as an unsigned; far beyond any layer's size
MAX_SEED = (1 << 32) - 1  # numpy's and TensorFlow's seeds are 32-bit
MAX_LR = 3.4028234663852886e38  # the largest float32: TensorFlow holds the learning rate as one
# Guards against a typo that would run for days or exhaust memory, far beyond any sensible use:
MAX_EPOCHS = 100_000  # the default recipe trains 30
MAX_RTL_RANDOM = 100_000  # the default is 2,000; the ip step simulates each one in cocotb and in the netlist
# ap_fixed<W,I[,Q[,O[,N]]]> as hls4ml and Vivado HLS read it; W up to AP_INT_MAX_W (1024).
FIXED_TYPE = re.compile(
    r"(?:ap_)?u?fixed<\s*(?P<width>\d{1,4})\s*,\s*(?P<integer>-?\d{1,4})\s*"
    r"(?:,\s*(?:AP_)?(?:TRN|TRN_ZERO|RND|RND_ZERO|RND_INF|RND_MIN_INF|RND_CONV)\s*"
    r"(?:,\s*(?:AP_)?(?:WRAP|SAT|SAT_ZERO|SAT_SYM)\s*(?:,\s*(?P<sat_bits>\d{1,4})\s*)?)?)?>"
)
MAX_FIXED_WIDTH = 1024
# The IP's clock in hls4ml's PYNQ-Z2 block design (FCLK0): the Verilog IP's FREQ_HZ. on_target.py
# keeps its own copy (IP_CLOCK_HZ), which the board script's drift test compares with this one.
IP_CLOCK_HZ = 100_000_000
# Carry chains per register stage of the rtl datapath (--latency-cutoff's default): 3 keeps every
# stage of the IP under 5 ns of logic (README, "The accelerator IP", gives the figures).
CHAINS_PER_STAGE = 3.0


def check_fixed_type(option: str, value: str) -> None:
    """Refuse a fixed-point type string that hls4ml or the C++ compiler would choke on later."""
    match = FIXED_TYPE.fullmatch(value) if isinstance(value, str) else None
    width = int(match["width"]) if match else 0
    sat_bits = int(match["sat_bits"] or 0) if match else 0
    if not (match and 1 <= width <= MAX_FIXED_WIDTH and abs(int(match["integer"])) <= MAX_FIXED_WIDTH
            and sat_bits <= width):
        raise ToolError(f"{option} must be a fixed-point type ap_fixed<W,I> or ap_ufixed<W,I> (optionally with "
                        f"rounding and overflow modes), W from 1 to {MAX_FIXED_WIDTH}, such as ap_fixed<16,6> "
                        f"(got {value!r})", ExitCode.USAGE)


@dataclasses.dataclass(frozen=True)
class Within:
    """A range a setting must lie in: ``low <= value <= high`` (``<`` at an open end); None: unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    text: str = ""  # how a refusal states the range, where the generated wording reads badly

    def holds(self, value: Any) -> bool:
        try:
            above = self.low is None or (value > self.low if self.low_open else value >= self.low)
            below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        except TypeError:  # a string where a number belongs (a hand-edited manifest)
            return False
        return bool(above and below)

    def describe(self) -> str:
        """"at least 1", "2 to 16", "in [0, 1)": the range as a refusal states it."""
        if self.text:
            return self.text
        if self.high is None:
            return f"{'greater than' if self.low_open else 'at least'} {self.low}"
        if self.low is None:
            return f"{'less than' if self.high_open else 'at most'} {self.high}"
        if self.low_open or self.high_open:
            return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        return f"{self.low} to {self.high}"


@dataclasses.dataclass(frozen=True)
class Setting:
    """The declaration of one ``BuildConfig`` field: everything else about the setting follows from it.

    ``help`` is the option's help (or, with ``option=False``, what the setting is: no command-line
    option then; a recipe or the fixed split sets it). ``keys`` names the steps whose cache key
    hashes it (``Step.settings`` reads them). ``within`` (a range), ``choices`` (also argparse's)
    and ``check`` (a function ``(label, value)`` raising ``ToolError``, for rules that are not a
    range) are what ``BuildConfig.validated`` enforces. ``parse`` is argparse's type when it is not
    the field's own, ``show`` writes the default as the command line takes it, ``metavar`` names
    the value in ``--help``. The option is ``--`` and the field name with dashes.
    """

    help: str
    keys: tuple[str, ...] = ()
    option: bool = True
    within: Within | None = None
    choices: tuple[str, ...] | None = None
    check: Callable[[str, Any], None] | None = None
    parse: Callable[[str], Any] | None = None
    show: Callable[[Any], str] | None = None
    metavar: str | None = None


SETTING = "setting"  # the key of a field's Setting in its metadata


def setting(default: Any, help: str, **declaration: Any) -> Any:
    """A ``BuildConfig`` field with its ``Setting`` (see there for ``declaration``)."""
    return dataclasses.field(default=default, metadata={SETTING: Setting(help, **declaration)})


def option_name(field_name: str) -> str:
    """``rtl_random`` -> ``--rtl-random``: the option of a field is its name."""
    return "--" + field_name.replace("_", "-")


def check_hidden(label: str, hidden: tuple) -> None:
    text = ",".join(map(str, hidden))
    if len(hidden) not in HIDDEN_LAYERS:
        raise ToolError(f"{label} takes {HIDDEN_LAYERS[0]} to {HIDDEN_LAYERS[-1]} widths (got {len(hidden)}: {text})")
    if not all(isinstance(w, int) and w in HIDDEN_WIDTH for w in hidden):
        raise ToolError(f"{label} widths must be {HIDDEN_WIDTH[0]} to {HIDDEN_WIDTH[-1]} (got {text})")


def check_board_supported(label: str, board: str) -> None:
    if board not in BOARDS:
        raise ToolError(f"unknown board {printable(board)!r} for this tool: it builds end to end only for "
                        f"{', '.join(BOARDS)} (on_target.py drives a PYNQ-Z2, part xc7z020)")


def check_data_source(config: "BuildConfig") -> None:
    """``--csv`` and ``--target`` go together, and with ``--dataset csv`` only."""
    if (config.csv is None) != (config.target is None):
        raise ToolError("--csv FILE and --target COLUMN go together: give both (or neither, for --dataset)")
    if (config.csv is None) != (config.dataset != CSV_DATASET):
        raise ToolError(f"--dataset {config.dataset} and --csv name two data sets: give one" if config.csv else
                        f"--dataset {CSV_DATASET} needs --csv FILE --target COLUMN")


def _widths_text(hidden: tuple[int, ...]) -> str:
    return ",".join(map(str, hidden))


_BITS = Within(QUANTIZER_BITS[0], QUANTIZER_BITS[-1])


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything that determines a build. Paths are settings too, but not part of the build id.

    Each field is declared once, with its ``Setting``: the command line (``iris_fpga.flow.cli``),
    the checks (``validated``) and the steps' cache keys (``Step.settings``) are made from these
    declarations. The training settings a recipe holds default to the recipe's on the command line.
    """

    recipe: str = setting("default", "training settings: 'default' prunes for real; 'article' is the seed "
                          "article's", choices=tuple(sorted(RECIPES)))
    seed: int = setting(0, "weight init and shuffling (the split is fixed)", keys=("train", "ip"),
                        within=Within(0, MAX_SEED, text=f"an integer from 0 to {MAX_SEED}"))
    epochs: int = setting(RECIPES["default"]["epochs"], f"training epochs, 1 to {MAX_EPOCHS}", keys=("train",),
                          within=Within(1, MAX_EPOCHS))
    lr: float = setting(RECIPES["default"]["lr"], "learning rate", keys=("train",),
                        within=Within(0, MAX_LR, low_open=True,
                                      text=f"positive and finite, at most {MAX_LR:.4g} (a float32)"))
    batch_size: int = setting(RECIPES["default"]["batch_size"], "training batch size", keys=("train",),
                              option=False, within=Within(1))
    validation_split: float = setting(RECIPES["default"]["validation_split"], "training data held out for "
                                      "validation", keys=("train",), option=False,
                                      within=Within(0, 1, low_open=True, high_open=True))
    sparsity: float = setting(RECIPES["default"]["sparsity"], "fraction of weights pruned to zero, in [0, 1)",
                              keys=("train",), within=Within(0, 1, high_open=True))
    pruning_begin_step: int = setting(RECIPES["default"]["pruning_begin_step"], "training step where pruning "
                                      "starts", keys=("train",), option=False)
    pruning_frequency: int = setting(RECIPES["default"]["pruning_frequency"], "training steps between pruning "
                                     "updates", keys=("train",), option=False)
    # the network: hidden widths, quantized_bits(weight_bits, 0, alpha=1), quantized_relu(activation_bits)
    hidden: tuple[int, ...] = setting(
        ARTICLE_HIDDEN, f"hidden layer widths, {HIDDEN_LAYERS[0]} to {HIDDEN_LAYERS[-1]} of them, each "
        f"{HIDDEN_WIDTH[0]} to {HIDDEN_WIDTH[-1]}", keys=("train",), check=check_hidden, parse=parse_widths,
        show=_widths_text, metavar="W1,W2,...")
    weight_bits: int = setting(ARTICLE_BITS, f"bits of every weight and bias, quantized_bits(B, 0, alpha=1), "
                               f"{_BITS.describe()}", keys=("train",), within=_BITS)
    activation_bits: int = setting(ARTICLE_BITS, f"bits of every hidden ReLU, quantized_relu(B), {_BITS.describe()}",
                                   keys=("train",), within=_BITS)
    # the data (issue 32): a bundled data set, or a user's CSV table; the table's sha256 is what the data
    # step's key hashes (not its path: a moved table with the same contents is the same data)
    dataset: str = setting("iris", f"the data: scikit-learn's bundled {', '.join(DATASETS)} (no download); "
                           f"{CSV_DATASET}: the table --csv names (implied by --csv)", keys=("data",),
                           choices=DATASETS + (CSV_DATASET,))
    csv: str | None = setting(None, "a CSV table instead of --dataset: a header row, numeric feature columns and "
                              "the class column --target names (UTF-8, commas, RFC 4180 quoting)", parse=str,
                              metavar="FILE")
    target: str | None = setting(None, "the --csv table's column of class labels (text or integers)", keys=("data",),
                                 parse=str,
                                 metavar="COLUMN")
    csv_sha256: str | None = setting(None, "sha256 of the --csv table, read when the build starts", keys=("data",),
                                     option=False)
    # The split is fixed so that every seed is scored on the same 30 samples.
    test_size: float = setting(0.2, "fraction of the data held out as the test set", keys=("data",), option=False)
    split_random_state: int = setting(42, "random_state of the test split", keys=("data",), option=False)
    # Cross-validation (issue 30): the explorer scores a point on held-out folds, never on the test set.
    cv_fold: tuple[int, int] | None = setting(
        None, "train on the training part less fold I of K (stratified, fixed folds) and score on fold I: the test "
        "set takes no part in the build", keys=("data",), check=check_fold, parse=parse_fold, show=_fold_text,
        metavar="I/K")
    # hls4ml
    board: str = setting("pynq-z2", f"hls4ml VivadoAccelerator board; only {', '.join(BOARDS)} works end to end "
                         "(on_target.py drives a PYNQ-Z2, part xc7z020)", keys=("convert",),
                         check=check_board_supported)
    reuse_factor: int = setting(512, f"hls4ml ReuseFactor of every Dense layer, 1 to {MAX_REUSE_FACTOR}",
                                keys=("convert",),
                                within=Within(1, MAX_REUSE_FACTOR, text=f"at least 1 and at most {MAX_REUSE_FACTOR}"))
    default_precision: str = setting("ap_fixed<16,6>", "hls4ml default precision (also the IP's input type): "
                                     "ap_fixed<W,I> or ap_ufixed<W,I>, optionally with rounding and overflow modes",
                                     keys=("convert",), check=check_fixed_type)
    exp_table_t: str = setting("ap_fixed<18,8>", "softmax exp table type (same form)", keys=("convert",),
                               check=check_fixed_type)
    inv_table_t: str = setting("ap_fixed<18,4>", "softmax inverse table type (same form)", keys=("convert",),
                               check=check_fixed_type)
    # rtl step (issue 9)
    rtl: bool = setting(False, "add the rtl step: Verilog, bit-exact simulation, resources")
    latency_cutoff: float = setting(CHAINS_PER_STAGE, "rtl pipeline: carry chains (adders, negations) per "
                                    "register stage (0: combinational)",
                                    keys=("rtl", "ip"), within=Within(0))
    rtl_random: int = setting(2000, f"random inputs the rtl step compares, 0 to {MAX_RTL_RANDOM}", keys=("csim",),
                              within=Within(0, MAX_RTL_RANDOM))
    # the IP the package carries (manifest.json "accelerator")
    accelerator: str = setting(
        "hls", "hls: hls4ml's IP (Vivado HLS 2020.1 + Vivado builds it), as in the article; rtl: this project's own "
        "Verilog IP, verified here cycle by cycle (Vivado alone builds it); implies --rtl",
        keys=("bitstream", "package"), choices=ACCELERATORS)
    accept_timing_violations: bool = setting(
        False, "rtl: package a bitstream whose implemented design misses timing (negative setup or hold slack); "
        "without it that is exit 3 and no bitstream. The manifest then says timing_met: false", keys=("bitstream",))
    # where things go
    output_dir: str = setting("hls4ml_prj_pynq", "hls4ml project (and the build's work files)")
    package_dir: str = setting("package", "what the board gets")

    @classmethod
    def for_recipe(cls, recipe: str, **overrides: Any) -> "BuildConfig":
        if recipe not in RECIPES:
            raise ToolError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        if given.get("csv") is not None and given.get("dataset", "iris") == "iris":
            given["dataset"] = CSV_DATASET  # --csv implies it; only the default gives way
        return cls(recipe=recipe, **{**RECIPES[recipe], **given}).validated()

    def __post_init__(self):
        # JSON (the manifest) gives a list; a tuple keeps the frozen config hashable.
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if isinstance(self.cv_fold, list):
            object.__setattr__(self, "cv_fold", tuple(self.cv_fold))

    @property
    def dense_layers(self) -> tuple[str, ...]:
        return dense_layer_names(len(self.hidden))

    def validated(self) -> "BuildConfig":
        """Reject impossible values with a message naming the fix (exit code 2), before any work:
        what each field's ``Setting`` allows (its range, choices or check)."""
        for f in dataclasses.fields(self):
            declared, value = f.metadata[SETTING], getattr(self, f.name)
            label = option_name(f.name) if declared.option else f.name.replace("_", " ")
            if declared.within is not None and not declared.within.holds(value):
                raise ToolError(f"{label} must be {declared.within.describe()} (got {printable(value)})")
            if declared.choices is not None and value not in declared.choices:
                raise ToolError(f"{label} must be one of {', '.join(declared.choices)} (got {printable(value)!r})")
            if declared.check is not None:
                declared.check(label, value)
        check_data_source(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples as lists), so that it equals what the manifest reads back."""
        return {**dataclasses.asdict(self), "hidden": list(self.hidden),
                "cv_fold": list(self.cv_fold) if self.cv_fold else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BuildConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ToolError(f"unknown settings {', '.join(unknown)} in configuration")
        return cls(**data).validated()

    def subset(self, *names: str) -> dict[str, Any]:
        """The settings a step depends on, for its cache key."""
        return {name: getattr(self, name) for name in names}


def keyed_by(step: str) -> tuple[str, ...]:
    """The fields whose declaration names ``step``: the settings its cache key hashes."""
    return tuple(f.name for f in dataclasses.fields(BuildConfig) if step in f.metadata[SETTING].keys)
