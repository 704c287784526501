"""The RetinaFace network a detection run starts from: random (seeded), with a pretrained
backbone (the shipped mnet's body, or torchvision's ImageNet ResNet-50 for 'resnet'), or the
weights of a trained model; which batch norms stay frozen and which parameters SGD updates."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from face_perception.detection.config import get_config
from face_perception.detection.weights import WeightsError

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
# ImageNet ResNet-50 from torchvision, the pretrained backbone of 'resnet' training.
# torchvision publishes the first 8 hex digits of each file's sha256 in its name; that prefix is
# what we can verify (as torch.hub does).
BACKBONE_URLS = {
    "resnet": {"url": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
               "sha256_prefix": "0676ba61", "filename": "resnet50-0676ba61.pth"},
}

FreezeBN = Union[str, bool]  # 'auto' (batch norms that came pretrained), True (all), False


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


def download_imagenet_backbone(folder: Path) -> Path:
    """torchvision's ImageNet ResNet-50 in ``folder`` (downloaded once), checked against the
    sha256 prefix in its name."""
    from face_perception.download import DownloadError, download_file
    from face_perception.files import sha256_file

    entry = BACKBONE_URLS["resnet"]
    dest = Path(folder) / entry["filename"]
    if not dest.is_file():
        download_file(entry["url"], dest, None)
    if not sha256_file(dest).startswith(entry["sha256_prefix"]):
        dest.unlink()
        raise DownloadError(f"{entry['url']}: sha256 does not start with "
                            f"{entry['sha256_prefix']} (damaged download removed)")
    return dest


def attach_backbone(model, body_state: dict, backbone: str) -> set[str]:
    """Load pretrained backbone weights into ``model.body``; returns the batch norms that came
    pretrained (kept frozen by freeze_bn='auto')."""
    missing, unexpected = model.body.load_state_dict(body_state, strict=False)
    if unexpected or len(missing) == len(model.body.state_dict()):
        raise WeightsError(
            f"pretrained backbone does not fit the {backbone} network "
            f"(unexpected keys {unexpected[:3]}, {len(missing)} missing)")
    return bn_names(model, "body.")


def initial_model(backbone: str, seed: int, from_scratch: bool,
                  imagenet_file: Optional[Path] = None):
    """(model, pretrained batch norms) of a new run: a random network and, unless
    ``from_scratch``, a pretrained backbone (mnet: the shipped detector's body; resnet: the
    ImageNet file ``imagenet_file``)."""
    model = new_model(backbone, seed)
    if from_scratch:
        return model, set()
    if backbone == "mnet":
        body = mnet_backbone_state()
    else:
        if imagenet_file is None:
            raise ValueError("a resnet run with a pretrained backbone needs the ImageNet "
                             "ResNet-50 file (download_imagenet_backbone)")
        body = imagenet_backbone_state(Path(imagenet_file))
    return model, attach_backbone(model, body, backbone)


def trained_model(backbone: str, seed: int, state_dict: dict, source: object):
    """(model, pretrained batch norms) of a run that continues trained weights: all of its
    batch norms keep their statistics when fine-tuning."""
    model = new_model(backbone, seed)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise WeightsError(f"{source} does not fit a RetinaFace {backbone}: {exc}") from None
    return model, bn_names(model)


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


def pretrained_detector_state(backbone: str, dest_dir: Path, url: Optional[str] = None,
                              sha256: Optional[str] = None) -> dict:
    """The published detector's weights: for mnet with no ``url`` the shipped converted
    weights (no network), else downloaded into ``dest_dir`` with their sha256 checked."""
    from face_perception.detection import weights

    if backbone == "mnet" and url is None:
        return weights.mnet_state_dict()
    file = weights.download(backbone, url=url, sha256=sha256, dest_dir=dest_dir)
    # download_file has verified the sha256; the file holds tensors only.
    return weights.pretrained_state_dict(backbone, Path(file))
