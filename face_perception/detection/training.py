"""RetinaFace training on WIDER-format samples: network set-up (pretrained backbone, frozen batch
norms), the SGD loop with its step schedule, and checkpoints that resume a run exactly."""
from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from face_perception.detection.augment import Annotations, TrainTransform
from face_perception.detection.config import get_config
from face_perception.detection.weights import WeightsError, load_verified
from face_perception.detection.wider import WiderSample
from face_perception.files import atomic_write_bytes, atomic_write_text, sha256_bytes
from face_perception.imageio import read_image_bgr

CHECKPOINT_FORMAT = "face_perception.retinaface.checkpoint"
CHECKPOINT_VERSION = 1
# The first convolution and its batch norm, per backbone. The network sees raw pixels minus the
# mean (values up to +-150), so this layer's weights are tiny and its gradients huge; only a
# batch norm that re-normalises with batch statistics keeps SGD stable there. When that batch
# norm is frozen (pretrained weights; the shipped mnet has its BN folded into this conv), one
# step at lr 1e-4 already wrecks the layer, so the stem is frozen with it (as Detectron does).
STEM = {"mnet": ("body.stage1.0.",), "resnet": ("body.conv1.", "body.bn1.")}
STEM_BN = {"mnet": "body.stage1.0.1", "resnet": "body.bn1"}
# torchvision's ImageNet models take RGB in [0, 1] normalised by mean and std; RetinaFace takes
# BGR pixels minus (104, 117, 123) (the same means, BGR order, 0..255). Scaling conv1 by 1/std and
# reversing its input channels makes the ImageNet backbone compute the same features.
IMAGENET_STD_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)

FreezeBN = Union[str, bool]  # 'auto' (batch norms that came pretrained), True (all), False


