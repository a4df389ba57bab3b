"""Export what the rtl step needs from a compiled hls4ml model, so that step needs no TensorFlow/hls4ml.

Called by the csim step while the compiled model is in memory. The graph file is deterministic JSON
(same model and inputs give the same bytes, so its hash can key the rtl step's reuse). Every number
is an integer code of a stated fixed-point type (value = code * 2**-frac), so nothing is lost.

Tracing without a second compile: hls4ml's ``trace()`` always recompiles (it prints "Recompiling
<project> with tracing"). If ``hls_model.config.trace_output`` was True and the compared layer had
``Trace: True`` when ``compile()`` ran, the library already records layer outputs and the recompile
is skipped here; otherwise this falls back to hls4ml's own recompiling trace and logs a warning.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import atomic_write_bytes
from iris_fpga.datapath.fixedpoint import FixedType
from iris_fpga.datapath.softmax_export import export_softmax

log = logging.getLogger(__name__)

GRAPH_FORMAT = "iris-fpga-rtl-graph/1"
#: Typical standardized Iris features lie within this range; half the random set is drawn from it.
TYPICAL_RANGE = 4.0
#: The corner vectors random_input_codes puts first (random_input_floats gives them special floats).
N_CORNERS = 8
_LEFT_OUT = ("Softmax",)  # applied after the compared layer; never in the RTL


def export_graph(hls_model, X_test, path: Path, n_random: int = 2000, seed: int = 0) -> None:
    """Write the graph (types, weights, biases) and C-simulation reference outputs to ``path`` (JSON).

    References are the pre-softmax outputs of the last non-softmax layer, from hls4ml's trace, for
    ``X_test`` and for ``n_random`` inputs spanning the input type's whole range; and, for the IP,
    the float32 words the C-simulation was given (``x_float32``, raw bits) and its final outputs
    (``y_out``, codes of the output type), with the softmax's types and tables from its C++.
    """
    path = Path(path)
    layers, compared, left_out = _read_layers(hls_model)
    in_type = layers[0]["type_obj"]
    out_type = FixedType.from_dict(layers[compared]["result_type"])
    n_in = layers[0]["size"]

    X_test = np.asarray(X_test)
    if X_test.ndim != 2 or X_test.shape[1] != n_in:
        raise ToolError(f"rtl export: X_test has shape {X_test.shape}, the model takes {n_in} inputs", ExitCode.USAGE)
    X_test = np.ascontiguousarray(X_test, dtype=np.float32)  # what the DMA sends the IP
    test_codes = in_type.quantize_float(X_test)  # what the C-simulation's float -> input_t cast gives
    random_codes = random_input_codes(in_type, n_in, n_random, seed)
    random_floats = random_input_floats(in_type, random_codes, seed)

    compared_layer = layers[compared]["hls_layer"]
    final_type = FixedType.from_hls4ml(
        list(hls_model.get_layers())[-1].get_output_variable().type.precision, "the model output"
    )
    y_test, out_test = _trace_codes(hls_model, compared_layer, X_test, out_type, final_type)
    y_random, out_random = _trace_codes(hls_model, compared_layer, random_floats, out_type, final_type)
    softmax = (export_softmax(Path(hls_model.config.get_output_dir()), left_out[-1]) if left_out
               else {"supported": False, "reason": "the model has no final softmax"})

    graph = {
        "format": GRAPH_FORMAT,
        "source": {
            "project": str(hls_model.config.get_project_name()),
            "backend": str(hls_model.config.backend.name),
            "hls4ml": _version("hls4ml"),
        },
        "input": {"name": layers[0]["name"], "size": n_in, "type": in_type.to_dict()},
        "layers": [{k: v for k, v in layer.items() if k not in ("hls_layer", "type_obj")} for layer in layers[1:]],
        "compared_layer": layers[compared]["name"],
        "left_out": left_out,
        "output": {"size": int(out_test.shape[1]), "type": final_type.to_dict()},
        "softmax": softmax,
        "sets": {
            "test": {"x": test_codes.tolist(), "y": y_test.tolist(), **_float_set(X_test, out_test)},
            "random": {
                "x": random_codes.tolist(),
                "y": y_random.tolist(),
                **_float_set(random_floats, out_random),
                "seed": seed,
                "how": (
                    "corner vectors (zero, +-1 LSB, type minimum and maximum, alternating, zero), then half uniform "
                    f"over the input type's whole range, half uniform in [-{TYPICAL_RANGE:g}, {TYPICAL_RANGE:g}); "
                    "sent as float32 words anywhere the cast maps to the code: on the LSB grid, a random fraction "
                    "of an LSB above it or the largest float32 below the next grid point (negatives floor), a random "
                    "half shifted by multiples of the type's wrap-around period; the corners as -0/+inf/-inf/NaN, "
                    "negative subnormals (-1 LSB), just inside the range's ends, just outside them (wrapping), "
                    "positive subnormals, a negative NaN and -0"
                ),
            },
        },
    }
    atomic_write_bytes(path, json.dumps(graph, sort_keys=True, separators=(",", ":")).encode())
    log.info(
        "rtl export: %d layers up to %s, %d test and %d random references -> %s",
        len(layers) - 1, graph["compared_layer"], len(test_codes), len(random_codes), path,
    )


def random_input_codes(in_type: FixedType, n_in: int, n: int, seed: int) -> np.ndarray:
    """Input codes: corners first (they reach wrap-around and every ReLU's saturation), then random."""
    lo, hi = in_type.code_min, in_type.code_max
    one = 1 if hi >= 1 else 0
    corners = [
        np.zeros(n_in, np.int64),
        np.full(n_in, one),
        np.full(n_in, -one if in_type.signed else 0),
        np.full(n_in, lo),
        np.full(n_in, hi),
        np.where(np.arange(n_in) % 2 == 0, lo, hi),
        np.where(np.arange(n_in) % 2 == 0, hi, lo),
        np.zeros(n_in, np.int64),
    ]
    corners = np.array(corners, dtype=np.int64)[: max(n, 0)]
    rng = np.random.default_rng(seed)
    rest = max(n - len(corners), 0)
    n_full = rest // 2
    scale = 1 << in_type.frac
    t_lo = max(lo, int(-TYPICAL_RANGE * scale))
    t_hi = min(hi, int(TYPICAL_RANGE * scale) - 1)
    full = rng.integers(lo, hi, size=(n_full, n_in), endpoint=True)
    typical = rng.integers(t_lo, t_hi, size=(rest - n_full, n_in), endpoint=True)
    return np.concatenate([corners, full, typical]).astype(np.int64)


def _read_layers(hls_model) -> tuple[list[dict], int, list[str]]:
    """The chain input -> Dense/ReLU... as dicts; index of the compared layer; names left out."""
    layers: list[dict] = []
    left_out: list[str] = []
    for layer in hls_model.get_layers():
        cls = layer.class_name
        name = layer.name
        if left_out or cls in _LEFT_OUT or _activation(layer) == "softmax":
            if cls not in _LEFT_OUT and _activation(layer) != "softmax":
                raise ToolError(
                    f"rtl export: layer {name} ({cls}) follows the softmax; only a final softmax can be left out",
                    ExitCode.USAGE,
                )
            left_out.append(name)
            continue
        if layers and list(layer.inputs) != [layers[-1]["name"]]:
            raise ToolError(
                f"rtl export: layer {name} is not fed by {layers[-1]['name']}: only a chain of layers is supported",
                ExitCode.USAGE,
            )
        result_type = FixedType.from_hls4ml(layer.get_output_variable().type.precision, f"layer {name} result")
        if cls == "Input":
            if layers:
                raise ToolError("rtl export: more than one input layer", ExitCode.USAGE)
            size = int(np.prod(layer.get_output_variable().shape))
            result_type.check_supported(f"input {name}")
            layers.append({"name": name, "kind": "input", "size": size, "type_obj": result_type, "hls_layer": layer})
            continue
        if not layers:
            raise ToolError(f"rtl export: layer {name} comes before the input layer", ExitCode.USAGE)
        entry = {"name": name, "result_type": result_type.to_dict(), "hls_layer": layer}
        if cls == "Dense":
            entry.update(_dense(layer))
        elif cls in ("Activation", "ReLU") and _activation(layer) in ("relu", "linear"):
            entry["kind"] = _activation(layer)
        else:
            raise ToolError(
                f"rtl export: layer {name} ({cls} {_activation(layer) or ''}) is not supported: "
                "the rtl step handles Dense, ReLU and linear layers with a final softmax",
                ExitCode.USAGE,
            )
        result_type.check_supported(f"layer {name} result")
        layers.append(entry)
    if len(layers) < 2:
        raise ToolError("rtl export: the model has no layer to turn into RTL", ExitCode.USAGE)
    return layers, len(layers) - 1, left_out


def _activation(layer) -> str:
    act = layer.get_attr("activation")
    return str(act).lower() if act is not None else ""


def _dense(layer) -> dict:
    name = layer.name
    weight, bias = layer.weights["weight"], layer.weights["bias"]
    types = {
        "weight_type": FixedType.from_hls4ml(weight.type.precision, f"{name} weights"),
        "bias_type": FixedType.from_hls4ml(bias.type.precision, f"{name} biases"),
        "accum_type": FixedType.from_hls4ml(layer.get_attr("accum_t").precision, f"{name} accumulator"),
    }
    for key, t in types.items():
        t.check_supported(f"layer {name} {key.replace('_type', '')}")
    shape = tuple(weight.data.shape)
    if len(shape) != 2:
        raise ToolError(f"rtl export: {name} weights have shape {shape}, expected (inputs, outputs)", ExitCode.USAGE)
    # The C-simulation reads the weights from the text hls4ml writes (WeightVariable's formatted
    # strings), then casts each to weight_t: use exactly those strings.
    w = types["weight_type"].quantize_float(_written_values(weight).reshape(shape))
    b = types["bias_type"].quantize_float(_written_values(bias).reshape(-1))
    if b.shape != (shape[1],):
        raise ToolError(f"rtl export: {name} has {b.size} biases for {shape[1]} outputs", ExitCode.USAGE)
    return {
        "kind": "dense",
        "n_in": shape[0],
        "n_out": shape[1],
        **{k: t.to_dict() for k, t in types.items()},
        "weight": w.tolist(),
        "bias": b.tolist(),
    }


def _written_values(var) -> np.ndarray:
    return np.array([float(s) for s in var], dtype=np.float64)


def random_input_floats(in_type: FixedType, codes: np.ndarray, seed: int) -> np.ndarray:
    """float32 words whose cast to ``in_type`` gives ``codes``, spread over every float that does.

    A code c is reached by (c + u) LSB + k periods for u in [0, 1) and any whole k (the cast floors
    and wraps). Each element takes a random k (half of them 0, else -4..4) and a random u: 0 (on the
    grid), uniform, or the largest float32 below the next grid point (negatives must floor, not
    truncate); a candidate the cast would not map to c stays on the grid. The corner vectors stay on
    the grid except: the zero vector as -0/+inf/-inf/NaN, the -1 LSB vector as negative subnormals,
    the type maximum just below the top of the range, the alternating minimum/maximum vectors just
    outside the range (the minimum as the first value above it, the maximum as the first below it),
    and a second zero vector as positive subnormals, a negative NaN and -0.
    """
    lsb, period = 2.0**-in_type.frac, 2.0 ** (in_type.width - in_type.frac)
    values = in_type.values(codes)
    rng = np.random.default_rng([seed, 1])  # its own stream: the codes stay as they were
    k = rng.integers(-4, 5, size=codes.shape) * (rng.random(codes.shape) < 0.5)
    u = np.choose(rng.integers(0, 3, size=codes.shape), [np.zeros(codes.shape), rng.random(codes.shape),
                                                         np.ones(codes.shape)])
    floats = _floats_reaching(in_type, codes, values + k * period, u, lsb)
    corners = floats[: min(len(floats), N_CORNERS)]
    if len(corners):
        corners[:] = values[: len(corners)].astype(np.float32)
        corners[0] = np.resize(np.array([-0.0, np.inf, -np.inf, np.nan], dtype=np.float32), floats.shape[1])
    if len(corners) > 2 and in_type.signed and (codes[2] == -1).all():
        corners[2] = -np.float32(1e-45)  # a negative subnormal floors to -1 LSB
    if len(corners) > 4:  # the maximum, just below the top of the range
        corners[4] = _floats_reaching(in_type, codes[4], values[4], np.ones(floats.shape[1]), lsb)
    for row in (5, 6)[: max(len(corners) - 5, 0)]:  # just outside the range, wrapping to the other end
        low = codes[row] == in_type.code_min
        corners[row] = _floats_reaching(in_type, codes[row], values[row] + np.where(low, 1, -1) * period,
                                        np.where(low, 0.0, 1.0), lsb)
    if len(corners) > 7:  # a second zero vector: smallest and largest subnormal, a negative NaN, -0
        corners[7] = np.resize(np.array([0x1, 0xFFC00000, 0x7FFFFF, 0x80000000], dtype=np.uint32),
                               floats.shape[1]).view(np.float32)
    return np.ascontiguousarray(floats)


def _floats_reaching(in_type: FixedType, codes: np.ndarray, base: np.ndarray, u: np.ndarray, lsb: float) -> np.ndarray:
    """float32 (base + u LSB), u = 1 meaning the largest float32 below base + 1 LSB; where that float
    does not cast to ``codes``, the code's own value."""
    below_next = np.nextafter((base + lsb).astype(np.float32), np.float32(-np.inf))
    floats = np.where(u >= 1.0, below_next, (base + u * lsb).astype(np.float32)).astype(np.float32)
    finite = np.isfinite(floats)
    reached = np.zeros(codes.shape, dtype=bool)
    reached[finite] = in_type.quantize_float(floats[finite]) == codes[finite]
    return np.where(reached, floats, in_type.values(codes).astype(np.float32)).astype(np.float32)


def _float_set(x_float32: np.ndarray, out_codes: np.ndarray) -> dict:
    return {
        "x_float32": np.asarray(x_float32, dtype=np.float32).view(np.uint32).tolist(),
        "y_out": out_codes.tolist(),
    }


def _trace_codes(
    hls_model, layer, x: np.ndarray, out_type: FixedType, final_type: FixedType
) -> tuple[np.ndarray, np.ndarray]:
    """The C-simulation's output of ``layer`` for ``x`` as codes of ``out_type``, and its final
    output as codes of ``final_type``."""
    if not len(x):
        return np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64)
    if _can_trace_without_compile(hls_model, layer):
        with _compile_suppressed(hls_model), contextlib.redirect_stdout(io.StringIO()):
            prediction, traces = hls_model.trace(x)
    else:
        log.warning(
            "rtl export: hls4ml recompiles the C-simulation to trace %s; set hls_model.config.trace_output = True "
            "and Trace: True on that layer before compile() to compile only once",
            layer.name,
        )
        layer.set_attr("trace", True)
        with contextlib.redirect_stdout(io.StringIO()):
            prediction, traces = hls_model.trace(x)
    if layer.name not in traces:
        raise ToolError(f"rtl export: hls4ml's trace has no output for layer {layer.name}", ExitCode.USAGE)
    return (_value_codes(traces[layer.name], len(x), out_type, f"traced outputs of {layer.name}"),
            _value_codes(prediction, len(x), final_type, "the model's outputs"))


def _value_codes(values, n: int, t: FixedType, what: str) -> np.ndarray:
    scaled = np.asarray(values, dtype=np.float64).reshape(n, -1) * 2.0**t.frac
    codes = np.rint(scaled)
    if not np.array_equal(codes, scaled) or codes.min() < t.code_min or codes.max() > t.code_max:
        raise ToolError(f"rtl export: {what} are not values of the type {t}", ExitCode.USAGE)
    return codes.astype(np.int64)


def _can_trace_without_compile(hls_model, layer) -> bool:
    return (
        getattr(hls_model, "_top_function_lib", None) is not None
        and bool(getattr(hls_model.config, "trace_output", False))
        and bool(layer.get_attr("trace", False))
    )


@contextlib.contextmanager
def _compile_suppressed(hls_model):
    """hls4ml's trace() calls self.compile() unconditionally; skip it when tracing is compiled in."""
    hls_model.compile = lambda: None  # instance attribute shadows the method
    try:
        yield
    finally:
        del hls_model.compile


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"
