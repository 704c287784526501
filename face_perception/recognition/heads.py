"""Classification heads for training embedding networks: margin softmax variants and a plain
linear classifier.

Every head maps ``(embeddings (N, D), labels (N,) or None) -> logits (N, C)`` for a softmax loss.
Margin heads compare L2-normalised embeddings with L2-normalised class centres (cosine ``cos t``)
and penalise the target class only while training (``labels`` given); with ``labels=None`` they
return the plain scaled cosines, which is what a trained model uses to classify.

Defaults (the values the papers and face.evoLVe use):

=============  ==========================================  =====================
head           target-class logit                          defaults
=============  ==========================================  =====================
ArcFace        s * cos(t + m)                              s=64, m=0.5
CosFace        s * (cos t - m)                             s=64, m=0.35
AM-Softmax     s * (cos t - m)                             s=30, m=0.35
SphereFace     |x| * (lambda cos t + psi(t)) / (1 + lambda) m=4 (psi(t) = (-1)^k cos(m t) - 2k)
combined       s * (cos(t + m2) - m3)                      s=64, m2=0.3, m3=0.2
AdaFace        s * (cos(t + g_ang) - g_add), margins from  s=64, m=0.4, h=0.333,
               the feature norm's batch statistics         t_alpha=0.01
classifier     W x + b                                     -
=============  ==========================================  =====================

ArcFace and CosFace are the two corners of ``CombinedMarginHead`` (InsightFace's combined margin
with m1 = 1): ArcFace is (m2=m, m3=0), CosFace/AM-Softmax is (m2=0, m3=m). AM-Softmax and CosFace
are the same additive cosine margin, published twice (Wang et al. 2018); they differ only in the
customary scale.
"""
from __future__ import annotations

import inspect
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

HEAD_NAMES = ("arcface", "cosface", "sphereface", "am_softmax", "classifier", "combined",
              "adaface")


