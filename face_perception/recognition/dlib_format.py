"""Read dlib's binary serialization format (``.dat`` DNN files) in pure Python, without dlib.

What dlib writes (``dlib/serialize.h``, ``dlib/cuda/tensor.h``, ``dlib/dnn/core.h``):

* integers: one control byte, then that many little-endian magnitude bytes. The low nibble of the
  control byte is the byte count (1..8), bit 0x80 the sign (signed types only); zero is
  ``01 00``.
* floating point: ``float_details``, i.e. a signed int64 mantissa and a signed int16 exponent,
  both integers as above; value = mantissa * 2**exponent (exponents 32000/32001/32002 mean
  +inf/-inf/NaN).
* bool: the ASCII byte ``'1'`` or ``'0'``.  string: length (integer) then the bytes.
* tensor: version 2, num_samples, k, nr, nc (integers), then k*nr*nc*num_samples float32
  little-endian IEEE values.  alias_tensor: version 1 and the four sizes, no data.
* a network is nested templates serialized outside-in: ``add_loss_layer`` (version, loss
  details, subnet), ``add_layer`` (version, subnet, layer details, three bools, x_grad,
  cached_output, params_grad), ``add_tag_layer``/``add_skip_layer`` (version, subnet). The
  innermost ``add_layer`` holds the input layer inline. So the bytes are: all wrapper versions
  from the outside in, the input layer, then each layer's details from the inside out.

The network's *shape* is not in the file (it is a C++ type), so the reader walks a layer spec
(outermost layer first) and checks every size it reads against it. Any truncation or mismatch
raises :class:`DlibFormatError` naming the byte offset; nothing here can crash on bad bytes.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

# float_details' special exponents
_IS_INF, _IS_NINF, _IS_NAN = 32000, 32001, 32002
# Refuse absurd sizes before allocating: the biggest dlib DNN files are a few hundred MB.
_MAX_TENSOR_ELEMENTS = 1 << 28
_MAX_STRING = 1 << 16


class DlibFormatError(ValueError):
    """A dlib file that is truncated, corrupt, or not the network the caller expects."""

    def __init__(self, message: str, offset: int, path: Optional[str] = None):
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{message} (at byte offset {offset})")
        self.offset = offset
        self.path = path


class DlibReader:
    """Cursor over the bytes of a dlib-serialized object."""

    def __init__(self, data: bytes, path: Optional[str] = None):
        self.data = memoryview(data)
        self.pos = 0
        self.path = path

    def error(self, message: str, offset: Optional[int] = None) -> DlibFormatError:
        return DlibFormatError(message, self.pos if offset is None else offset, self.path)

    def _take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.error(f"file ends inside {what}: need {n} bytes, "
                             f"{len(self.data) - self.pos} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def read_int(self, what: str = "an integer", signed: bool = True,
                 max_bytes: int = 8) -> int:
        start = self.pos
        control = self._take(1, what)[0]
        if signed:
            negative = bool(control & 0x80)
            size = control & 0x0F
            reserved = control & 0x70
        else:
            negative = False
            size = control & 0x8F  # dlib masks the 3 reserved bits for unsigned types
            reserved = 0
        if reserved or size == 0 or size > max_bytes:
            raise self.error(f"bad integer control byte 0x{control:02x} for {what}", start)
        value = int.from_bytes(self._take(size, what), "little")
        return -value if negative else value

    def read_uint(self, what: str = "an unsigned integer", max_bytes: int = 8) -> int:
        return self.read_int(what, signed=False, max_bytes=max_bytes)

    def read_float(self, what: str = "a float") -> float:
        start = self.pos
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            # dlib's pre-2013 ASCII float format: no model we read uses it.
            raise self.error(f"old ASCII float encoding for {what} is not supported", start)
        mantissa = self.read_int(f"the mantissa of {what}")
        exponent = self.read_int(f"the exponent of {what}", max_bytes=2)
        if exponent == _IS_INF:
            return math.inf
        if exponent == _IS_NINF:
            return -math.inf
        if exponent == _IS_NAN:
            return math.nan
        if exponent > 32767 or exponent < -32768:
            raise self.error(f"exponent {exponent} out of range for {what}", start)
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            return math.copysign(math.inf, mantissa)

    def read_bool(self, what: str = "a bool") -> bool:
        start = self.pos
        ch = self._take(1, what)[0]
        if ch not in (ord("0"), ord("1")):
            raise self.error(f"bad bool byte 0x{ch:02x} for {what}", start)
        return ch == ord("1")

    def read_string(self, what: str = "a string") -> str:
        start = self.pos
        n = self.read_uint(f"the length of {what}")
        if n > _MAX_STRING:
            raise self.error(f"string length {n} too large for {what}", start)
        raw = bytes(self._take(n, what))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.error(f"non-ASCII bytes in {what}", start) from None

    def read_tensor(self, what: str = "a tensor") -> np.ndarray:
        start = self.pos
        version = self.read_int(f"the version of {what}")
        if version != 2:
            raise self.error(f"unexpected tensor version {version} for {what}", start)
        shape = tuple(self.read_int(f"a dimension of {what}") for _ in range(4))
        if any(d < 0 for d in shape):
            raise self.error(f"negative tensor shape {shape} for {what}", start)
        count = math.prod(shape)
        if count > _MAX_TENSOR_ELEMENTS:
            raise self.error(f"tensor shape {shape} too large for {what}", start)
        raw = self._take(4 * count, f"the data of {what} (shape {shape})")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def read_alias_tensor(self, what: str = "an alias tensor") -> tuple[int, int, int, int]:
        start = self.pos
        version = self.read_int(f"the version of {what}")
        if version != 1:
            raise self.error(f"unexpected alias_tensor version {version} for {what}", start)
        shape = tuple(self.read_int(f"a dimension of {what}") for _ in range(4))
        if any(d < 0 for d in shape):
            raise self.error(f"negative shape {shape} for {what}", start)
        return shape

    def expect_version(self, allowed: tuple[int, ...], what: str) -> int:
        start = self.pos
        version = self.read_int(f"the version of {what}")
        if version not in allowed:
            raise self.error(f"unexpected version {version} for {what} (expected one of "
                             f"{allowed})", start)
        return version


# ---------------------------------------------------------------------------------------------
# Layer spec: what the caller's C++ network type would be. Outermost layer first.

@dataclass(frozen=True)
class LayerSpec:
    """One layer of a dlib network type, e.g. ``LayerSpec('con', num_filters=32, nr=7, ...)``.

    kind: loss_metric | fc | avg_pool | max_pool | con | affine | relu | add_prev | tag | skip |
    input_rgb_image_sized.  ``args`` holds the template arguments as (name, value) pairs.
    """

    kind: str
    args: tuple = ()

    def get(self, name: str):
        return dict(self.args)[name]


def layer(kind: str, **args) -> LayerSpec:
    return LayerSpec(kind, tuple(sorted(args.items())))


@dataclass
class ParsedLayer:
    """The learned or configured content of one layer, in file order (input side first)."""

    kind: str
    spec: LayerSpec
    offset: int
    params: dict = field(default_factory=dict)


@dataclass
class DlibNetwork:
    """A parsed network: input normalisation, loss settings and layers from the input upward."""

    input_kind: str
    avg_rgb: tuple[float, float, float]
    input_size: tuple[int, int]
    loss: dict
    layers: list[ParsedLayer]

    def learned(self) -> list[ParsedLayer]:
        """Layers with weights (con, affine, fc), input side first."""
        return [p for p in self.layers if p.kind in ("con", "affine", "fc")]


def _default_padding(stride: int, size: int) -> int:
    # dlib's template default: no padding for strided layers, "same" padding otherwise
    return 0 if stride != 1 else size // 2


def _read_sizes(r: DlibReader, spec: LayerSpec, name: str, start: int) -> None:
    nr = r.read_int(f"nr of {name}")
    nc = r.read_int(f"nc of {name}")
    sy = r.read_int(f"stride_y of {name}")
    sx = r.read_int(f"stride_x of {name}")
    py = r.read_int(f"padding_y of {name}")
    px = r.read_int(f"padding_x of {name}")
    want = (spec.get("nr"), spec.get("nc"), spec.get("stride"), spec.get("stride"),
            _default_padding(spec.get("stride"), spec.get("nr")),
            _default_padding(spec.get("stride"), spec.get("nc")))
    got = (nr, nc, sy, sx, py, px)
    if got != want:
        raise r.error(f"{name}: (nr, nc, stride_y, stride_x, padding_y, padding_x) = {got}, "
                      f"the network type needs {want}", start)


def _read_learning_multipliers(r: DlibReader, name: str) -> None:
    for what in ("learning_rate_multiplier", "weight_decay_multiplier",
                 "bias_learning_rate_multiplier", "bias_weight_decay_multiplier"):
        r.read_float(f"{what} of {name}")


def _read_con(r: DlibReader, spec: LayerSpec, name: str) -> dict:
    start = r.pos
    version = r.read_string(f"the version of {name}")
    if version not in ("con_4", "con_5", "con_6"):
        raise r.error(f"{name}: unexpected version {version!r}", start)
    params = r.read_tensor(f"params of {name}")
    num_filters = r.read_int(f"num_filters of {name}")
    if num_filters != spec.get("num_filters"):
        raise r.error(f"{name}: {num_filters} filters, the network type needs "
                      f"{spec.get('num_filters')}", start)
    _read_sizes(r, spec, name, start)
    fshape = r.read_alias_tensor(f"filters of {name}")
    bshape = r.read_alias_tensor(f"biases of {name}")
    _read_learning_multipliers(r, name)
    use_bias = True
    if version in ("con_5", "con_6"):
        use_bias = r.read_bool(f"use_bias of {name}")
    if version == "con_6":
        r.read_bool(f"use_relu of {name}")
    nf = math.prod(fshape)
    nb = math.prod(bshape) if use_bias else 0
    if (fshape[0] != num_filters or fshape[2:] != (spec.get("nr"), spec.get("nc"))
            or params.size < nf + nb):
        raise r.error(f"{name}: params {params.shape} do not hold filters {fshape} and "
                      f"biases {bshape}", start)
    flat = params.reshape(-1)
    out = {"weight": flat[:nf].reshape(fshape).copy()}
    out["bias"] = (flat[nf:nf + nb].copy() if use_bias
                   else np.zeros(num_filters, np.float32))
    return out


def _read_affine(r: DlibReader, name: str) -> dict:
    start = r.pos
    version = r.read_string(f"the version of {name}")
    if version == "bn_con2":
        return _read_bn_as_affine(r, name, start)
    if version not in ("affine_", "affine_2"):
        raise r.error(f"{name}: unexpected version {version!r}", start)
    params = r.read_tensor(f"params of {name}")
    gshape = r.read_alias_tensor(f"gamma of {name}")
    bshape = r.read_alias_tensor(f"beta of {name}")
    mode = r.read_int(f"mode of {name}")
    if version == "affine_2":
        r.read_bool(f"disabled flag of {name}")
    ng, nb = math.prod(gshape), math.prod(bshape)
    if mode != 0 or ng != nb or params.size != ng + nb:  # 0 == CONV_MODE (per channel)
        raise r.error(f"{name}: mode {mode}, params {params.shape}, gamma {gshape} is not a "
                      "per-channel affine layer", start)
    flat = params.reshape(-1)
    return {"gamma": flat[:ng].copy(), "beta": flat[ng:].copy()}


def _read_bn_as_affine(r: DlibReader, name: str, start: int) -> dict:
    # A batch-norm layer where the type says affine: dlib folds the running statistics.
    params = r.read_tensor(f"params of {name}")
    gshape = r.read_alias_tensor(f"gamma of {name}")
    r.read_alias_tensor(f"beta of {name}")
    r.read_tensor(f"means of {name}")
    r.read_tensor(f"invstds of {name}")
    running_means = r.read_tensor(f"running_means of {name}").reshape(-1)
    running_vars = r.read_tensor(f"running_variances of {name}").reshape(-1)
    r.read_int(f"num_updates of {name}")
    r.read_int(f"running_stats_window_size of {name}")
    _read_learning_multipliers(r, name)
    eps = r.read_float(f"eps of {name}")
    ng = math.prod(gshape)
    if params.size != 2 * ng or running_means.size != ng or running_vars.size != ng:
        raise r.error(f"{name}: inconsistent batch-norm sizes", start)
    flat = params.reshape(-1)
    gamma = flat[:ng] / np.sqrt(running_vars + eps)
    beta = flat[ng:] - running_means * gamma
    return {"gamma": gamma.astype(np.float32), "beta": beta.astype(np.float32)}


def _read_fc(r: DlibReader, spec: LayerSpec, name: str) -> dict:
    start = r.pos
    version = r.read_string(f"the version of {name}")
    if version not in ("fc_2", "fc_3"):
        raise r.error(f"{name}: unexpected version {version!r}", start)
    num_outputs = r.read_uint(f"num_outputs of {name}")
    num_inputs = r.read_uint(f"num_inputs of {name}")
    params = r.read_tensor(f"params of {name}")
    wshape = r.read_alias_tensor(f"weights of {name}")
    r.read_alias_tensor(f"biases of {name}")
    bias_mode = r.read_int(f"bias mode of {name}")
    _read_learning_multipliers(r, name)
    if version == "fc_3":
        r.read_bool(f"use_bias of {name}")
    want_mode = 1 if spec.get("no_bias") else 0  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    if num_outputs != spec.get("num_outputs") or bias_mode != want_mode:
        raise r.error(f"{name}: {num_outputs} outputs, bias mode {bias_mode}; the network type "
                      f"needs {spec.get('num_outputs')} outputs, bias mode {want_mode}", start)
    nw = num_inputs * num_outputs
    if math.prod(wshape) != nw or params.size < nw:
        raise r.error(f"{name}: params {params.shape} do not hold {num_inputs}x{num_outputs} "
                      "weights", start)
    flat = params.reshape(-1)
    # dlib stores W as (num_inputs, num_outputs) and computes x @ W
    out = {"weight": flat[:nw].reshape(num_inputs, num_outputs).copy()}
    if not spec.get("no_bias"):
        out["bias"] = flat[nw:nw + num_outputs].copy()
    return out


def _read_pool(r: DlibReader, spec: LayerSpec, name: str) -> dict:
    start = r.pos
    version = r.read_string(f"the version of {name}")
    want = "max_pool_2" if spec.kind == "max_pool" else "avg_pool_2"
    if version != want:
        raise r.error(f"{name}: unexpected version {version!r} (expected {want!r})", start)
    _read_sizes(r, spec, name, start)
    return {}


def _read_details(r: DlibReader, spec: LayerSpec, name: str) -> dict:
    kind = spec.kind
    if kind == "con":
        return _read_con(r, spec, name)
    if kind == "affine":
        return _read_affine(r, name)
    if kind == "fc":
        return _read_fc(r, spec, name)
    if kind in ("max_pool", "avg_pool"):
        return _read_pool(r, spec, name)
    start = r.pos
    version = r.read_string(f"the version of {name}")
    if kind == "relu":
        if version == "relu_2":
            r.read_bool(f"disabled flag of {name}")
        elif version != "relu_":
            raise r.error(f"{name}: unexpected version {version!r}", start)
        return {}
    if kind == "add_prev":
        if version != "add_prev_":
            raise r.error(f"{name}: unexpected version {version!r}", start)
        return {}
    raise ValueError(f"unsupported layer kind {kind!r} in the spec")


def _read_add_layer_trailer(r: DlibReader, name: str, version: int, input_layer: bool) -> None:
    # Training state that dlib saves with every layer; inference ignores it.
    r.read_bool(f"this_layer_setup_called of {name}")
    r.read_bool(f"gradient_input_is_stale of {name}")
    r.read_bool(f"get_output_and_gradient_input_disabled of {name}")
    r.read_tensor(f"x_grad of {name}")
    r.read_tensor(f"cached_output of {name}")
    if input_layer:
        r.read_tensor(f"grad_final of {name}")
        if version >= 3:
            r.read_int(f"sample_expansion_factor of {name}")
    elif version == 2:
        r.read_tensor(f"params_grad of {name}")


def _read_input(r: DlibReader, spec: LayerSpec) -> tuple[str, tuple, tuple]:
    start = r.pos
    version = r.read_string("the input layer's version")
    if version != "input_rgb_image_sized":
        raise r.error(f"input layer {version!r}, the network type needs "
                      "'input_rgb_image_sized'", start)
    avg = tuple(r.read_float(f"the input layer's average {c}") for c in ("red", "green", "blue"))
    nr = r.read_uint("the input layer's rows")
    nc = r.read_uint("the input layer's columns")
    if (nr, nc) != (spec.get("size"), spec.get("size")):
        raise r.error(f"input size {nr}x{nc}, the network type needs {spec.get('size')}", start)
    return version, avg, (int(nc), int(nr))


def parse_network(data: bytes, spec: list[LayerSpec],
                  path: Optional[str] = None) -> DlibNetwork:
    """Parse a serialized dlib network whose type is ``spec`` (outermost layer first: the loss,
    then each layer down to the input layer). Raises DlibFormatError on any mismatch."""
    if not spec or spec[0].kind != "loss_metric" or spec[-1].kind != "input_rgb_image_sized":
        raise ValueError("spec must run from a loss_metric layer down to an input layer")
    r = DlibReader(data, path)
    r.expect_version((1,), "the loss layer")
    start = r.pos
    loss_version = r.read_string("the loss layer's version")
    if loss_version == "loss_metric_2":
        loss = {"margin": r.read_float("the loss margin"),
                "distance_threshold": r.read_float("the loss distance threshold")}
    elif loss_version == "loss_metric_":
        loss = {"margin": 0.1, "distance_threshold": 0.75}  # dlib's former hard-coded values
    else:
        raise r.error(f"loss layer {loss_version!r}, the network type needs loss_metric", start)

    body = spec[1:-1]
    # Phase 1: wrapper versions, outside in.
    versions: list[int] = []
    for i, s in enumerate(body):
        name = f"layer {i + 1} ({s.kind})"
        if s.kind in ("tag", "skip"):
            versions.append(r.expect_version((1,), name))
        elif i == len(body) - 1:  # the add_layer that holds the input layer inline
            versions.append(r.expect_version((2, 3), name))
        else:
            versions.append(r.expect_version((1, 2), name))
    input_kind, avg, size = _read_input(r, spec[-1])
    # Phase 2: layer details, inside out.
    parsed: list[ParsedLayer] = []
    for i in range(len(body) - 1, -1, -1):
        s = body[i]
        if s.kind in ("tag", "skip"):
            continue
        name = f"layer {i + 1} ({s.kind})"
        offset = r.pos
        params = _read_details(r, s, name)
        _read_add_layer_trailer(r, name, versions[i], input_layer=(i == len(body) - 1))
        parsed.append(ParsedLayer(s.kind, s, offset, params))
    if r.pos != len(r.data):
        raise r.error(f"{len(r.data) - r.pos} unexpected bytes after the network")
    return DlibNetwork(input_kind, avg, size, loss, parsed)


def read_network_file(path: Union[str, os.PathLike], spec: list[LayerSpec]) -> DlibNetwork:
    """Read and parse a dlib ``.dat`` network file (see :func:`parse_network`)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"dlib model file not found: {p}")
    return parse_network(p.read_bytes(), spec, path=str(p))


def pack_int(value: int) -> bytes:
    """dlib's integer encoding (used by tests to build small files)."""
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def pack_float(value: float) -> bytes:
    """dlib's float_details encoding (64-bit mantissa, 16-bit exponent)."""
    if math.isinf(value):
        return pack_int(0) + pack_int(_IS_INF if value > 0 else _IS_NINF)
    if math.isnan(value):
        return pack_int(0) + pack_int(_IS_NAN)
    mantissa_f, exponent = math.frexp(value)
    mantissa = int(mantissa_f * (1 << 53))
    exponent -= 53
    while mantissa and mantissa & 0xFF == 0:
        mantissa >>= 8
        exponent += 8
    return pack_int(mantissa) + pack_int(exponent)


def pack_tensor(array: np.ndarray) -> bytes:
    """dlib's tensor encoding for a 4-d float32 array."""
    a = np.asarray(array, dtype="<f4")
    if a.ndim != 4:
        raise ValueError(f"dlib tensors are 4-d, got shape {a.shape}")
    return pack_int(2) + b"".join(pack_int(d) for d in a.shape) + a.tobytes()


def pack_string(text: str) -> bytes:
    raw = text.encode("ascii")
    return pack_int(len(raw)) + raw

