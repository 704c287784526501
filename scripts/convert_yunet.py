"""Convert libfacedetection.train's published YuNet-n ONNX into the weights the package ships.

Usage (from the repository root, with the package importable):

    python scripts/convert_yunet.py path/to/yunet_n_dynamic.onnx

The ONNX comes from https://github.com/ShiqiYu/libfacedetection.train
(``onnx/yunet_n_dynamic.onnx``, Apache-2.0); it is also kept as test data in
``test/data/yunet/``. The script writes
``face_perception/detection/pretrained/yunet_n.npz`` (our module's state dict, see
face_perception/detection/yunet_weights.py), checks that our torch module reproduces the
published graph on real photos, and prints the two sha256 values to pin in yunet_weights.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    from face_perception.detection import yunet_weights as W
    from face_perception.files import sha256_bytes

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("onnx", type=Path, help="published yunet_n_dynamic.onnx")
    p.add_argument("--out", type=Path, default=W.WEIGHTS_FILE)
    args = p.parse_args(argv)
    data = args.onnx.read_bytes()
    state = W.onnx_to_state_dict(data)
    digest = W.save_npz(state, args.out)
    params = sum(int(np.prod(a.shape)) for a in state.values())
    diff = published_difference(args.onnx, args.out, digest)
    print(f"wrote {args.out}: {len(state)} arrays, {params} parameters; largest output "
          f"difference from the published graph on the sample photos {diff:.2e}")
    print(f'WEIGHTS_SHA256 = "{digest}"')
    print(f'SOURCE_ONNX_SHA256 = "{sha256_bytes(data)}"')
    return 0


def published_difference(onnx_path: Path, weights: Path, sha256: str) -> float:
    """Largest absolute difference between the published graph (onnxruntime) and our torch
    module with ``weights`` over the 12 outputs, on every sample photo at 640 px."""
    import cv2
    import onnxruntime as ort
    import torch

    from face_perception.data.sample_photos import sample_photos_dir
    from face_perception.detection import yunet_weights as W
    from face_perception.detection.yunet import OUTPUT_NAMES

    net = W.build_model(weights, sha256)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for photo in sorted(sample_photos_dir().glob("*.jpg")):
        blob = photo_blob(cv2.imread(str(photo)))
        ref = session.run(OUTPUT_NAMES, {"input": blob})
        with torch.inference_mode():
            ours = [t.numpy() for t in net(torch.from_numpy(blob))]
        worst = max(worst, max(float(np.abs(a - b).max()) for a, b in zip(ref, ours)))
    return worst


def photo_blob(image: np.ndarray, long_side: int = 640) -> np.ndarray:
    """A photo as the YuNet input blob: long side ``long_side``, padded to multiples of 32."""
    import cv2

    from face_perception.detection.yunet import aligned_size

    scale = long_side / max(image.shape[:2])
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = aligned_size(*image.shape[:2])
    padded = np.zeros((h, w, 3), np.uint8)
    padded[:image.shape[0], :image.shape[1]] = image
    return np.ascontiguousarray(padded.transpose(2, 0, 1)[None], np.float32)


if __name__ == "__main__":
    sys.exit(main())