class CosineHead(nn.Module):
    """Base for margin heads: class centres (C, D) and cosine similarities to them."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        if int(in_features) <= 0 or int(out_features) <= 0:
            raise ValueError(
                f"in_features and out_features must be positive, got {in_features}, "
                f"{out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.ndim != 2 or embeddings.shape[1] != self.in_features:
            raise ValueError(f"embeddings must be (N, {self.in_features}), "
                             f"got {tuple(embeddings.shape)}")
        # Clamp keeps acos finite and its gradient bounded at +-1.
        return F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1 + 1e-7,
                                                                                1 - 1e-7)

    @staticmethod
    def _check_labels(labels: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        labels = labels.long().reshape(-1)
        if labels.shape[0] != cos.shape[0]:
            raise ValueError(f"got {labels.shape[0]} labels for {cos.shape[0]} embeddings")
        if labels.numel() and (labels.min() < 0 or labels.max() >= cos.shape[1]):
            raise ValueError(f"labels must be in [0, {cos.shape[1]}), got min "
                             f"{int(labels.min())} max {int(labels.max())}")
        return labels


class CombinedMarginHead(CosineHead):
    """Target logit ``s * (cos(m1 t + m2) - m3)``; the other classes keep ``s * cos t``
    (arcface_torch's ``margin_list`` = (m1, m2, m3); m1 = 1 unless set).

    Where ``t + m2`` would pass pi the curve is no longer decreasing in t, so (as in ArcFace)
    the target logit becomes ``s * (cos t - m3 - m2 sin m2)`` there, unless ``easy_margin``
    (then the margin only applies where cos t > 0).
    """

    def __init__(self, in_features: int, out_features: int, s: float = 64.0, m2: float = 0.3,
                 m3: float = 0.2, easy_margin: bool = False, m1: float = 1.0) -> None:
        super().__init__(in_features, out_features)
        if s <= 0 or m2 < 0 or m3 < 0 or m2 >= math.pi / 2 or m1 < 1:
            raise ValueError(f"need s > 0, m1 >= 1, 0 <= m2 < pi/2, m3 >= 0; got s={s}, m1={m1}, "
                             f"m2={m2}, m3={m3}")
        self.s, self.m2, self.m3, self.easy_margin = float(s), float(m2), float(m3), easy_margin
        self.m1 = float(m1)
        self._cos_m, self._sin_m = math.cos(m2), math.sin(m2)
        self._threshold = math.cos(math.pi - m2)
        self._fallback = math.sin(m2) * m2

    def forward(self, embeddings: torch.Tensor,
                labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        cos = self.cosine(embeddings)
        if labels is None:
            return cos * self.s
        labels = self._check_labels(labels, cos)
        target = cos.gather(1, labels[:, None])
        if self.m1 != 1.0:
            # multiplicative margin: through the angle; past pi the curve turns, so the angle
            # is clipped there (the target logit stays the minimum, -1)
            theta = torch.acos(target)
            margined = torch.cos((self.m1 * theta + self.m2).clamp(max=math.pi)) - self.m3
            logits = cos.scatter(1, labels[:, None], margined)
            return logits * self.s
        sin = torch.sqrt((1.0 - target * target).clamp_min(0.0))
        margined = target * self._cos_m - sin * self._sin_m  # cos(t + m2)
        if self.easy_margin:
            margined = torch.where(target > 0, margined, target)
        else:
            margined = torch.where(target > self._threshold, margined, target - self._fallback)
        margined = margined - self.m3
        logits = cos.scatter(1, labels[:, None], margined)
        return logits * self.s


class ArcFaceHead(CombinedMarginHead):
    """Additive angular margin (Deng et al. 2019): ``s * cos(t + m)``, s=64, m=0.5."""

    def __init__(self, in_features: int, out_features: int, s: float = 64.0, m: float = 0.5,
                 easy_margin: bool = False) -> None:
        super().__init__(in_features, out_features, s=s, m2=m, m3=0.0, easy_margin=easy_margin)
        self.m = float(m)


class CosFaceHead(CombinedMarginHead):
    """Large margin cosine loss (Wang et al. 2018): ``s * (cos t - m)``, s=64, m=0.35."""

    def __init__(self, in_features: int, out_features: int, s: float = 64.0,
                 m: float = 0.35) -> None:
        super().__init__(in_features, out_features, s=s, m2=0.0, m3=m)
        self.m = float(m)


class AMSoftmaxHead(CosFaceHead):
    """Additive margin softmax (Wang et al. 2018): ``s * (cos t - m)``, s=30, m=0.35."""

    def __init__(self, in_features: int, out_features: int, s: float = 30.0,
                 m: float = 0.35) -> None:
        super().__init__(in_features, out_features, s=s, m=m)


class SphereFaceHead(CosineHead):
    """Multiplicative angular margin, A-Softmax (Liu et al. 2017), m=4.

    The target uses ``psi(t) = (-1)^k cos(m t) - 2k`` for t in [k pi/m, (k+1) pi/m], which is
    decreasing over [0, pi]; logits are scaled by the feature norm |x| (no fixed scale). As in
    the paper's code, the margin is blended in gradually: the target logit is
    ``|x| (lambda cos t + psi(t)) / (1 + lambda)`` with
    ``lambda = max(lambda_min, base * (1 + gamma * it) ** -power)``, ``it`` counting training
    forward passes (base=1000, gamma=0.12, power=1, lambda_min=5).
    """

    def __init__(self, in_features: int, out_features: int, m: int = 4, base: float = 1000.0,
                 gamma: float = 0.12, power: float = 1.0, lambda_min: float = 5.0) -> None:
        super().__init__(in_features, out_features)
        if int(m) != m or not 1 <= m <= 5:
            raise ValueError(f"SphereFace margin m must be an integer in 1..5, got {m!r}")
        self.m = int(m)
        self.base, self.gamma, self.power, self.lambda_min = base, gamma, power, lambda_min
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    @property
    def lamb(self) -> float:
        it = float(self.iteration)
        return max(self.lambda_min, self.base * (1.0 + self.gamma * it) ** -self.power)

    def psi(self, cos_t: torch.Tensor) -> torch.Tensor:
        theta = torch.acos(cos_t)
        k = torch.floor(self.m * theta / math.pi)
        sign = 1.0 - 2.0 * torch.remainder(k, 2.0)  # (-1)^k
        return sign * torch.cos(self.m * theta) - 2.0 * k

    def forward(self, embeddings: torch.Tensor,
                labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        cos = self.cosine(embeddings)
        norm = embeddings.norm(dim=1, keepdim=True)
        if labels is None:
            return cos * norm
        labels = self._check_labels(labels, cos)
        lamb = self.lamb
        if self.training:
            self.iteration += 1
        target = cos.gather(1, labels[:, None])
        blended = (lamb * target + self.psi(target)) / (1.0 + lamb)
        return cos.scatter(1, labels[:, None], blended) * norm


class AdaFaceHead(CosineHead):
    """Quality-adaptive margin (Kim et al., AdaFace, CVPR 2022).

    The feature norm |x| stands in for image quality. It is standardised with running batch
    statistics, ``z = clip(h * (|x| - mean) / (std + eps), -1, 1)`` (mean and std are
    exponential moving averages with weight ``t_alpha`` on the current batch, the norm taken
    without gradient), and sets the two margins of the target logit
    ``s * (cos(t + g_ang) - g_add)`` with ``g_ang = -m z`` and ``g_add = m + m z``: a
    high-quality face (z -> 1) gets an ArcFace-like angular margin, a low-quality one (z -> -1)
    a CosFace-like additive one, an average one a mild mixture. The angle ``t + g_ang`` is
    clipped into [eps, pi - eps].
    """

    def __init__(self, in_features: int, out_features: int, s: float = 64.0, m: float = 0.4,
                 h: float = 0.333, t_alpha: float = 0.01) -> None:
        super().__init__(in_features, out_features)
        if s <= 0 or m < 0 or h <= 0 or not 0 < t_alpha <= 1:
            raise ValueError(f"need s > 0, m >= 0, h > 0, 0 < t_alpha <= 1; got s={s}, m={m}, "
                             f"h={h}, t_alpha={t_alpha}")
        self.s, self.m, self.h, self.t_alpha = float(s), float(m), float(h), float(t_alpha)
        self.eps = 1e-3
        # Starting statistics of the paper's code: a typical early-training norm and a wide
        # spread, so that the first batches get nearly the plain margin m.
        self.register_buffer("batch_mean", torch.full((1,), 20.0))
        self.register_buffer("batch_std", torch.full((1,), 100.0))

    def forward(self, embeddings: torch.Tensor,
                labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        cos = self.cosine(embeddings).clamp(-1 + self.eps, 1 - self.eps)
        if labels is None:
            return cos * self.s
        labels = self._check_labels(labels, cos)
        norms = embeddings.detach().norm(dim=1, keepdim=True).clamp(0.001, 100.0)
        if self.training and norms.shape[0] > 0:
            with torch.no_grad():
                a = self.t_alpha
                self.batch_mean.mul_(1 - a).add_(a * norms.mean())
                if norms.shape[0] > 1:  # one sample has no spread: keep the running value
                    self.batch_std.mul_(1 - a).add_(a * norms.std())
        z = ((norms - self.batch_mean) / (self.batch_std + self.eps) * self.h).clamp(-1.0, 1.0)
        target = cos.gather(1, labels[:, None])
        theta = torch.acos(target) - self.m * z
        margined = torch.cos(theta.clamp(self.eps, math.pi - self.eps)) - (self.m + self.m * z)
        return cos.scatter(1, labels[:, None], margined) * self.s


class ClassifierHead(nn.Module):
    """Plain linear classifier (softmax over W x + b); labels are accepted and ignored."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.fc = nn.Linear(self.in_features, self.out_features, bias=bias)

    def forward(self, embeddings: torch.Tensor,
                labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.fc(embeddings)


_HEADS = {
    "arcface": ArcFaceHead,
    "cosface": CosFaceHead,
    "sphereface": SphereFaceHead,
    "am_softmax": AMSoftmaxHead,
    "classifier": ClassifierHead,
    "combined": CombinedMarginHead,
    "adaface": AdaFaceHead,
}


def head_settings(name: str) -> tuple:
    """The hyper-parameter names head ``name`` takes (s, m, h, t_alpha, m1, m2, m3, ...)."""
    try:
        cls = _HEADS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown network_head {name!r}; valid: {', '.join(HEAD_NAMES)}") \
            from None
    skip = {"self", "in_features", "out_features"}
    return tuple(p for p in inspect.signature(cls.__init__).parameters if p not in skip)


def check_head_settings(name: str, settings: dict, where: str = "head") -> None:
    """Refuse settings head ``name`` does not take, naming them and the ones it does."""
    valid = head_settings(name)
    wrong = sorted(set(settings) - set(valid))
    if wrong:
        raise ValueError(f"{where}: network_head {name!r} takes no {', '.join(wrong)} "
                         f"(its settings: {', '.join(valid) or 'none'})")


def current_settings(head: nn.Module) -> dict:
    """The hyper-parameters a head was built with (what ``head.json`` records, so that
    ``get_head(name, ..., **settings)`` rebuilds the same head)."""
    name = next((n for n, cls in _HEADS.items() if type(head) is cls), None)
    if name is None:
        raise ValueError(f"{type(head).__name__} is not one of {', '.join(HEAD_NAMES)}")
    out = {}
    for key in head_settings(name):
        if key == "bias":
            out[key] = head.fc.bias is not None
        elif hasattr(head, key):
            value = getattr(head, key)
            out[key] = value if isinstance(value, bool) else float(value)
    return out


def get_head(name: str, in_features: int, out_features: int, **kw) -> nn.Module:
    """Build head ``name`` (see ``HEAD_NAMES``); keyword arguments override its defaults
    (``head_settings(name)`` lists them; others are refused by name)."""
    check_head_settings(name, kw)
    return _HEADS[name](in_features, out_features, **kw)