def parse_lr_steps(lr_steps: Union[str, Sequence[int]]) -> list[int]:
    """'55,68,80' -> [55, 68, 80]; steps <= 0 (the seed's default '0') mean no decay."""
    if isinstance(lr_steps, str):
        parts = [p.strip() for p in lr_steps.split(",") if p.strip()]
        try:
            steps = [int(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"lr_steps must be comma-separated epoch numbers like '55,68,80', got "
                f"{lr_steps!r}") from None
    else:
        steps = [int(s) for s in lr_steps]
    return sorted(s for s in steps if s > 0)


def lr_at(lr: float, lr_steps: Sequence[int], epoch: int) -> float:
    """Learning rate of ``epoch``: ``lr`` divided by 10 at each step already reached."""
    return lr * (0.1 ** sum(1 for s in lr_steps if epoch >= s))


# ------------------------------------------------------------------------------------------------
# The network before training
# ------------------------------------------------------------------------------------------------

def new_model(backbone: str, seed: int):
    """A randomly initialised RetinaFace, seeded without touching the caller's global torch RNG."""
    import torch

    from face_perception.detection.retinaface import RetinaFace

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RetinaFace(get_config(backbone))


def bn_names(model, prefix: str = "") -> set[str]:
    """Names of the model's batch-norm layers under ``prefix``."""
    import torch

    return {name for name, m in model.named_modules()
            if isinstance(m, torch.nn.BatchNorm2d) and name.startswith(prefix)}


def mnet_backbone_state() -> dict:
    """The shipped detector's MobileNet body: the only offline mnet backbone there is."""
    from face_perception.detection import weights

    state = weights.mnet_state_dict()
    return {k[len("body."):]: v for k, v in state.items() if k.startswith("body.")}


def imagenet_backbone_state(path: Path) -> dict:
    """torchvision's ImageNet ResNet-50 file -> the RetinaFace 'resnet' body (see
    IMAGENET_STD_RGB); the classifier is dropped."""
    import torch

    from face_perception.detection import weights

    state = weights.pretrained_state_dict("resnet", path)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if "conv1.weight" in state:
        std = torch.tensor(IMAGENET_STD_RGB, dtype=state["conv1.weight"].dtype)
        state["conv1.weight"] = (state["conv1.weight"] / std[None, :, None, None]).flip(1)
    return state


def attach_backbone(model, body_state: dict, backbone: str) -> set[str]:
    """Load pretrained backbone weights into ``model.body``; returns the batch norms that came
    pretrained (kept frozen by freeze_bn='auto')."""
    missing, unexpected = model.body.load_state_dict(body_state, strict=False)
    if unexpected or len(missing) == len(model.body.state_dict()):
        raise WeightsError(
            f"pretrained backbone does not fit the {backbone} network "
            f"(unexpected keys {unexpected[:3]}, {len(missing)} missing)")
    return bn_names(model, "body.")


def frozen_bn(model, freeze_bn: FreezeBN, pretrained_bn: set[str]) -> set[str]:
    return (bn_names(model) if freeze_bn is True
            else pretrained_bn if freeze_bn == "auto" else set())


def set_train_mode(model, freeze_bn: FreezeBN, pretrained_bn: set[str]) -> None:
    """Training mode, except the frozen batch norms: they keep their running statistics (their
    affine weights still learn)."""
    model.train()
    modules = dict(model.named_modules())
    for name in frozen_bn(model, freeze_bn, pretrained_bn):
        modules[name].eval()


def trainable_parameters(model, backbone: str, freeze_bn: FreezeBN,
                         pretrained_bn: set[str]) -> list:
    """Parameters SGD updates: all but the stem when the stem's batch norm is frozen."""
    stem_bn = STEM_BN[backbone]
    stem_frozen = freeze_bn is True or (freeze_bn == "auto" and stem_bn in pretrained_bn)
    params = []
    for name, param in model.named_parameters():
        param.requires_grad_(not (stem_frozen and name.startswith(STEM[backbone])))
        if param.requires_grad:
            params.append(param)
    return params


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------

class TrainSet:
    """Training samples -> augmented (tensor, targets); randomness keyed by (seed, epoch, index).

    Keying every sample's augmentation by (seed, epoch, index) makes an epoch's batches the same
    whether training ran through or resumed from a checkpoint, and independent of worker count.
    """

    def __init__(self, samples: list[WiderSample], transform: TrainTransform, seed: int):
        self.samples = samples
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        import torch

        sample = self.samples[index]
        image = read_image_bgr(sample.image_path)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        ann = Annotations(sample.boxes.copy(), sample.landmarks.copy(),
                          sample.has_landmarks.copy())
        tensor, targets = self.transform(image, ann, rng)
        return torch.from_numpy(tensor), {k: torch.from_numpy(v) for k, v in targets.items()}


def collate(batch):
    import torch

    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------

def checkpoint_path(folder: Union[str, Path], name: str, epoch: int) -> Path:
    """``<folder>/<name>-<epoch:04d>.pth``, next to its ``.sha256`` sidecar."""
    return Path(folder or ".") / f"{name}-{epoch:04d}.pth"


@dataclass
class Checkpoint:
    """The state a run needs to continue exactly where checkpoint ``epoch`` left it."""

    epoch: int
    model_state: dict
    optimizer_state: dict
    torch_rng: object
    pretrained_bn: set[str]
    history: dict


def save_checkpoint(path: Path, *, backbone: str, epoch: int, model, optimizer,
                    pretrained_bn: set[str], history: dict, seed: int, image_size: int) -> Path:
    """Write weights, optimizer state, RNG state and history, plus a ``.sha256`` sidecar."""
    import torch

    from face_perception.detection.model_folder import torch_bytes

    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "backbone": backbone,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "pretrained_bn": sorted(pretrained_bn),
        "history": json.dumps(history),
        "seed": seed,
        "image_size": image_size,
    }
    data = torch_bytes(state)
    atomic_write_bytes(path, data)
    atomic_write_text(path.with_name(path.name + ".sha256"), sha256_bytes(data) + "\n")
    return path


