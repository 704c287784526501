"""RetinaFaceLearner: the seed's (OpenDR) training / evaluation / inference API over our RetinaFace.

Training runs the PyTorch network of ``face_perception.detection`` on WIDER-format data with the
multibox loss; inference and evaluation go through the same ``Detector`` the node and the CLI use.
``infer`` returns ``face_perception.types.Face`` objects (box, score, 5 landmarks) instead of
OpenDR ``BoundingBox`` objects. See docs/detection_training.md.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from face_perception.detection import model_folder
from face_perception.detection.training import checkpoint as ckpt
from face_perception.detection.training import network, open_samples
from face_perception.detection.training.data import random_subset
from face_perception.detection.training.loop import EpochCount, TrainSettings, train
from face_perception.detection.training.network import BACKBONE_URLS
from face_perception.detection.training.validation import (
    EVAL_NMS_THRESHOLD,
    EVAL_PYRAMID,
    EVAL_SCORE_THRESHOLD,
    evaluate_samples,
    training_validation,
)
from face_perception.detection.weights import WeightsError
from face_perception.download import download_file
from face_perception.imageio import load_bgr
from face_perception.training.checkpoint import CheckpointError
from face_perception.training.config import resolve_device
from face_perception.types import Face

BACKBONES = model_folder.BACKBONES
__all__ = ["BACKBONES", "BACKBONE_URLS", "RetinaFaceLearner", "RetinaFaceLearnerError"]


class RetinaFaceLearnerError(RuntimeError):
    """A learner operation that cannot run in the learner's current state or on these files."""


def _pick_device(device: str) -> str:
    if device not in ("cuda", "cpu") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
    return resolve_device(str(device), stacklevel=4)


@contextlib.contextmanager
def _as_learner_error():
    """Model files and checkpoints are read and checked in detection/ and the training core
    (WeightsError and its ModelFolderError, CheckpointError); the seed API reports their faults
    as RetinaFaceLearnerError."""
    try:
        yield
    except (WeightsError, CheckpointError) as exc:
        raise RetinaFaceLearnerError(str(exc)) from exc


def as_image(img) -> np.ndarray:
    """Seed images (objects with ``.opencv()``, which gives BGR HxWx3), paths and BGR arrays ->
    validated BGR uint8."""
    if hasattr(img, "opencv") and callable(img.opencv):
        return load_bgr(img.opencv())
    return load_bgr(img)


