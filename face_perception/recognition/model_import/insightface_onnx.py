"""InsightFace ONNX recognizers (w600k_r50 / w600k_mbf of the buffalo packs, glint360k r100, ...),
kept as the model folder's ONNX graph.

Their signature: one float input N x 3 x 112 x 112 (N dynamic or 1), RGB chips in the ArcFace
template, one output N x D. The normalisation is InsightFace's own rule (``ArcFaceONNX``): a
graph whose first 8 nodes include a Sub and a Mul (models converted from MXNet) normalises
inside and takes raw 0..255 pixels; any other takes (pixel - 127.5) / 127.5.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from face_perception.recognition.model_import.errors import ModelImportError
from face_perception.recognition.model_import.imported_meta import (
    INSIGHTFACE_SAME_PERSON_COSINE,
    imported_meta,
)

FORMAT = "insightface-onnx"
LICENSE = ("InsightFace: code MIT; its released models (and models trained on its training "
           "data) are for non-commercial research purposes only")
CHIP = 112
# Largest difference allowed between a batch of 2 and two batches of 1 when a fixed batch of 1
# is made dynamic (float rounding of the same operations).
BATCH_TOLERANCE = 1e-4


def normalisation_inside(model) -> bool:
    """InsightFace's rule: a Sub and a Mul among the graph's first 8 nodes (by op type or by
    the MXNet converter's node names)."""
    sub = mul = False
    for node in model.graph.node[:8]:
        sub |= node.op_type == "Sub" or node.name.startswith(("Sub", "_minus"))
        mul |= node.op_type == "Mul" or node.name.startswith(("Mul", "_mul"))
    return sub and mul


def _dims(value_info) -> list:
    t = value_info.type.tensor_type
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in t.shape.dim]


def check_signature(model, source) -> tuple[str, bool]:
    """(input name, batch of the input or output fixed to 1) of a recognizer graph, else
    ModelImportError."""
    import onnx

    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelImportError(f"{source}: a recognizer graph has one input and one output, "
                               f"this one {len(inputs)} and {len(outputs)}")
    inp = inputs[0]
    if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ModelImportError(f"{source}: input {inp.name!r} is not float32")
    dims = _dims(inp)
    batch_ok = dims[:1] in ([None], [1]) or (len(dims) > 0 and isinstance(dims[0], str))
    if len(dims) != 4 or dims[1:] != [3, CHIP, CHIP] or not batch_ok:
        raise ModelImportError(f"{source}: input {inp.name!r} has shape {dims}; an InsightFace "
                               f"recognizer takes N x 3 x {CHIP} x {CHIP}")
    out_dims = _dims(outputs[0])
    if out_dims and len(out_dims) != 2:
        raise ModelImportError(f"{source}: output {outputs[0].name!r} has shape {out_dims}; a "
                               "recognizer gives N x D embeddings")
    # Exports often fix the output's batch to 1 even with a dynamic input (onnxruntime then
    # warns on every batch); either one fixed means the batch is opened and checked.
    return inp.name, dims[0] == 1 or out_dims[:1] == [1]


def _make_batch_dynamic(model) -> None:
    initializers = {x.name for x in model.graph.initializer}
    for vi in (*[i for i in model.graph.input if i.name not in initializers],
               *model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims):
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    # Inferred intermediate shapes still say batch 1; they are hints only, so drop them.
    del model.graph.value_info[:]


def _run(blob: bytes, input_name: str, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    from face_perception.onnx.session import session_options

    session = ort.InferenceSession(blob, session_options(1), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {input_name: x})[0], np.float32)


def checked_graph(src: Path, raw_pixels: Optional[bool] = None) -> tuple[bytes, int, bool]:
    """(serialised graph, embedding size, normalises inside) of an ONNX recognizer that passed
    the checks (signature, runs on 112x112 chips, batches agree). ``raw_pixels`` None decides
    the normalisation by InsightFace's rule; True/False states it (other sources' rules)."""
    import onnx

    if not src.is_file():
        raise FileNotFoundError(f"ONNX recognizer not found: {src}")
    try:
        model = onnx.load_model_from_string(src.read_bytes())
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - protobuf and the checker raise many types
        raise ModelImportError(f"{src} is not a valid ONNX model: {exc}") from None
    input_name, fixed_batch = check_signature(model, src)
    inside = normalisation_inside(model) if raw_pixels is None else bool(raw_pixels)
    if fixed_batch:
        # The Embedder runs chips in batches: open the batch dimension, then prove below that
        # a batch of 2 gives what two batches of 1 give.
        _make_batch_dynamic(model)
    blob = model.SerializeToString()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 3, CHIP, CHIP)).astype(np.float32)
    if not inside:
        x = (x - 127.5) / 127.5
    try:
        both = _run(blob, input_name, x)
        single = np.concatenate([_run(blob, input_name, x[i:i + 1]) for i in range(2)])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelImportError(f"{src}: onnxruntime cannot run it on 2 chips of "
                               f"{CHIP}x{CHIP}: {exc}") from None
    if both.ndim != 2 or both.shape[0] != 2 or not np.all(np.isfinite(both)):
        raise ModelImportError(f"{src}: output shape {both.shape} (or non-finite values) is "
                               "not N x D embeddings")
    scale = max(1.0, float(np.abs(single).max()))
    if float(np.abs(both - single).max()) / scale > BATCH_TOLERANCE:
        raise ModelImportError(f"{src}: its batch dimension is fixed to 1 and the graph gives "
                               "other results in batches; re-export it with a dynamic batch")
    return blob, int(both.shape[1]), inside


def import_insightface_onnx(src: Union[str, os.PathLike], out: Union[str, os.PathLike],
                            name: Optional[str] = None, arch: Optional[str] = None,
                            threshold: Optional[float] = None) -> Path:
    from face_perception.recognition.model_folder import write_onnx_model_folder

    src = Path(src)
    if arch is not None:
        raise ModelImportError("--arch is not used with --format insightface-onnx (the graph "
                               "is kept as it is)")
    blob, dim, inside = checked_graph(src)
    mean = (0.0,) * 3 if inside else (127.5,) * 3
    std = (1.0,) * 3 if inside else (127.5,) * 3
    meta = imported_meta(name or src.stem, "onnx_graph", dim, "rgb", mean, std,
                         INSIGHTFACE_SAME_PERSON_COSINE if threshold is None else threshold,
                         src, FORMAT, LICENSE)
    return write_onnx_model_folder(out, blob, meta)
