"""Our dlib ResNet (torch and ONNX) against dlib itself, on the same chips of real photos."""
from __future__ import annotations

import numpy as np
import pytest

from face_perception.recognition import Embedder
from test.dlib_reference import PHOTOS, dlib_reference

PARITY = 1e-4  # max abs difference allowed between our raw descriptor and dlib's


@pytest.fixture(scope="module")
def references(photos):
    refs = [dlib_reference(photos, name) for name in PHOTOS]
    chips_bgr = np.stack([chip[..., ::-1] for _, _, chip, _ in refs])
    descriptors = np.stack([d for _, _, _, d in refs])
    return chips_bgr, descriptors


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_dlib_resnet_matches_dlib_descriptor(references, backend):
    chips_bgr, descriptors = references
    embedder = Embedder("dlib_resnet", backend=backend)
    raw = embedder.embed_raw(chips_bgr)
    diff = np.abs(raw - descriptors).max()
    print(f"{backend}: max abs difference to dlib over {len(raw)} faces = {diff:.2e}")
    assert diff <= PARITY
    # single chips and batches agree
    np.testing.assert_allclose(embedder.embed_raw(chips_bgr[2]), raw[2:3], atol=1e-5)


def test_dlib_resnet_embeddings_separate_obama_from_biden(references):
    chips_bgr, descriptors = references
    embedder = Embedder("dlib_resnet", backend="onnx")
    emb = embedder.embed_chips(chips_bgr)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = emb @ emb.T
    obama = [i for i, n in enumerate(PHOTOS) if n.startswith("obama")]
    biden = PHOTOS.index("biden.jpg")
    same = [sim[i, j] for i in obama for j in obama if i < j]
    other = [sim[i, biden] for i in obama]
    threshold = embedder.meta.threshold
    assert min(same) > threshold > max(other), (same, other, threshold)
    # the cosine threshold and dlib's euclidean 0.6 agree on every pair of these photos
    dist = np.linalg.norm(descriptors[:, None] - descriptors[None], axis=2)
    np.testing.assert_array_equal(sim > threshold, dist < embedder.meta.distance_threshold)