class RetinaFaceLearner:
    """Train, evaluate and run RetinaFace (backbones 'resnet' and 'mnet').

    The seed's constructor parameters keep their names and defaults. Extra keyword-only
    parameters: ``image_size`` (square training crop, default the backbone's 640 / 840),
    ``seed`` (augmentation, shuffling and initialisation), ``num_workers`` (DataLoader processes),
    ``freeze_bn`` ('auto': batch-norm layers that came from pretrained weights keep their
    statistics, as fine-tuning with batches of 2 cannot estimate new ones; True/False for all),
    ``threads`` (torch threads of fit; 0: every usable core; None: torch's own).
    """

    def __init__(self, backbone: str = "resnet", lr: float = 0.0001, batch_size: int = 2,
                 checkpoint_after_iter: int = 0, checkpoint_load_iter: int = 0,
                 lr_steps: str = "0", epochs: int = 100, momentum: float = 0.9,
                 weight_decay: float = 5e-4, log_after: int = 20, prefix: str = "",
                 shuffle: bool = True, flip: bool = False, val_after: int = 5,
                 temp_path: str = "", device: str = "cuda", *, image_size: Optional[int] = None,
                 seed: int = 0, num_workers: int = 0, freeze_bn: Union[str, bool] = "auto",
                 threads: Optional[int] = None):
        # The run's hyper-parameters are checked by TrainSettings (for the CLI too).
        settings = TrainSettings(
            backbone=backbone, lr=lr, lr_steps=lr_steps, epochs=epochs, batch_size=batch_size,
            momentum=momentum, weight_decay=weight_decay, image_size=image_size, seed=seed,
            shuffle=shuffle, flip=flip, num_workers=num_workers, freeze_bn=freeze_bn,
            log_after=log_after, checkpoint_after=checkpoint_after_iter, val_after=val_after,
            threads=threads)
        if int(checkpoint_load_iter) < 0:
            raise ValueError(f"checkpoint_load_iter must be >= 0, got {checkpoint_load_iter}")
        self.backbone = settings.backbone
        self.lr = settings.lr
        self.batch_size = settings.batch_size
        self.checkpoint_after_iter = settings.checkpoint_after
        self.checkpoint_load_iter = int(checkpoint_load_iter)
        self.lr_steps = lr_steps
        self._lr_steps = settings.lr_steps
        self.epochs = settings.epochs
        self.momentum = settings.momentum
        self.weight_decay = settings.weight_decay
        self.log_after = settings.log_after
        self.prefix = prefix
        self.shuffle = settings.shuffle
        self.flip = settings.flip
        self.val_after = settings.val_after
        self.temp_path = temp_path
        self.device = _pick_device(device)
        self.seed = settings.seed
        self.num_workers = settings.num_workers
        self.freeze_bn = settings.freeze_bn
        self.threads = settings.threads
        from face_perception.detection.config import get_config

        self.cfg = get_config(backbone)
        self.image_size = settings.image_size
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
        return network.new_model(self.backbone, self.seed)

    def _init_model(self, from_scratch: bool, verbose: bool) -> None:
        """Random network; unless ``from_scratch``, with a pretrained backbone (seed semantics)."""
        imagenet = None
        if not from_scratch and self.backbone == "resnet":
            imagenet = self.download(mode="backbone", verbose=verbose)
        with _as_learner_error():
            model, self._pretrained_bn = network.initial_model(self.backbone, self.seed,
                                                               from_scratch, imagenet)
        self.model = model.to(self.device)
        self._invalidate()

    def _require_model(self):
        if self.model is None and self.onnx_path is not None:
            raise RetinaFaceLearnerError(
                f"the learner holds only the ONNX model {self.onnx_path}, which cannot be "
                "trained or saved: load a model folder (with .pth weights) instead")
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

    # ------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------

    def checkpoint_path(self, epoch: int) -> Path:
        """Checkpoint file of ``epoch`` under temp_path: ``<prefix>-<epoch:04d>.pth``."""
        return ckpt.checkpoint_path(self.temp_path, self.prefix
                                    or f"retinaface_{self.backbone}", epoch)

    def fit(self, dataset, val_dataset=None, from_scratch: bool = False, silent: bool = False,
            verbose: bool = True, logging_path: str = "") -> dict:
        """Train for ``epochs`` epochs; returns ``{"loss": [...], "loss_parts": [...],
        "lr": [...], "val": [(epoch, eval dict)], "epochs": n, "iterations": n}``.

        Starts from the loaded model when there is one, else from a new network with a
        pretrained backbone (or random, ``from_scratch=True``). With ``checkpoint_load_iter`` N
        it resumes exactly from ``checkpoint_path(N)``: weights, optimizer, epoch and RNG state.
        ``logging_path``: TensorBoard event files (loss, lr, images/s, validation per epoch).
        The loop and the checkpoints are ``face_perception.detection.training``'s.
        """
        say = (lambda *a: None) if silent else (lambda *a: print(*a, flush=True))
        samples = open_samples(dataset)
        if not samples:
            raise ValueError("training dataset is empty")
        if not self.checkpoint_load_iter and self.model is None and self.onnx_path is not None:
            self._require_model()  # an ONNX-only model cannot train: say so, not start afresh
        resume = None
        if self.checkpoint_load_iter > 0:
            resume = self._load_checkpoint(self.checkpoint_load_iter)
            say(f"resumed from {self.checkpoint_path(self.checkpoint_load_iter)} "
                f"(epoch {resume.epoch})")
        elif self.model is None:
            self._init_model(from_scratch, verbose and not silent)
        model = self.model.to(self.device)
        self._invalidate()
        epochs = EpochCount(self.epochs_trained)
        validate = None
        if val_dataset is not None:
            validate = training_validation(model, open_samples(val_dataset), self.image_size,
                                           self.device)
        history, iterations = train(
            model, samples, self._settings(logging_path), pretrained_bn=self._pretrained_bn,
            resume=resume, checkpoint_file=self.checkpoint_path, validate=validate,
            callbacks=[epochs], say=say, verbose=verbose)
        self._invalidate()
        self.epochs_trained = epochs.epochs
        history["epochs"] = self.epochs_trained
        history["iterations"] = iterations
        return history

    def _settings(self, logging_path: str = "") -> TrainSettings:
        return TrainSettings(
            backbone=self.backbone, lr=self.lr, lr_steps=self._lr_steps, epochs=self.epochs,
            batch_size=self.batch_size, momentum=self.momentum, weight_decay=self.weight_decay,
            image_size=self.image_size, seed=self.seed, shuffle=self.shuffle, flip=self.flip,
            num_workers=self.num_workers, freeze_bn=self.freeze_bn, device=self.device,
            log_after=self.log_after, checkpoint_after=self.checkpoint_after_iter,
            val_after=self.val_after, threads=self.threads,
            logging_path=str(logging_path or ""))

    def _load_checkpoint(self, epoch: int):
        """Load checkpoint ``epoch`` into the learner; returns it for fit() to continue from."""
        path = self.checkpoint_path(epoch)
        if not path.is_file():
            raise FileNotFoundError(
                f"checkpoint for epoch {epoch} not found: {path} (checkpoint_load_iter="
                f"{epoch}, temp_path={self.temp_path!r}, prefix={self.prefix!r})")
        with _as_learner_error():
            model, checkpoint = ckpt.resume(path, self.backbone, self.seed, self.image_size)
        self.model = model.to(self.device)
        self._pretrained_bn = checkpoint.extra["pretrained_bn"]
        self.epochs_trained = checkpoint.epoch
        return checkpoint

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
            model = self._require_model() if self.onnx_path is None else None
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
        samples = open_samples(dataset)
        if use_subset:
            samples = random_subset(samples, subset_size, self.seed)
        det = self._detector(EVAL_SCORE_THRESHOLD, EVAL_NMS_THRESHOLD, int(target_size),
                             int(max_size), scales=list(EVAL_PYRAMID) if pyramid else None,
                             flip=flip)
        return evaluate_samples(det, samples, iou_threshold, verbose=verbose)

    # ------------------------------------------------------------------------------------------
    # Saving, loading, export, download
    # ------------------------------------------------------------------------------------------

    def save(self, path: os.PathLike, verbose: bool = True) -> Path:
        """Write the model folder ``path``: ``<name>.pth`` (state dict), ``<name>.json``
        (metadata with sha256 of every file) and ``<name>.onnx`` when optimized.

        ``<name>`` is the folder's base name, as in the seed. The folder is the one model-folder
        convention of the package (``face_perception.detection.model_folder``): the Detector,
        ``detect --model``, ``detector-eval --model`` and the node's ``model_path`` take it.
        """
        model = self._require_model()
        folder = model_folder.write_model_folder(
            path, model.state_dict(), backbone=self.backbone,
            training_image_size=self.image_size, epochs_trained=self.epochs_trained,
            optimizer_info=self._optimizer_info(), onnx_bytes=self._onnx_bytes)
        if verbose:
            print(f"saved RetinaFace ({self.backbone}) to {folder}", flush=True)
        return folder

    def _optimizer_info(self) -> dict:
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "lr_steps": self.lr_steps, "batch_size": self.batch_size}

    def load(self, path: os.PathLike, verbose: bool = True) -> None:
        """Load a model folder written by save() (or download(mode='pretrained')), or a bare
        ``.onnx`` RetinaFace export (then infer/eval only: there are no weights to train).

        Every file's sha256 is checked against the metadata; weights load with
        ``weights_only=True``. The learner's backbone becomes the folder's.
        """
        path = Path(path)
        if path.is_file() and path.suffix.lower() == ".onnx":
            self.model = None
            self._invalidate()
            self._onnx_bytes = path.read_bytes()
            self.onnx_path = path
            if verbose:
                print(f"loaded ONNX RetinaFace ({self.backbone}) from {path}", flush=True)
            return
        with _as_learner_error():
            folder = model_folder.read_model_folder(path)
            state = folder.state_dict()
            onnx_bytes = folder.onnx_bytes() if folder.onnx_path is not None else None
        if folder.backbone != self.backbone:
            if verbose:
                print(f"load: switching backbone {self.backbone!r} -> {folder.backbone!r}")
            from face_perception.detection.config import get_config

            self.backbone = folder.backbone
            self.cfg = get_config(self.backbone)
        model = self._new_model()
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise RetinaFaceLearnerError(
                f"{folder.weights_path} does not fit a RetinaFace {self.backbone}: "
                f"{exc}") from None
        self.model = model.to(self.device).eval()
        self._invalidate()
        # Loaded weights are trained weights: their BN statistics are kept when fine-tuning.
        self._pretrained_bn = network.bn_names(model)
        self.image_size = int(folder.meta.get("training_image_size", self.image_size))
        self.epochs_trained = int(folder.meta.get("epochs_trained", 0))
        if onnx_bytes is not None:
            self._onnx_bytes = onnx_bytes
            self.onnx_path = folder.onnx_path
        if verbose:
            print(f"loaded RetinaFace ({self.backbone}) from {path}"
                  f"{' with ONNX model' if onnx_bytes is not None else ''}", flush=True)

    def optimize(self, max_diff: float = 1e-3) -> Path:
        """Export the current weights to ONNX; infer/eval then run on onnxruntime.

        The export (dynamic batch/height/width, batch norm folded) is checked against the torch
        model on random inputs of two sizes; a difference above ``max_diff`` raises. The file
        goes to ``temp_path`` (or the user cache) until save() copies it into the model folder.
        """
        from face_perception.detection.export import export_checked_onnx
        from face_perception.files import cache_dir

        model = self._require_model()
        folder = Path(self.temp_path) if self.temp_path else cache_dir("retinaface_learner")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{self.prefix or 'retinaface_' + self.backbone}.onnx"
        self.onnx_parity = export_checked_onnx(model.eval(), target, tolerance=max_diff)
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
            with _as_learner_error():
                state = network.pretrained_detector_state(self.backbone, folder / ".downloads",
                                                          url=url, sha256=sha256)
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
            return network.download_imagenet_backbone(folder)
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
        model_folder.write_model_folder(
            target, model.state_dict(), backbone=self.backbone,
            training_image_size=self.image_size, epochs_trained=0,
            optimizer_info=self._optimizer_info(), source="pretrained")
