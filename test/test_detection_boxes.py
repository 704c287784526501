"""Specifications of the RetinaFace priors, box maths and network output shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from face_perception.detection import box_utils
from face_perception.detection.config import get_config
from face_perception.detection.priors import feature_map_sizes, prior_boxes, prior_count

VAR = [0.1, 0.2]


def test_priors_count_matches_feature_maps_for_640x480():
    # 80x60 + 40x30 + 20x15 cells, 2 anchors each.
    assert feature_map_sizes(480, 640) == [(60, 80), (30, 40), (15, 20)]
    assert prior_boxes(480, 640).shape == (2 * (4800 + 1200 + 300), 4)
    assert prior_count(480, 640) == 12600


def test_priors_round_odd_sizes_up_like_the_strided_convs():
    assert feature_map_sizes(67, 91) == [(9, 12), (5, 6), (3, 3)]
    assert prior_boxes(67, 91).shape[0] == 2 * (9 * 12 + 5 * 6 + 3 * 3)


def test_priors_positions_are_cell_centres_in_prior_order():
    h, w = 64, 96
    p = prior_boxes(h, w)
    # First two priors: cell (0, 0) of stride 8, anchor sizes 16 and 32.
    np.testing.assert_allclose(p[0], [4 / w, 4 / h, 16 / w, 16 / h], rtol=1e-6)
    np.testing.assert_allclose(p[1], [4 / w, 4 / h, 32 / w, 32 / h], rtol=1e-6)
    # Next cell is one column to the right (row-major order, like the heads).
    np.testing.assert_allclose(p[2, :2], [12 / w, 4 / h], rtol=1e-6)
    # First prior of the stride-16 level follows all stride-8 priors.
    start = 2 * (h // 8) * (w // 8)
    np.testing.assert_allclose(p[start], [8 / w, 8 / h, 64 / w, 64 / h], rtol=1e-6)
    # Last prior: bottom-right cell of stride 32 with the 512 anchor.
    np.testing.assert_allclose(p[-1], [(w - 16) / w, (h - 16) / h, 512 / w, 512 / h], rtol=1e-6)


def test_priors_are_cached_and_read_only():
    a = prior_boxes(120, 160)
    assert prior_boxes(120, 160) is a
    with pytest.raises(ValueError):
        a[0, 0] = 1.0


def test_priors_refuse_empty_size():
    with pytest.raises(ValueError, match="0x10"):
        prior_boxes(0, 10)


@pytest.mark.parametrize("as_torch", [False, True])
def test_encode_decode_round_trip_for_boxes_and_landmarks(as_torch):
    rng = np.random.default_rng(0)
    priors = prior_boxes(96, 128)[::7].astype(np.float64)
    n = len(priors)
    centre = priors[:, :2] + rng.uniform(-0.05, 0.05, (n, 2))
    size = priors[:, 2:] * rng.uniform(0.5, 2.0, (n, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
    landmarks = rng.uniform(0, 1, (n, 10))
    if as_torch:
        priors_t, boxes_t, lm_t = map(torch.from_numpy, (priors, boxes, landmarks))
        loc = box_utils.encode(boxes_t, priors_t, VAR)
        back = box_utils.decode(loc, priors_t, VAR).numpy()
        lm_back = box_utils.decode_landmarks(
            box_utils.encode_landmarks(lm_t, priors_t, VAR), priors_t, VAR).numpy()
    else:
        loc = box_utils.encode(boxes, priors, VAR)
        back = box_utils.decode(loc, priors, VAR)
        lm_back = box_utils.decode_landmarks(
            box_utils.encode_landmarks(landmarks, priors, VAR), priors, VAR)
    np.testing.assert_allclose(back, boxes, atol=1e-9)
    np.testing.assert_allclose(lm_back, landmarks, atol=1e-9)


def test_decode_of_zero_regression_is_the_prior_itself():
    priors = prior_boxes(64, 64)
    boxes = box_utils.decode(np.zeros((1, len(priors), 4), np.float32), priors, VAR)[0]
    np.testing.assert_allclose(box_utils.center_size(boxes), priors, atol=1e-6)
    lm = box_utils.decode_landmarks(np.zeros((len(priors), 10), np.float32), priors, VAR)
    np.testing.assert_allclose(lm.reshape(-1, 5, 2), np.repeat(priors[:, None, :2], 5, 1),
                               atol=1e-7)


def test_numpy_nms_keeps_the_same_boxes_as_torchvision():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 200, (300, 2))
    wh = rng.uniform(10, 60, (300, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    ours = box_utils.nms(boxes, scores, 0.4)
    theirs = box_utils.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.4).numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_box_voting_merges_a_cluster_into_its_weighted_mean():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    lms = np.stack([np.full(10, 1.0), np.full(10, 5.0), np.full(10, 9.0)]).astype(np.float32)
    b, s, lm = box_utils.box_voting(boxes, scores, lms, 0.5)
    assert len(b) == 2
    np.testing.assert_allclose(b[0], [0.25, 0.25, 10.25, 10.25], atol=1e-5)
    np.testing.assert_allclose(s, [0.9, 0.8])
    np.testing.assert_allclose(lm[0], np.full(10, 2.0), atol=1e-5)
    np.testing.assert_allclose(b[1], boxes[2])


def test_box_iou_numpy_matches_torchvision():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], np.float32)
    b = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 5, 10, 15]], np.float32)
    np.testing.assert_allclose(box_utils.box_iou(a, b),
                               box_utils.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("backbone", ["mnet", "resnet"])
def test_network_outputs_one_prediction_per_prior_logits_in_train_softmax_in_eval(backbone):
    from face_perception.detection.retinaface import RetinaFace

    torch.manual_seed(0)
    model = RetinaFace(get_config(backbone))
    x = torch.randn(2, 3, 67, 91)
    n = len(prior_boxes(67, 91))
    model.train()
    loc, logits, lm = model(x)
    assert loc.shape == (2, n, 4) and logits.shape == (2, n, 2) and lm.shape == (2, n, 10)
    assert not torch.allclose(logits.sum(-1), torch.ones(2, n))
    model.eval()
    with torch.no_grad():
        _, probs, _ = model(x)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, n))


def test_fused_batchnorm_gives_the_same_outputs():
    from face_perception.detection.retinaface import RetinaFace

    torch.manual_seed(0)
    model = RetinaFace("mnet").eval()
    for m in model.modules():  # non-trivial BN statistics, or fusing would be a no-op
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        before = model(x)
        after = model.fuse_batchnorm()(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_unknown_backbone_is_refused_by_name():
    with pytest.raises(ValueError, match="mobilenet3"):
        get_config("mobilenet3")
