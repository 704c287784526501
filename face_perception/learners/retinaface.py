"""RetinaFaceLearner: the seed's (OpenDR) training / evaluation / inference API over our RetinaFace.

Training runs the PyTorch network of ``face_perception.detection`` on WIDER-format data with the
multibox loss; inference and evaluation go through the same ``Detector`` the node and the CLI use.
``infer`` returns ``face_perception.types.Face`` objects (box, score, 5 landmarks) instead of
OpenDR ``BoundingBox`` objects. See docs/detection_training.md.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from face_perception.detection.augment import Annotations, TrainTransform
from face_perception.detection.wider import WiderFaceDataset, WiderSample
from face_perception.download import DownloadError, download_file
from face_perception.files import sha256_file
from face_perception.imageio import load_bgr, read_image_bgr
from face_perception.types import Face

log = logging.getLogger(__name__)

BACKBONES = ("resnet", "mnet")
METADATA_VERSION = 1
CHECKPOINT_FORMAT = "face_perception.retinaface.checkpoint"
# ImageNet ResNet-50 from torchvision, used as the pretrained backbone of 'resnet' training.
# torchvision publishes the first 8 hex digits of each file's sha256 in its name; that prefix is
# what we can verify (as torch.hub does).
BACKBONE_URLS = {
    "resnet": {"url": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
               "sha256_prefix": "0676ba61", "filename": "resnet50-0676ba61.pth"},
}
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
# Score threshold for evaluation: low, so the precision/recall curve covers the whole range.
EVAL_SCORE_THRESHOLD = 0.02
# Test-time pyramid of eval(pyramid=True): factors on top of the base size.
EVAL_PYRAMID = (0.5, 1.0, 1.5)


class RetinaFaceLearnerError(RuntimeError):
    """A learner operation that cannot run in the learner's current state or on these files."""


