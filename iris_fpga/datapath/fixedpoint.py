"""Fixed-point types as hls4ml writes them (``ap_fixed<W,I,Q,O>``), and exact numpy quantization.

A value of type ``FixedType`` is stored as an integer *code*: value = code * 2**-frac. Codes keep the
exported graph exact and compact (no float formatting questions), and comparisons bit-exact.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from iris_fpga.errors import ExitCode, ToolError

#: Rounding modes the RTL datapath can reproduce (ap_fixed names). TRN = floor, RND = half up,
#: RND_CONV = half to even, RND_MIN_INF = half down.
ROUNDING_MODES = ("TRN", "RND", "RND_CONV", "RND_MIN_INF")
#: Overflow modes the RTL datapath can reproduce.
OVERFLOW_MODES = ("WRAP", "SAT")


@dataclass(frozen=True)
class FixedType:
    signed: bool
    width: int
    integer: int  # bits left of the binary point, sign bit included (ap_fixed's I)
    rounding: str = "TRN"
    saturation: str = "WRAP"
    saturation_bits: int = 0

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def kif(self) -> tuple[int, int, int]:
        """da4ml's (keep_negative, integer bits without sign, fractional bits)."""
        k = int(self.signed)
        return k, self.integer - k, self.frac

    @property
    def code_min(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def code_max(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    def __str__(self) -> str:
        prefix = "" if self.signed else "u"
        return f"{prefix}fixed<{self.width},{self.integer},{self.rounding},{self.saturation},{self.saturation_bits}>"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FixedType":
        try:
            return cls(
                signed=bool(data["signed"]),
                width=int(data["width"]),
                integer=int(data["integer"]),
                rounding=str(data.get("rounding", "TRN")),
                saturation=str(data.get("saturation", "WRAP")),
                saturation_bits=int(data.get("saturation_bits", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ToolError(f"exported graph: bad fixed-point type {data!r} ({exc})", ExitCode.USAGE) from exc

    @classmethod
    def from_hls4ml(cls, precision, what: str) -> "FixedType":
        """From an hls4ml FixedPrecisionType or IntegerPrecisionType (duck-typed: no hls4ml import)."""
        try:
            return cls(
                signed=bool(precision.signed),
                width=int(precision.width),
                integer=int(precision.integer),
                rounding=precision.rounding_mode.name,
                saturation=precision.saturation_mode.name,
                saturation_bits=int(precision.saturation_bits or 0),
            )
        except AttributeError as exc:
            raise ToolError(
                f"rtl export: {what} has type {precision}, not a fixed-point or integer type", ExitCode.USAGE
            ) from exc

    def check_supported(self, what: str) -> None:
        """Refuse types whose rounding or overflow the datapath does not reproduce bit for bit."""
        problems = []
        if self.rounding not in ROUNDING_MODES:
            problems.append(f"rounding {self.rounding}")
        if self.saturation not in OVERFLOW_MODES:
            problems.append(f"overflow {self.saturation}")
        if self.saturation_bits:
            problems.append(f"{self.saturation_bits} saturation bits")
        if self.width < 1:
            problems.append(f"width {self.width}")
        if problems:
            raise ToolError(
                f"rtl: {what} has type {self}: {', '.join(problems)} not supported "
                f"(rounding {'/'.join(ROUNDING_MODES)}, overflow {'/'.join(OVERFLOW_MODES)})",
                ExitCode.USAGE,
            )

    def quantize_float(self, values) -> np.ndarray:
        """Codes of ``values`` (float32/float64) cast to this type, as ap_fixed's constructor does."""
        scaled = np.asarray(values, dtype=np.float64) * 2.0**self.frac  # exact: a power-of-two scale
        if not np.all(np.isfinite(scaled)):
            raise ToolError("rtl: non-finite value cannot be cast to a fixed-point type", ExitCode.USAGE)
        return self._overflow(_round(scaled, self.rounding))

    def requantize(self, codes, frac: int) -> np.ndarray:
        """Codes given at ``frac`` fractional bits, cast to this type (integer arithmetic only)."""
        codes = np.asarray(codes, dtype=np.int64)
        shift = frac - self.frac
        if shift <= 0:
            return self._overflow(codes << -shift)
        return self._overflow(_round_shift(codes, shift, self.rounding))

    def values(self, codes) -> np.ndarray:
        return np.asarray(codes, dtype=np.float64) * 2.0**-self.frac

    def _overflow(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.int64)
        if self.saturation == "SAT":
            return np.clip(codes, self.code_min, self.code_max)
        span = 1 << self.width
        return (codes - self.code_min) % span + self.code_min


def _round(scaled: np.ndarray, mode: str) -> np.ndarray:
    if mode == "TRN":
        out = np.floor(scaled)
    elif mode == "RND":
        out = np.floor(scaled + 0.5)
    elif mode == "RND_MIN_INF":
        out = np.ceil(scaled - 0.5)
    elif mode == "RND_CONV":
        out = np.rint(scaled)  # numpy rounds half to even
    else:
        raise ToolError(f"rtl: rounding mode {mode} not supported", ExitCode.USAGE)
    return out.astype(np.int64)


def _round_shift(codes: np.ndarray, shift: int, mode: str) -> np.ndarray:
    """Drop ``shift`` low bits of integer codes with ap_fixed rounding ``mode``."""
    floor = codes >> shift
    rem = codes - (floor << shift)
    half = 1 << (shift - 1)
    if mode == "TRN":
        return floor
    if mode == "RND":
        return floor + (rem >= half)
    if mode == "RND_MIN_INF":
        return floor + (rem > half)
    if mode == "RND_CONV":
        return floor + ((rem > half) | ((rem == half) & ((floor & 1) == 1)))
    raise ToolError(f"rtl: rounding mode {mode} not supported", ExitCode.USAGE)
