"""Prior matching and the RetinaFace multibox loss on hand-built targets."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from face_perception.detection.box_utils import decode, decode_landmarks
from face_perception.detection.config import VARIANCE
from face_perception.detection.loss import MultiBoxLoss
from face_perception.detection.matching import match_batch, match_image
from face_perception.detection.priors import prior_boxes

SIZE = 64


def _priors():
    return torch.from_numpy(prior_boxes(SIZE, SIZE).copy())


def _face(x1, y1, x2, y2, with_landmarks=True):
    box = torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32) / SIZE
    cx, cy, w = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1
    pts = torch.tensor([[cx - w / 4, cy - w / 6, cx + w / 4, cy - w / 6, cx, cy,
                         cx - w / 5, cy + w / 4, cx + w / 5, cy + w / 4]]) / SIZE
    if not with_landmarks:
        pts = torch.full((1, 10), -1.0)
    return box, pts, torch.tensor([with_landmarks])


def test_targets_decode_back_to_the_face_and_its_landmarks():
    priors = _priors()
    box, pts, has = _face(20, 22, 52, 54)
    loc, labels, lms, lm_mask = match_image(box, pts, has, priors, VARIANCE)
    pos = labels > 0
    assert pos.sum() >= 2  # a 32 px face overlaps several anchors by >= 0.35
    assert torch.equal(pos, lm_mask)
    torch.testing.assert_close(decode(loc[pos], priors[pos], VARIANCE),
                               box.expand(int(pos.sum()), 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(decode_landmarks(lms[pos], priors[pos], VARIANCE),
                               pts.expand(int(pos.sum()), 10), atol=1e-5, rtol=0)


def test_small_face_claims_its_best_prior_below_the_threshold():
    priors = _priors()
    box, pts, has = _face(30, 30, 39, 39)  # 9 px: best IoU with a 16 px anchor is 81/256
    _, labels, _, _ = match_image(box, pts, has, priors, VARIANCE, threshold=0.35)
    assert int(labels.sum()) == 1


def test_face_too_small_for_any_anchor_is_dropped():
    priors = _priors()
    box, pts, has = _face(30, 30, 34, 34)  # 4 px: IoU 16/256 < 0.2
    _, labels, _, _ = match_image(box, pts, has, priors, VARIANCE)
    assert int(labels.sum()) == 0


def test_face_without_landmarks_is_positive_but_has_no_landmark_target():
    priors = _priors()
    box, pts, has = _face(20, 22, 52, 54, with_landmarks=False)
    _, labels, _, lm_mask = match_image(box, pts, has, priors, VARIANCE)
    assert labels.sum() > 0 and not lm_mask.any()


def _batch_targets():
    box, pts, has = _face(20, 22, 52, 54)
    box2, pts2, has2 = _face(4, 4, 20, 20, with_landmarks=False)
    return [{"boxes": torch.cat([box, box2]), "landmarks": torch.cat([pts, pts2]),
             "has_landmarks": torch.cat([has, has2])},
            {"boxes": torch.zeros(0, 4), "landmarks": torch.zeros(0, 10),
             "has_landmarks": torch.zeros(0, dtype=torch.bool)}]


def test_hard_negative_mining_keeps_three_hardest_negatives_per_positive():
    priors = _priors()
    targets = _batch_targets()
    gen = torch.Generator().manual_seed(0)
    num_priors = priors.shape[0]
    loc = torch.randn(2, num_priors, 4, generator=gen)
    conf = torch.randn(2, num_priors, 2, generator=gen) * 3
    lms = torch.randn(2, num_priors, 10, generator=gen)
    total, parts = MultiBoxLoss()((loc, conf, lms), priors, targets)

    t = match_batch(targets, priors, VARIANCE)
    pos = t.labels[0] > 0
    n_pos = int(pos.sum())
    ce = F.cross_entropy(conf[0], t.labels[0], reduction="none")
    neg_ce = ce[~pos].sort(descending=True).values[:3 * n_pos]
    expected_conf = (ce[pos].sum() + neg_ce.sum()) / n_pos  # image 2 has no faces: no negatives
    assert parts["conf"] == pytest.approx(float(expected_conf), rel=1e-5)
    assert parts["positives"] == n_pos
    expected_loc = F.smooth_l1_loss(loc[0][pos], t.loc[0][pos], reduction="sum") / n_pos
    lm_mask = t.landmark_mask[0]
    expected_lm = F.smooth_l1_loss(lms[0][lm_mask], t.landmarks[0][lm_mask],
                                   reduction="sum") / int(lm_mask.sum())
    assert parts["loc"] == pytest.approx(float(expected_loc), rel=1e-5)
    assert parts["landmarks"] == pytest.approx(float(expected_lm), rel=1e-5)
    assert float(total) == pytest.approx(2.0 * parts["loc"] + parts["conf"] + parts["landmarks"],
                                         rel=1e-5)


def test_loss_gradient_step_lowers_the_loss_of_a_real_network():
    from face_perception.detection.retinaface import RetinaFace

    torch.manual_seed(0)
    model = RetinaFace("mnet").train()
    priors = _priors()
    targets = _batch_targets()
    image = torch.from_numpy(np.random.default_rng(0).normal(0, 50, (2, 3, SIZE, SIZE))
                             .astype(np.float32))
    criterion = MultiBoxLoss()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    losses = []
    for _ in range(12):
        loss, _ = criterion(model(image), priors, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0]