def _pick_device(device: str) -> str:
    import torch

    if device not in ("cuda", "cpu") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        warnings.warn("CUDA is not available; RetinaFaceLearner falls back to the CPU",
                      RuntimeWarning, stacklevel=3)
        return "cpu"
    return str(device)


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


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _torch_bytes(obj) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _load_checked(path: Path, sha256: Optional[str]):
    """torch.load (tensors only) after checking the file's sha256 when one is known."""
    import torch

    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    if sha256 is not None and sha256_file(path) != sha256:
        raise RetinaFaceLearnerError(
            f"checksum mismatch for {path}: the file is truncated or was modified "
            f"(expected sha256 {sha256})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad archive
        raise RetinaFaceLearnerError(f"cannot read {path}: {exc}") from exc


def as_image(img) -> np.ndarray:
    """Seed images (objects with ``.opencv()``, which gives BGR HxWx3), paths and BGR arrays ->
    validated BGR uint8."""
    if hasattr(img, "opencv") and callable(img.opencv):
        return load_bgr(img.opencv())
    return load_bgr(img)


def as_samples(dataset) -> list[WiderSample]:
    """Accept a WiderFaceDataset, a list of WiderSample, a WIDER root or a label.txt path."""
    if isinstance(dataset, (str, os.PathLike)):
        path = Path(dataset)
        if path.is_file():
            return list(WiderFaceDataset.from_label_file(path))
        return list(WiderFaceDataset(path, splits=["train"]))
    if isinstance(dataset, WiderFaceDataset):
        return list(dataset.samples)
    samples = list(dataset)
    if not all(isinstance(s, WiderSample) for s in samples):
        raise TypeError("dataset must be a WiderFaceDataset, a sequence of WiderSample, a WIDER "
                        f"root folder or a label.txt path; got {type(dataset).__name__}")
    return samples


class _TrainSet:
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


def _collate(batch):
    import torch

    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


class RetinaFaceLearner:
    """Train, evaluate and run RetinaFace (backbones 'resnet' and 'mnet').

    The seed's constructor parameters keep their names and defaults. Extra keyword-only
    parameters: ``image_size`` (square training crop, default the backbone's 640 / 840),
    ``seed`` (augmentation, shuffling and initialisation), ``num_workers`` (DataLoader processes),
    ``freeze_bn`` ('auto': batch-norm layers that came from pretrained weights keep their
    statistics, as fine-tuning with batches of 2 cannot estimate new ones; True/False for all).
    """

    def __init__(self, backbone: str = "resnet", lr: float = 0.0001, batch_size: int = 2,
                 checkpoint_after_iter: int = 0, checkpoint_load_iter: int = 0,
                 lr_steps: str = "0", epochs: int = 100, momentum: float = 0.9,
                 weight_decay: float = 5e-4, log_after: int = 20, prefix: str = "",
                 shuffle: bool = True, flip: bool = False, val_after: int = 5,
                 temp_path: str = "", device: str = "cuda", *, image_size: Optional[int] = None,
                 seed: int = 0, num_workers: int = 0, freeze_bn: Union[str, bool] = "auto"):
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {list(BACKBONES)}, got {backbone!r}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if int(epochs) < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        for name, value in (("checkpoint_after_iter", checkpoint_after_iter),
                            ("checkpoint_load_iter", checkpoint_load_iter),
                            ("val_after", val_after), ("log_after", log_after)):
            if int(value) < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if freeze_bn not in ("auto", True, False):
            raise ValueError(f"freeze_bn must be 'auto', True or False, got {freeze_bn!r}")
        self.backbone = backbone
        self.lr = float(lr)
        self.batch_size = int(batch_size)
        self.checkpoint_after_iter = int(checkpoint_after_iter)
        self.checkpoint_load_iter = int(checkpoint_load_iter)
        self.lr_steps = lr_steps
        self._lr_steps = parse_lr_steps(lr_steps)
        self.epochs = int(epochs)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.log_after = int(log_after)
        self.prefix = prefix
        self.shuffle = bool(shuffle)
        self.flip = bool(flip)
        self.val_after = int(val_after)
        self.temp_path = temp_path
        self.device = _pick_device(device)
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.freeze_bn = freeze_bn
        from face_perception.detection.config import get_config

        self.cfg = get_config(backbone)
        self.image_size = int(image_size or self.cfg["image_size"])
        self.model = None            # torch RetinaFace, built by fit/load
        self.onnx_path: Optional[Path] = None  # set by optimize() / load() of an optimized model
        self._onnx_bytes: Optional[bytes] = None
        self._pretrained_bn: set[str] = set()  # BN layers whose weights came pretrained
        self._detectors: dict = {}
        self.epochs_trained = 0
        self.onnx_parity: Optional[float] = None  # max abs diff torch vs ONNX of optimize()

    # ------------------------------------------------------------------------------------------
    # Model construction
    # ------------------------------------------------------------------------------------------

    def _new_model(self):
        import torch

        from face_perception.detection.retinaface import RetinaFace

        # Seeded initialisation without touching the caller's global torch RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return RetinaFace(self.cfg)

    def _bn_names(self, model, prefix: str = "") -> set[str]:
        import torch

        return {name for name, m in model.named_modules()
                if isinstance(m, torch.nn.BatchNorm2d) and name.startswith(prefix)}

    def _init_model(self, from_scratch: bool, verbose: bool) -> None:
        """Random network; unless ``from_scratch``, with a pretrained backbone (seed semantics)."""
        model = self._new_model()
        self._pretrained_bn = set()
        if not from_scratch:
            body = self._pretrained_backbone(verbose)
            missing, unexpected = model.body.load_state_dict(body, strict=False)
            if unexpected or len(missing) == len(model.body.state_dict()):
                raise RetinaFaceLearnerError(
                    f"pretrained backbone does not fit the {self.backbone} network "
                    f"(unexpected keys {unexpected[:3]}, {len(missing)} missing)")
            self._pretrained_bn = self._bn_names(model, "body.")
        self.model = model.to(self.device)
        self._invalidate()

    def _pretrained_backbone(self, verbose: bool) -> dict:
        """Backbone weights: mnet from the shipped detector, resnet ImageNet by download."""
        from face_perception.detection import weights

        if self.backbone == "mnet":
            # The shipped detector's MobileNet body is the only offline mnet backbone we have.
            state = weights.mnet_state_dict()
            return {k[len("body."):]: v for k, v in state.items() if k.startswith("body.")}
        import torch

        path = self.download(mode="backbone", verbose=verbose)
        state = weights.normalize_checkpoint(_load_checked(Path(path), None))
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        if "conv1.weight" in state:
            std = torch.tensor(IMAGENET_STD_RGB, dtype=state["conv1.weight"].dtype)
            state["conv1.weight"] = (state["conv1.weight"] / std[None, :, None, None]).flip(1)
        return state

    def _require_model(self):
        if self.model is None:
            raise RetinaFaceLearnerError(
                "no model: call load(path) (e.g. after download(mode='pretrained')) or fit() "
                "first")
        return self.model

    def _invalidate(self) -> None:
        """Weights changed: detectors built on the old weights and any ONNX export are stale."""
        self._detectors = {}
        self.onnx_path = None
        self._onnx_bytes = None

    def _set_train_mode(self, model) -> None:
        model.train()
        frozen = (self._bn_names(model) if self.freeze_bn is True
                  else self._pretrained_bn if self.freeze_bn == "auto" else set())
        modules = dict(model.named_modules())
        for name in frozen:
            modules[name].eval()  # keep running statistics; affine weights still learn

    def _trainable(self, model) -> list:
        """Parameters SGD updates: all but the stem when the stem's batch norm is frozen."""
        stem_bn = STEM_BN[self.backbone]
        frozen_bn = (self.freeze_bn is True
                     or (self.freeze_bn == "auto" and stem_bn in self._pretrained_bn))
        params = []
        for name, param in model.named_parameters():
            param.requires_grad_(not (frozen_bn and name.startswith(STEM[self.backbone])))
            if param.requires_grad:
                params.append(param)
        return params

    # ------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------

    def checkpoint_path(self, epoch: int) -> Path:
        """Checkpoint file of ``epoch`` under temp_path: ``<prefix>-<epoch:04d>.pth``."""
        name = self.prefix or f"retinaface_{self.backbone}"
        return Path(self.temp_path or ".") / f"{name}-{epoch:04d}.pth"

    def _lr_at(self, epoch: int) -> float:
        return self.lr * (0.1 ** sum(1 for s in self._lr_steps if epoch >= s))

    def fit(self, dataset, val_dataset=None, from_scratch: bool = False, silent: bool = False,
            verbose: bool = True) -> dict:
        """Train for ``epochs`` epochs; returns ``{"loss": [...], "loss_parts": [...],
        "lr": [...], "val": [(epoch, eval dict)], "epochs": n, "iterations": n}``.

        Starts from the loaded model when there is one, else from a new network with a
        pretrained backbone (or random, ``from_scratch=True``). With ``checkpoint_load_iter`` N
        it resumes exactly from ``checkpoint_path(N)``: weights, optimizer, epoch and RNG state.
        """
        import torch

        from face_perception.detection.loss import MultiBoxLoss
        from face_perception.detection.priors import prior_boxes_for

        say = (lambda *a: None) if silent else (lambda *a: print(*a, flush=True))
        samples = as_samples(dataset)
        if not samples:
            raise ValueError("training dataset is empty")
        history = {"loss": [], "loss_parts": [], "lr": [], "val": []}
        start_epoch, resume = 0, None
        if self.checkpoint_load_iter > 0:
            resume = self._load_checkpoint(self.checkpoint_load_iter)
            start_epoch, history = resume["epoch"], resume["history"]
            say(f"resumed from {self.checkpoint_path(self.checkpoint_load_iter)} "
                f"(epoch {start_epoch})")
        elif self.model is None:
            self._init_model(from_scratch, verbose and not silent)
        model = self.model.to(self.device)
        optimizer = torch.optim.SGD(self._trainable(model), lr=self.lr, momentum=self.momentum,
                                    weight_decay=self.weight_decay)
        if resume is not None:
            optimizer.load_state_dict(resume["optimizer"])
            torch.set_rng_state(resume["torch_rng"])
        self._invalidate()

        train_set = _TrainSet(samples, TrainTransform(self.image_size, flip=self.flip),
                              self.seed)
        priors = torch.from_numpy(
            prior_boxes_for(self.cfg, self.image_size, self.image_size).copy()).to(self.device)
        criterion = MultiBoxLoss(self.cfg["variance"], loc_weight=self.cfg["loc_weight"])
        iteration = start_epoch * ((len(samples) + self.batch_size - 1) // self.batch_size)
        for epoch in range(start_epoch, self.epochs):
            lr = self._lr_at(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            train_set.epoch = epoch
            order = (np.random.default_rng([self.seed, epoch]).permutation(len(samples))
                     if self.shuffle else np.arange(len(samples)))
            loader = torch.utils.data.DataLoader(
                torch.utils.data.Subset(train_set, order.tolist()), batch_size=self.batch_size,
                shuffle=False, num_workers=self.num_workers, collate_fn=_collate)
            self._set_train_mode(model)
            sums = {"total": 0.0, "loc": 0.0, "conf": 0.0, "landmarks": 0.0}
            count, started = 0, time.monotonic()
            for images, targets in loader:
                images = images.to(self.device)
                loss, parts = criterion(model(images), priors, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                iteration += 1
                count += 1
                sums["total"] += float(loss.detach())
                for key in ("loc", "conf", "landmarks"):
                    sums[key] += parts[key]
                if verbose and self.log_after and iteration % self.log_after == 0:
                    say(f"epoch {epoch + 1}/{self.epochs} iter {iteration}: loss "
                        f"{float(loss.detach()):.4f} (loc {parts['loc']:.3f} conf "
                        f"{parts['conf']:.3f} landmarks {parts['landmarks']:.3f}) lr {lr:g}")
            mean = {k: v / max(count, 1) for k, v in sums.items()}
            history["loss"].append(mean["total"])
            history["loss_parts"].append(mean)
            history["lr"].append(lr)
            self.epochs_trained = epoch + 1
            say(f"epoch {epoch + 1}/{self.epochs}: mean loss {mean['total']:.4f} "
                f"({time.monotonic() - started:.1f} s)")
            if self.checkpoint_after_iter and (epoch + 1) % self.checkpoint_after_iter == 0:
                self._save_checkpoint(epoch + 1, optimizer, history)
            if val_dataset is not None and self.val_after and (epoch + 1) % self.val_after == 0:
                self._invalidate()
                result = self.eval(val_dataset, verbose=False, pyramid=False, flip=False,
                                   target_size=self.image_size, max_size=2 * self.image_size)
                history["val"].append((epoch + 1, result))
                say(f"epoch {epoch + 1}: val AP {result['ap']:.4f} recall {result['recall']:.4f}")
        model.eval()
        self._invalidate()
        history["epochs"] = self.epochs_trained
        history["iterations"] = iteration
        return history

    def _save_checkpoint(self, epoch: int, optimizer, history: dict) -> Path:
        import torch

        state = {
            "format": CHECKPOINT_FORMAT,
            "version": METADATA_VERSION,
            "backbone": self.backbone,
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "pretrained_bn": sorted(self._pretrained_bn),
            "history": json.dumps(history),
            "seed": self.seed,
            "image_size": self.image_size,
        }
        data = _torch_bytes(state)
        path = self.checkpoint_path(epoch)
        _atomic_write(path, data)
        _atomic_write(path.with_name(path.name + ".sha256"), (_sha256_bytes(data) + "\n").encode())
        return path

    def _load_checkpoint(self, epoch: int) -> dict:
        """Load checkpoint ``epoch`` into the learner; returns epoch, history, optimizer state
        and torch RNG state for fit() to restore."""
        path = self.checkpoint_path(epoch)
        side = path.with_name(path.name + ".sha256")
        if not path.is_file():
            raise FileNotFoundError(
                f"checkpoint for epoch {epoch} not found: {path} (checkpoint_load_iter="
                f"{epoch}, temp_path={self.temp_path!r}, prefix={self.prefix!r})")
        if not side.is_file():
            raise RetinaFaceLearnerError(f"no checksum file {side} for checkpoint {path}")
        state = _load_checked(path, side.read_text().split()[0])
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise RetinaFaceLearnerError(f"{path} is not a RetinaFaceLearner checkpoint")
        if state["backbone"] != self.backbone:
            raise RetinaFaceLearnerError(
                f"{path} holds a {state['backbone']!r} model but the learner's backbone is "
                f"{self.backbone!r}")
        for key in ("seed", "image_size"):
            if state[key] != getattr(self, key):
                warnings.warn(f"resuming {path} with {key}={getattr(self, key)} (checkpoint: "
                              f"{state[key]}): the run will not repeat the original one",
                              RuntimeWarning, stacklevel=3)
        model = self._new_model()
        model.load_state_dict(state["model"])
        self.model = model.to(self.device)
        self._pretrained_bn = set(state["pretrained_bn"])
        self.epochs_trained = int(state["epoch"])
        history = json.loads(state["history"])
        history["val"] = [tuple(v) for v in history["val"]]
        return {"epoch": int(state["epoch"]), "history": history,
                "optimizer": state["optimizer"], "torch_rng": state["torch_rng"]}

    # ------------------------------------------------------------------------------------------
    # Inference and evaluation
    # ------------------------------------------------------------------------------------------

    def _detector(self, score_threshold: float, nms_threshold: float, target_size: int,
                  max_size: int, scales=None, flip: bool = False):
        """A Detector over the learner's current weights (ONNX after optimize(), else torch).

        The learner runs exactly the Detector code (resize, decode, NMS, TTA) the node uses.
        """
        from face_perception.detection.detector import Detector

        key = (score_threshold, nms_threshold, target_size, max_size,
               tuple(scales) if scales else None, flip)
        det = self._detectors.get(key)
        if det is None:
            model = self._require_model()
            common = dict(score_threshold=score_threshold, nms_threshold=nms_threshold,
                          target_size=target_size, max_size=max_size, scales=scales, flip=flip,
                          upscale=True)  # the seed's size rule enlarges small images
            if self.onnx_path is not None:
                det = Detector(backbone=self.backbone, backend="onnx", device=self.device,
                               model_path=str(self.onnx_path), **common)
            else:
                det = Detector.from_torch_model(model, device=self.device, **common)
            self._detectors[key] = det
        return det

    def infer(self, img, threshold: float = 0.8, nms_threshold: float = 0.4,
              scales: Sequence[int] = (1024, 1980), mask_thresh: float = 0.8) -> list[Face]:
        """Detect faces in one image; returns ``Face`` objects sorted by score.

        ``scales=[target, max]`` is the seed's size rule: the short side is resized to
        ``target`` unless that makes the long side exceed ``max``. ``mask_thresh`` is accepted
        for compatibility and unused: the masked-face mnet head of the seed is not shipped.
        """
        del mask_thresh  # documented as unused
        if len(scales) != 2:
            raise ValueError(f"scales must be [target_size, max_size], got {list(scales)}")
        image = as_image(img)
        det = self._detector(threshold, nms_threshold, int(scales[0]), int(scales[1]))
        return det.detect(image)

    def eval(self, dataset, verbose: bool = True, use_subset: bool = False,
             subset_size: int = 250, pyramid: bool = True, flip: bool = True,
             target_size: int = 1024, max_size: int = 1980,
             iou_threshold: float = 0.5) -> dict:
        """AP at IoU 0.5 (VOC all-point) and recall, overall and per WIDER difficulty.

        ``pyramid`` runs the image at several sizes (0.5x, 1x, 1.5x the base size), ``flip``
        adds the mirrored image; the passes are merged by the Detector (box voting). The base
        size follows infer()'s rule: short side ``target_size``, long side at most ``max_size``
        (defaults: the seed's 1024 / 1980). Detections down to score 0.02 feed the PR curve.
        Returns ``{"ap", "recall", "precision", "num_images", "num_faces", "easy": {...}, ...}``.
        """
        from face_perception.detection.evaluation import evaluate_detection_dataset

        samples = as_samples(dataset)
        if use_subset and len(samples) > subset_size:
            pick = np.random.default_rng(self.seed).choice(len(samples), subset_size,
                                                           replace=False)
            samples = [samples[i] for i in sorted(pick)]
        det = self._detector(EVAL_SCORE_THRESHOLD, 0.4, int(target_size), int(max_size),
                             scales=list(EVAL_PYRAMID) if pyramid else None, flip=flip)
        detections = []
        for i, sample in enumerate(samples):
            faces = det.detect(read_image_bgr(sample.image_path))
            detections.append((np.array([f.box for f in faces], np.float32).reshape(-1, 4),
                               np.array([f.score for f in faces], np.float32)))
            if verbose and (i + 1) % 50 == 0:
                print(f"eval: {i + 1}/{len(samples)} images", flush=True)
        scores = evaluate_detection_dataset(detections, samples, iou_threshold)
        result = scores["all"].as_dict()
        result["num_images"] = len(samples)
        for name, score in scores.items():
            if name != "all":
                result[name] = score.as_dict()
        if verbose:
            extra = " ".join(f"{k} AP {result[k]['ap']:.4f}" for k in scores if k != "all")
            print(f"eval on {len(samples)} images: AP {result['ap']:.4f} recall "
                  f"{result['recall']:.4f} {extra}".rstrip(), flush=True)
        return result

    # ------------------------------------------------------------------------------------------
    # Saving, loading, export, download
    # ------------------------------------------------------------------------------------------

    def _metadata(self, name: str, weights_name: str, weights_sha: str) -> dict:
        from face_perception.detection.config import BGR_MEAN

        meta = {
            "model_paths": [weights_name],
            "framework": "pytorch",
            "format": "pth",
            "architecture": "RetinaFace",
            "backbone": self.backbone,
            "has_data": False,
            "inference_params": {},
            "optimized": False,
            "optimizer_info": {"lr": self.lr, "momentum": self.momentum,
                               "weight_decay": self.weight_decay, "lr_steps": self.lr_steps,
                               "batch_size": self.batch_size},
            "input": {"color_order": "bgr", "mean": list(BGR_MEAN),
                      "layout": "NCHW float32, image minus mean"},
            "priors": {"min_sizes": self.cfg["min_sizes"], "steps": self.cfg["steps"],
                       "variance": self.cfg["variance"]},
            "training_image_size": self.image_size,
            "epochs_trained": self.epochs_trained,
            "sha256": {weights_name: weights_sha},
            "name": name,
            "version": METADATA_VERSION,
        }
        return meta

    def save(self, path: os.PathLike, verbose: bool = True) -> Path:
        """Write the model folder ``path``: ``<name>.pth`` (state dict), ``<name>.json``
        (metadata with sha256 of every file) and ``<name>.onnx`` when optimized.

        ``<name>`` is the folder's base name, as in the seed.
        """
        model = self._require_model()
        folder = Path(path)
        name = folder.name or "retinaface"
        folder.mkdir(parents=True, exist_ok=True)
        data = _torch_bytes({k: v.detach().cpu() for k, v in model.state_dict().items()})
        weights_name = f"{name}.pth"
        _atomic_write(folder / weights_name, data)
        meta = self._metadata(name, weights_name, _sha256_bytes(data))
        if self._onnx_bytes is not None:
            onnx_name = f"{name}.onnx"
            _atomic_write(folder / onnx_name, self._onnx_bytes)
            meta["model_paths"].append(onnx_name)
            meta["sha256"][onnx_name] = _sha256_bytes(self._onnx_bytes)
            meta["optimized"] = True
            meta["format"] = "pth+onnx"
        _atomic_write(folder / f"{name}.json", (json.dumps(meta, indent=2) + "\n").encode())
        if verbose:
            print(f"saved RetinaFace ({self.backbone}) to {folder}", flush=True)
        return folder

    @staticmethod
    def _read_metadata(folder: Path) -> tuple[dict, Path]:
        if not folder.is_dir():
            raise FileNotFoundError(f"model folder not found: {folder}")
        meta_path = folder / f"{folder.name}.json"
        if not meta_path.is_file():
            candidates = sorted(folder.glob("*.json"))
            if len(candidates) != 1:
                raise FileNotFoundError(
                    f"no model metadata {meta_path.name} in {folder} (found "
                    f"{[c.name for c in candidates]})")
            meta_path = candidates[0]
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RetinaFaceLearnerError(f"{meta_path}: not valid JSON ({exc})") from None
        for key in ("model_paths", "backbone", "sha256"):
            if key not in meta:
                raise RetinaFaceLearnerError(f"{meta_path}: missing field {key!r}")
        return meta, meta_path

    def load(self, path: os.PathLike, verbose: bool = True) -> None:
        """Load a model folder written by save() (or download(mode='pretrained')).

        Every file's sha256 is checked against the metadata; weights load with
        ``weights_only=True``. The learner's backbone becomes the folder's.
        """
        folder = Path(path)
        meta, meta_path = self._read_metadata(folder)
        if meta["backbone"] not in BACKBONES:
            raise RetinaFaceLearnerError(f"{meta_path}: unknown backbone {meta['backbone']!r}")
        pth = [p for p in meta["model_paths"] if p.endswith(".pth")]
        if not pth:
            raise RetinaFaceLearnerError(f"{meta_path}: no .pth weights listed")
        if not meta["sha256"].get(pth[0]):
            raise RetinaFaceLearnerError(f"{meta_path}: no sha256 for {pth[0]}")
        state = _load_checked(folder / pth[0], meta["sha256"][pth[0]])
        if meta["backbone"] != self.backbone:
            if verbose:
                print(f"load: switching backbone {self.backbone!r} -> {meta['backbone']!r}")
            from face_perception.detection.config import get_config

            self.backbone = meta["backbone"]
            self.cfg = get_config(self.backbone)
        model = self._new_model()
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise RetinaFaceLearnerError(
                f"{folder / pth[0]} does not fit a RetinaFace {self.backbone}: {exc}") from None
        self.model = model.to(self.device).eval()
        self._invalidate()
        # Loaded weights are trained weights: their BN statistics are kept when fine-tuning.
        self._pretrained_bn = self._bn_names(model)
        self.image_size = int(meta.get("training_image_size", self.image_size))
        self.epochs_trained = int(meta.get("epochs_trained", 0))
        onnx = [p for p in meta["model_paths"] if p.endswith(".onnx")]
        if onnx:
            onnx_path = folder / onnx[0]
            expected = meta["sha256"].get(onnx[0])
            if not onnx_path.is_file():
                raise FileNotFoundError(f"ONNX model listed in {meta_path} not found: {onnx_path}")
            data = onnx_path.read_bytes()
            if expected is None or _sha256_bytes(data) != expected:
                raise RetinaFaceLearnerError(
                    f"checksum mismatch for {onnx_path}: truncated or modified")
            self._onnx_bytes = data
            self.onnx_path = onnx_path
        if verbose:
            print(f"loaded RetinaFace ({self.backbone}) from {folder}"
                  f"{' with ONNX model' if onnx else ''}", flush=True)

    def optimize(self, max_diff: float = 1e-3) -> Path:
        """Export the current weights to ONNX; infer/eval then run on onnxruntime.

        The export (dynamic batch/height/width, batch norm folded) is checked against the torch
        model on random inputs of two sizes; a difference above ``max_diff`` raises. The file
        goes to ``temp_path`` (or the user cache) until save() copies it into the model folder.
        """
        from face_perception.detection.export import ExportError, check_parity, export_onnx
        from face_perception.files import cache_dir

        model = self._require_model()
        folder = Path(self.temp_path) if self.temp_path else cache_dir("retinaface_learner")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{self.prefix or 'retinaface_' + self.backbone}.onnx"
        export_onnx(model.eval(), target)
        self.onnx_parity = check_parity(model.eval(), target)
        if self.onnx_parity > max_diff:
            target.unlink(missing_ok=True)
            raise ExportError(f"ONNX export differs from the torch model by "
                              f"{self.onnx_parity:.3g} (> {max_diff})")
        self._detectors = {}
        self._onnx_bytes = target.read_bytes()
        self.onnx_path = target
        return target

    def download(self, path: Optional[os.PathLike] = None, mode: str = "pretrained",
                 verbose: bool = True, url: Optional[str] = None,
                 sha256: Optional[str] = None) -> Path:
        """Fetch what the learner needs; returns the path written.

        - 'pretrained': a model folder ``<path>/retinaface_<backbone>`` for load(). For mnet
          with no ``url`` it is written from the shipped converted weights (no network); for
          resnet (or any ``url``) the published weights are downloaded with sha256 check.
        - 'backbone': ImageNet weights for 'resnet' training (torchvision's file, verified by
          the sha256 prefix in its name); for mnet the shipped detector's body (no network).
        - 'images', 'annotations': need ``url`` (and ``sha256``); the seed's FTP server is not
          reachable from here.
        """
        from face_perception.detection import weights

        folder = Path(path) if path is not None else Path(self.temp_path or ".")
        if mode == "backbone" and path is None and not self.temp_path:
            from face_perception.files import cache_dir

            folder = cache_dir("retinaface")  # shared by every later fit()
        if mode == "pretrained":
            target = folder / f"retinaface_{self.backbone}"
            if self.backbone == "mnet" and url is None:
                state = weights.mnet_state_dict()
            else:
                file = weights.download(self.backbone, url=url, sha256=sha256,
                                        dest_dir=folder / ".downloads")
                # download_file has verified the sha256; the file holds tensors only.
                state = weights.normalize_checkpoint(_load_checked(Path(file), None))
            self._write_model_folder(target, state)
            if verbose:
                print(f"pretrained {self.backbone} RetinaFace written to {target}", flush=True)
            return target
        if mode == "backbone":
            if url is not None:
                if not sha256:
                    raise ValueError("download(mode='backbone', url=...) needs sha256= as well")
                return download_file(url, folder / Path(url).name, sha256)
            if self.backbone == "mnet":
                weights.mnet_state_dict()  # converts (offline) on first use
                return weights.converted_mnet_path()
            entry = BACKBONE_URLS["resnet"]
            dest = folder / entry["filename"]
            if not dest.is_file():
                download_file(entry["url"], dest, None)
            if not sha256_file(dest).startswith(entry["sha256_prefix"]):
                dest.unlink()
                raise DownloadError(f"{entry['url']}: sha256 does not start with "
                                    f"{entry['sha256_prefix']} (damaged download removed)")
            return dest
        if mode in ("images", "annotations"):
            if url is None or not sha256:
                raise ValueError(
                    f"download(mode={mode!r}) needs url= and sha256=: the seed's default "
                    "server is not reachable from this package")
            return download_file(url, folder / Path(url).name, sha256)
        raise ValueError(f"mode must be 'pretrained', 'backbone', 'images' or 'annotations', "
                         f"got {mode!r}")

    def _write_model_folder(self, target: Path, state: dict) -> None:
        """Validate ``state`` against the network, then write it as a loadable model folder."""
        model = self._new_model()
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise RetinaFaceLearnerError(
                f"downloaded weights do not fit a RetinaFace {self.backbone}: {exc}") from None
        target.mkdir(parents=True, exist_ok=True)
        data = _torch_bytes({k: v.detach().cpu() for k, v in model.state_dict().items()})
        name = target.name
        _atomic_write(target / f"{name}.pth", data)
        meta = self._metadata(name, f"{name}.pth", _sha256_bytes(data))
        meta["epochs_trained"] = 0
        meta["source"] = "pretrained"
        _atomic_write(target / f"{name}.json", (json.dumps(meta, indent=2) + "\n").encode())
