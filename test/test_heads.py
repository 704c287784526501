"""Margin heads and the focal loss behave as their papers define them."""
import math

import pytest
import torch
import torch.nn.functional as F

from face_perception.recognition.heads import (
    AMSoftmaxHead,
    ArcFaceHead,
    ClassifierHead,
    CombinedMarginHead,
    CosFaceHead,
    SphereFaceHead,
    get_head,
)
from face_perception.recognition.losses import FocalLoss, get_loss


@pytest.fixture()
def batch():
    torch.manual_seed(0)
    return torch.randn(6, 16), torch.tensor([0, 1, 2, 3, 4, 0])


def cosines(head, x):
    return F.normalize(x) @ F.normalize(head.weight).T


def test_arcface_target_logit_is_scaled_cos_of_angle_plus_margin(batch):
    x, y = batch
    head = ArcFaceHead(16, 5)
    with torch.no_grad():
        head.weight.copy_(x[:5] + 0.1 * torch.randn(5, 16))  # targets at small angles
        out = head(x, y)
        cos = cosines(head, x)
    theta = torch.acos(cos[torch.arange(6), y].clamp(-1, 1))
    assert head.s == 64 and head.m == 0.5
    assert torch.allclose(out[torch.arange(6), y], 64 * torch.cos(theta + 0.5), atol=1e-3)
    # Non-target classes are untouched: s * cos.
    mask = torch.ones_like(out, dtype=torch.bool)
    mask[torch.arange(6), y] = False
    assert torch.allclose(out[mask], 64 * cos[mask], atol=1e-3)


def test_arcface_stays_monotonic_beyond_pi_minus_m():
    head = ArcFaceHead(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    angles = torch.linspace(0.0, math.pi - 1e-3, 200)
    x = torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    with torch.no_grad():
        target = head(x, torch.zeros(200, dtype=torch.long))[:, 0]
    assert (target[1:] <= target[:-1] + 1e-4).all()


def test_cosface_and_am_softmax_subtract_the_cosine_margin(batch):
    x, y = batch
    for head, s, m in ((CosFaceHead(16, 5), 64, 0.35), (AMSoftmaxHead(16, 5), 30, 0.35)):
        with torch.no_grad():
            out = head(x, y)
            cos = cosines(head, x)
        assert (head.s, head.m) == (s, m)
        assert torch.allclose(out[torch.arange(6), y], s * (cos[torch.arange(6), y] - m),
                              atol=1e-3)


def test_combined_margin_covers_arcface_and_cosface(batch):
    x, y = batch
    head = CombinedMarginHead(16, 5, s=10.0, m2=0.3, m3=0.2)
    with torch.no_grad():
        head.weight.copy_(x[:5])
        out = head(x, y)
        cos = cosines(head, x)[torch.arange(6), y].clamp(-1, 1)
    assert torch.allclose(out[torch.arange(6), y], 10 * (torch.cos(torch.acos(cos) + 0.3) - 0.2),
                          atol=5e-3)


def test_sphereface_psi_is_decreasing_and_equals_cos_m_theta_near_zero():
    head = SphereFaceHead(4, 3)
    angles = torch.linspace(0.01, math.pi - 0.01, 500)
    psi = head.psi(torch.cos(angles))
    assert (psi[1:] < psi[:-1]).all()
    small = angles < math.pi / 4
    assert torch.allclose(psi[small], torch.cos(4 * angles[small]), atol=1e-4)
    assert head.lamb == 1000.0


def test_sphereface_anneals_lambda_while_training(batch):
    x, y = batch
    head = SphereFaceHead(16, 5).train()
    for _ in range(100):
        head(x, y)
    assert head.lamb == pytest.approx(max(5.0, 1000 / (1 + 0.12 * 100)))


def test_heads_without_labels_return_plain_scaled_cosines(batch):
    x, _ = batch
    head = ArcFaceHead(16, 5)
    with torch.no_grad():
        assert torch.allclose(head(x), 64 * cosines(head, x), atol=1e-4)


@pytest.mark.parametrize("name", ["arcface", "cosface", "sphereface", "am_softmax", "classifier",
                                  "combined"])
def test_gradients_flow_to_embeddings_and_class_centres(name, batch):
    x, y = batch
    x = x.clone().requires_grad_(True)
    head = get_head(name, 16, 5)
    loss = FocalLoss()(head(x, y), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert x.grad is not None and x.grad.abs().sum() > 0
    params = list(head.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_classifier_is_plain_linear(batch):
    x, y = batch
    head = ClassifierHead(16, 5)
    assert torch.allclose(head(x, y), head.fc(x))


def test_bad_head_arguments_are_refused(batch):
    x, _ = batch
    with pytest.raises(ValueError, match="unknown network_head 'nope'"):
        get_head("nope", 16, 5)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 5\)"):
        ArcFaceHead(16, 5)(x, torch.tensor([0, 1, 2, 3, 4, 9]))
    with pytest.raises(ValueError, match=r"embeddings must be \(N, 8\)"):
        ArcFaceHead(8, 5)(x, None)


def test_focal_loss_down_weights_easy_samples():
    logits = torch.tensor([[4.0, 0.0], [0.2, 0.0]])
    labels = torch.tensor([0, 0])
    ce = F.cross_entropy(logits, labels, reduction="none")
    focal = FocalLoss(gamma=2.0, reduction="none")(logits, labels)
    p = torch.softmax(logits, 1)[:, 0]
    assert torch.allclose(focal, (1 - p) ** 2 * ce)
    # The easy sample loses far more weight than the hard one.
    assert focal[0] / ce[0] < 0.01 < focal[1] / ce[1]
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, labels), ce.mean())
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("triplet")