def load_checkpoint(path: Path, backbone: str, seed: int, image_size: int) -> Checkpoint:
    """Read a checkpoint after its sha256 check (tensors only); refuses another backbone and
    warns when ``seed``/``image_size`` differ from the run that wrote it."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = load_verified(path)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} is not a RetinaFaceLearner checkpoint")
    if state["backbone"] != backbone:
        raise WeightsError(f"{path} holds a {state['backbone']!r} model but the learner's "
                           f"backbone is {backbone!r}")
    for key, value in (("seed", seed), ("image_size", image_size)):
        if state[key] != value:
            warnings.warn(f"resuming {path} with {key}={value} (checkpoint: {state[key]}): "
                          "the run will not repeat the original one",
                          RuntimeWarning, stacklevel=3)
    history = json.loads(state["history"])
    history["val"] = [tuple(v) for v in history["val"]]
    return Checkpoint(int(state["epoch"]), state["model"], state["optimizer"],
                      state["torch_rng"], set(state["pretrained_bn"]), history)


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------

@dataclass
class TrainSettings:
    """Hyper-parameters of one run (the learner's constructor arguments, checked there)."""

    backbone: str
    lr: float
    lr_steps: list[int]
    epochs: int
    batch_size: int
    momentum: float
    weight_decay: float
    image_size: int
    seed: int
    shuffle: bool = True
    flip: bool = False
    num_workers: int = 0
    freeze_bn: FreezeBN = "auto"
    device: str = "cpu"
    log_after: int = 0
    checkpoint_after: int = 0


def train(model, samples: list[WiderSample], settings: TrainSettings, *,
          pretrained_bn: set[str], resume: Optional[Checkpoint] = None,
          checkpoint_file: Optional[Callable[[int], Path]] = None,
          validate: Optional[Callable[[int], Optional[dict]]] = None,
          epoch_done: Optional[Callable[[int], None]] = None,
          say: Callable[..., None] = lambda *a: None, verbose: bool = True) -> tuple[dict, int]:
    """Train ``model`` (already on ``settings.device``) from epoch 0 or from ``resume`` up to
    ``settings.epochs``; returns the history ``{"loss", "loss_parts", "lr", "val"}`` and the
    number of iterations done since epoch 0.

    After each epoch: ``epoch_done(n)``, a checkpoint every ``checkpoint_after`` epochs
    (``checkpoint_file(n)``), then ``validate(n)``, whose non-None result joins ``history["val"]``.
    The model is left in eval mode.
    """
    import torch

    from face_perception.detection.loss import MultiBoxLoss
    from face_perception.detection.priors import prior_boxes_for

    s = settings
    cfg = get_config(s.backbone)
    optimizer = torch.optim.SGD(trainable_parameters(model, s.backbone, s.freeze_bn,
                                                     pretrained_bn),
                                lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    start_epoch, history = 0, {"loss": [], "loss_parts": [], "lr": [], "val": []}
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer_state)
        torch.set_rng_state(resume.torch_rng)
        start_epoch, history = resume.epoch, resume.history
    train_set = TrainSet(samples, TrainTransform(s.image_size, flip=s.flip), s.seed)
    priors = torch.from_numpy(
        prior_boxes_for(cfg, s.image_size, s.image_size).copy()).to(s.device)
    criterion = MultiBoxLoss(cfg["variance"], loc_weight=cfg["loc_weight"])
    iteration = start_epoch * ((len(samples) + s.batch_size - 1) // s.batch_size)
    for epoch in range(start_epoch, s.epochs):
        lr = lr_at(s.lr, s.lr_steps, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_set.epoch = epoch
        order = (np.random.default_rng([s.seed, epoch]).permutation(len(samples))
                 if s.shuffle else np.arange(len(samples)))
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(train_set, order.tolist()), batch_size=s.batch_size,
            shuffle=False, num_workers=s.num_workers, collate_fn=collate)
        set_train_mode(model, s.freeze_bn, pretrained_bn)
        sums = {"total": 0.0, "loc": 0.0, "conf": 0.0, "landmarks": 0.0}
        count, started = 0, time.monotonic()
        for images, targets in loader:
            images = images.to(s.device)
            loss, parts = criterion(model(images), priors, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iteration += 1
            count += 1
            sums["total"] += float(loss.detach())
            for key in ("loc", "conf", "landmarks"):
                sums[key] += parts[key]
            if verbose and s.log_after and iteration % s.log_after == 0:
                say(f"epoch {epoch + 1}/{s.epochs} iter {iteration}: loss "
                    f"{float(loss.detach()):.4f} (loc {parts['loc']:.3f} conf "
                    f"{parts['conf']:.3f} landmarks {parts['landmarks']:.3f}) lr {lr:g}")
        mean = {k: v / max(count, 1) for k, v in sums.items()}
        history["loss"].append(mean["total"])
        history["loss_parts"].append(mean)
        history["lr"].append(lr)
        if epoch_done is not None:
            epoch_done(epoch + 1)
        say(f"epoch {epoch + 1}/{s.epochs}: mean loss {mean['total']:.4f} "
            f"({time.monotonic() - started:.1f} s)")
        if checkpoint_file is not None and s.checkpoint_after \
                and (epoch + 1) % s.checkpoint_after == 0:
            save_checkpoint(checkpoint_file(epoch + 1), backbone=s.backbone, epoch=epoch + 1,
                            model=model, optimizer=optimizer, pretrained_bn=pretrained_bn,
                            history=history, seed=s.seed, image_size=s.image_size)
        if validate is not None:
            result = validate(epoch + 1)
            if result is not None:
                history["val"].append((epoch + 1, result))
                say(f"epoch {epoch + 1}: val AP {result['ap']:.4f} "
                    f"recall {result['recall']:.4f}")
    model.eval()
    return history, iteration
