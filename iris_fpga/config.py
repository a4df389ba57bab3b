"""The build's settings as data: one dataclass, written into every output and read back from it.

Recipes are named sets of training settings. ``default`` really prunes and reaches the article's
accuracy within the article's own training budget; ``article`` reproduces the seed article's
settings exactly, whose pruning schedule starts after step 2000 while its training lasts 90 steps,
so it never prunes.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from iris_fpga.errors import ExitCode, ToolError

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


def dense_layer_names(n_hidden: int) -> tuple[str, ...]:
    """Keras/hls4ml names of the Dense layers: fc1 .. fcN, then output (the article's names for N = 3)."""
    return tuple(f"fc{i}" for i in range(1, n_hidden + 1)) + ("output",)

# Boards that work end to end: on_target.py drives a PYNQ-Z2 (it checks the bitstream's part,
# xc7z020). hls4ml knows others (zcu102, Alveo cards), whose packages no board script here runs.
BOARDS = ("pynq-z2",)
# hls: hls4ml's VivadoAccelerator IP (Vivado HLS 2020.1 + Vivado); rtl: the project's own Verilog IP
# (iris_fpga.ip: da4ml's datapath, hls4ml's softmax, myproject_axi's ports; Vivado alone).
ACCELERATORS = ("hls", "rtl")
MAX_REUSE_FACTOR = 1 << 16  # hls4ml writes it into C++ as an unsigned; far beyond any layer's size
MAX_SEED = (1 << 32) - 1  # numpy's and TensorFlow's seeds are 32-bit
MAX_LR = 3.4028234663852886e38  # the largest float32: TensorFlow holds the learning rate as one
# ap_fixed<W,I[,Q[,O[,N]]]> as hls4ml and Vivado HLS read it; W up to AP_INT_MAX_W (1024).
FIXED_TYPE = re.compile(
    r"(?:ap_)?u?fixed<\s*(?P<width>\d{1,4})\s*,\s*(?P<integer>-?\d{1,4})\s*"
    r"(?:,\s*(?:AP_)?(?:TRN|TRN_ZERO|RND|RND_ZERO|RND_INF|RND_MIN_INF|RND_CONV)\s*"
    r"(?:,\s*(?:AP_)?(?:WRAP|SAT|SAT_ZERO|SAT_SYM)\s*(?:,\s*(?P<sat_bits>\d{1,4})\s*)?)?)?>"
)
MAX_FIXED_WIDTH = 1024


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything that determines a build. Paths are settings too, but not part of the build id."""

    recipe: str = "default"
    seed: int = 0
    epochs: int = RECIPES["default"]["epochs"]
    lr: float = RECIPES["default"]["lr"]
    batch_size: int = RECIPES["default"]["batch_size"]
    validation_split: float = RECIPES["default"]["validation_split"]
    sparsity: float = RECIPES["default"]["sparsity"]
    pruning_begin_step: int = RECIPES["default"]["pruning_begin_step"]
    pruning_frequency: int = RECIPES["default"]["pruning_frequency"]
    # the network: hidden widths, quantized_bits(weight_bits, 0, alpha=1), quantized_relu(activation_bits)
    hidden: tuple[int, ...] = ARTICLE_HIDDEN
    weight_bits: int = ARTICLE_BITS
    activation_bits: int = ARTICLE_BITS
    # The split is fixed so that every seed is scored on the same 30 samples.
    test_size: float = 0.2
    split_random_state: int = 42
    # hls4ml
    board: str = "pynq-z2"
    reuse_factor: int = 512
    default_precision: str = "ap_fixed<16,6>"
    exp_table_t: str = "ap_fixed<18,8>"
    inv_table_t: str = "ap_fixed<18,4>"
    # rtl step (issue 9)
    rtl: bool = False
    latency_cutoff: float = 2.5  # da4ml adder delays per stage; README ("The accelerator IP") says why 2.5
    rtl_random: int = 2000
    # the IP the package carries (manifest.json "accelerator")
    accelerator: str = "hls"
    # where things go
    output_dir: str = "hls4ml_prj_pynq"
    package_dir: str = "package"

    @classmethod
    def for_recipe(cls, recipe: str, **overrides: Any) -> "BuildConfig":
        if recipe not in RECIPES:
            raise ToolError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(recipe=recipe, **{**RECIPES[recipe], **given}).validated()

    def __post_init__(self):
        # JSON (the manifest) gives a list; a tuple keeps the frozen config hashable.
        object.__setattr__(self, "hidden", tuple(self.hidden))

    @property
    def dense_layers(self) -> tuple[str, ...]:
        return dense_layer_names(len(self.hidden))

    def validated(self) -> "BuildConfig":
        """Reject impossible values with a message naming the fix (exit code 2), before any work."""
        hidden = ",".join(map(str, self.hidden))
        checks = [
            (len(self.hidden) in HIDDEN_LAYERS,
             f"--hidden takes {HIDDEN_LAYERS[0]} to {HIDDEN_LAYERS[-1]} widths (got {len(self.hidden)}: {hidden})"),
            (all(isinstance(w, int) and w in HIDDEN_WIDTH for w in self.hidden),
             f"--hidden widths must be {HIDDEN_WIDTH[0]} to {HIDDEN_WIDTH[-1]} (got {hidden})"),
            (self.weight_bits in QUANTIZER_BITS,
             f"--weight-bits must be {QUANTIZER_BITS[0]} to {QUANTIZER_BITS[-1]} (got {self.weight_bits})"),
            (self.activation_bits in QUANTIZER_BITS,
             f"--activation-bits must be {QUANTIZER_BITS[0]} to {QUANTIZER_BITS[-1]} (got {self.activation_bits})"),
            (self.epochs >= 1, f"--epochs must be at least 1 (got {self.epochs})"),
            (0 < self.lr <= MAX_LR, f"--lr must be positive and finite, at most {MAX_LR:.4g} (a float32) "
             f"(got {self.lr})"),
            (0 <= self.sparsity < 1, f"--sparsity must be in [0, 1) (got {self.sparsity})"),
            (0 <= self.seed <= MAX_SEED, f"--seed must be an integer from 0 to {MAX_SEED} (got {self.seed})"),
            (1 <= self.reuse_factor <= MAX_REUSE_FACTOR,
             f"--reuse-factor must be at least 1 and at most {MAX_REUSE_FACTOR} (got {self.reuse_factor})"),
            (self.batch_size >= 1, f"batch size must be at least 1 (got {self.batch_size})"),
            (0 < self.validation_split < 1, f"validation split must be in (0, 1) (got {self.validation_split})"),
            (self.latency_cutoff >= 0, f"--latency-cutoff must be >= 0 (got {self.latency_cutoff})"),
            (self.rtl_random >= 0, f"--rtl-random must be >= 0 (got {self.rtl_random})"),
            (self.board in BOARDS, f"unknown board {self.board!r} for this tool: it builds end to end only for "
             f"{', '.join(BOARDS)} (on_target.py drives a PYNQ-Z2, part xc7z020)"),
            (self.accelerator in ACCELERATORS,
             f"accelerator {self.accelerator!r} is not available: choose {', '.join(ACCELERATORS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ToolError(message, ExitCode.USAGE)
        for name in ("default_precision", "exp_table_t", "inv_table_t"):
            check_fixed_type("--" + name.replace("_", "-"), getattr(self, name))
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (``hidden`` as a list), so that it equals what the manifest reads back."""
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}

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