@pytest.mark.parametrize("name, setting", [("combined", "m"), ("arcface", "h"),
                                           ("classifier", "s")])
def test_a_setting_the_head_does_not_take_is_refused_by_name(name, setting):
    with pytest.raises(ValueError, match=f"{name!r} takes no {setting} .*its settings: "):
        get_head(name, 8, 3, **{setting: 1.0})


def test_combined_margin_list_m1_is_the_multiplicative_angular_margin(batch):
    x, y = batch
    head = get_head("combined", 16, 5, s=10.0, m1=1.5, m2=0.1, m3=0.05)
    logits = head(x, y)
    theta = torch.acos(cosines(head, x).clamp(-1 + 1e-7, 1 - 1e-7))
    target = theta.gather(1, y[:, None]).squeeze(1)
    want = 10.0 * (torch.cos((1.5 * target + 0.1).clamp(max=math.pi)) - 0.05)
    torch.testing.assert_close(logits.gather(1, y[:, None]).squeeze(1), want, atol=1e-4,
                               rtol=1e-4)
    # m1 = 1 is the ArcFace + CosFace form
    plain = get_head("combined", 16, 5, s=10.0, m1=1.0, m2=0.1, m3=0.05)
    plain.load_state_dict(head.state_dict())
    want = 10.0 * (torch.cos(target + 0.1) - 0.05)
    torch.testing.assert_close(plain(x, y).gather(1, y[:, None]).squeeze(1), want, atol=1e-4,
                               rtol=1e-4)


def test_head_folder_records_its_settings_and_load_rebuilds_them(batch, tmp_path):
    from face_perception.recognition.model_folder import load_head, save_head

    x, _ = batch
    head = get_head("adaface", 16, 3, s=16.0, m=0.3, h=0.5, t_alpha=0.02)
    save_head(tmp_path, head, "adaface", ["a", "b", "c"])
    again, classes = load_head(tmp_path)
    assert classes == ["a", "b", "c"]
    assert (again.s, again.m, again.h, again.t_alpha) == (16.0, 0.3, 0.5, 0.02)
    torch.testing.assert_close(again(x), head.eval()(x))
