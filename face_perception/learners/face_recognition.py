"""FaceRecognitionLearner: the seed's (OpenDR) face recognition API over the core library.

Constructor parameters, names and defaults follow the seed. Inference goes through the same
parts as the CLI and the ROS node: ``Detector`` -> 5-point alignment -> ``Embedder`` ->
``Gallery`` (via ``Recognizer``). Where the seed was unsafe or vague this class differs, and
docs/recognition_api.md says how: the reference database is a ``Gallery`` file (npz + JSON,
never pickle), models load with ``torch.load(weights_only=True)`` after a sha256 check, and
``fit`` runs the core training loop (``recognition.training``, docs/training.md).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from face_perception.devices import torch_device
from face_perception.enrolment.photos import enroll_tree
from face_perception.files import load_torch_file
from face_perception.imageio import load_bgr
from face_perception.recognition import params
from face_perception.recognition.backbones import FIXED_GEOMETRY
from face_perception.recognition.photo_faces import largest_face
from face_perception.training.config import MODES as TRAINING_MODES
from face_perception.types import Category, Face

log = logging.getLogger("face_perception.learner")

# 'backbone_only' is the seed's inference mode; the others train (``fit``).
MODES = ("backbone_only",) + TRAINING_MODES
# Pretrained backbones the seed publishes. The sha256 of these files could not be read from here
# (no access to that server), so they are None: download() refuses to fetch weights it cannot
# verify until the caller pins the publisher's checksum with ``sha256=``.
PRETRAINED_URLS = {
    "mobilefacenet": {
        "url": "ftp://opendrdata.csd.auth.gr/perception/face_recognition/"
               "backbone_mobilefacenet.pth",
        "sha256": None,
    },
    "ir_50": {
        "url": "ftp://opendrdata.csd.auth.gr/perception/face_recognition/backbone_ir_50.pth",
        "sha256": None,
    },
}
# The seed's test images: six identities with two photos each.
TEST_DATA_URL = "ftp://opendrdata.csd.auth.gr/perception/face_recognition/test_data/images"
TEST_DATA_FILES = tuple(f"{i}/{j}.jpg" for i in range(1, 7) for j in (1, 2))


class FaceRecognitionLearner:
    """Face recognition learner with the seed's constructor (see docs/recognition_api.md).

    threshold: cosine similarity above which a face matches a reference identity; 0.0 (the
    seed's default) means "use the threshold stored with the model". backbone: one of
    ``BACKBONE_NAMES``; ``dlib_resnet`` is the pretrained model shipped with the package (no
    network), every other backbone needs ``load()`` or ``download()`` before inference.
    detector: optional ``face_perception.detection.Detector`` to use instead of the default.
    """

    def __init__(self, lr=0.1, iters=120, batch_size=128, optimizer='sgd', device='cuda',
                 threshold=0.0, backbone='ir_50', network_head='arcface', loss='focal',
                 temp_path='./temp', mode='backbone_only', checkpoint_after_iter=0,
                 checkpoint_load_iter=0, val_after=0, input_size=None, rgb_mean=None,
                 rgb_std=None, embedding_size=512, weight_decay=5e-4, momentum=0.9,
                 drop_last=True, stages=None, pin_memory=True, num_workers=4, seed=123, *,
                 detector=None, color_order='rgb', threads=None, sample_rate=1.0,
                 init_from=None):
        # Mutable defaults are spelled None here (the seed's values are filled in below).
        input_size = [112, 112] if input_size is None else input_size
        rgb_mean = [0.5, 0.5, 0.5] if rgb_mean is None else rgb_mean
        rgb_std = [0.5, 0.5, 0.5] if rgb_std is None else rgb_std
        stages = [35, 65, 95] if stages is None else stages

        self.mode = params.choice("mode", mode, MODES)
        self.device = torch_device(device)
        self.threshold = params.cosine_threshold(threshold)
        # torch threads for training and the torch backend (None: every usable core,
        # face_perception.threads); a robot shares its cores with other nodes
        from face_perception.threads import resolve_threads

        self.threads = resolve_threads(threads)
        # The training parameters are TrainConfig's, checked there (one set of checks for the
        # learner, the YAML configs and the CLI); 'full' stands in for the mode, checked above,
        # as a config of mode head_only/finetune needs the model fit() starts from.
        config = self._config(
            lr=lr, iters=iters, batch_size=batch_size, optimizer=optimizer, backbone=backbone,
            network_head=network_head, loss=loss, temp_path=temp_path, mode="full",
            checkpoint_after_iter=checkpoint_after_iter,
            checkpoint_load_iter=checkpoint_load_iter, val_after=val_after,
            input_size=input_size, rgb_mean=rgb_mean, rgb_std=rgb_std,
            embedding_size=embedding_size, weight_decay=weight_decay, momentum=momentum,
            drop_last=drop_last, stages=stages, pin_memory=pin_memory,
            # None: min(2, cores - 1) loader processes (the seed's default 4 oversubscribes a
            # small CPU; kept as the default for the seed's sake)
            num_workers=num_workers, seed=seed, color_order=color_order,
            sample_rate=sample_rate, init_from=init_from)
        for name in _CONFIG_ATTRIBUTES:
            setattr(self, name, getattr(config, name))
        # The seed's defaults (112x112, 512-d) give way to a backbone's fixed geometry.
        self.input_size, self.embedding_size = params.backbone_geometry(
            self.backbone, self.input_size, self.embedding_size)

        self._detector = detector
        self._embedder = None        # Embedder used for inference (torch or onnx backend)
        self._model_folder = None    # folder the current weights came from (for save())
        self._onnx_path = None       # set by optimize(): the ONNX export in temp_path
        self.backbone_model = None   # torch module of the current weights, if any
        self.network_head_model = None
        self.classes = []            # class names of network_head_model (mode 'full')
        self.database = None         # the reference Gallery (fit_reference)
        self._recognizer = None

    # ================================================================== training
    def fit(self, dataset=None, val_dataset=None, logging_path='', silent=False, verbose=True):
        """Train (face_perception.recognition.training) with this learner's parameters.

        mode 'full': a new backbone and head; 'head_only': a new head on the loaded backbone
        (frozen); 'finetune': the loaded backbone and a new head, both trained. ``dataset``: an
        ImageFolder tree of face chips, an InsightFace RecordIO folder, or the seed's dataset
        object (``.path``, ``.dataset_type``). ``val_dataset``: verification pairs (a ``.bin``,
        an ImageFolder of chips, or a pairs list), evaluated every ``val_after`` iterations;
        the best model is kept in ``temp_path/best``. Checkpoints and the model folder go to
        ``temp_path`` (docs/training.md). Returns the stats dict (last loss and accuracy, their
        history, last validation metrics, where the model was written).
        """
        from face_perception.recognition.training import Trainer

        if self.mode == "backbone_only":
            raise ValueError("mode 'backbone_only' is for inference; fit trains in mode "
                             "'full', 'head_only' or 'finetune'")
        start_model = ""
        if self.mode in ("head_only", "finetune"):
            if self._model_folder is None and self.backbone != "dlib_resnet":
                raise RuntimeError(f"mode {self.mode!r} trains on a saved backbone: load() a "
                                   "model folder first")
            start_model = str(self._model_folder or "dlib_resnet")
        if val_dataset is not None and hasattr(val_dataset, "path"):
            val_dataset = val_dataset.path  # the seed's ExternalDataset
        config = self._config(
            **{name: getattr(self, name) for name in _CONFIG_ATTRIBUTES},
            device=self.device, mode=self.mode, init_model=start_model,
            logging_path=str(logging_path or ""), silent=bool(silent), verbose=bool(verbose),
            threads=self.threads)
        trainer = Trainer(config, dataset=dataset,
                          val_dataset=str(val_dataset) if val_dataset is not None else None)
        stats = trainer.fit()
        self.network_head_model, self.classes = trainer.head, list(trainer.classes)
        self.backbone_model = trainer.backbone
        if trainer.model_folder is not None:
            self._use_model_folder(trainer.model_folder, "torch", keep_torch=True)
        if not silent and verbose:
            print(f"trained {stats['iterations']} iterations: loss {stats['train_loss']:.4f}, "
                  f"accuracy {stats['train_accuracy']:.4f}; model in {stats['model_folder']}")
        return stats

    @staticmethod
    def _config(**kw):
        from face_perception.recognition.training import TrainConfig

        return TrainConfig(**kw)

    # ================================================================== model files
    def load(self, path):
        """Load a model folder written by ``save`` (backbone.json + backbone.pth, and
        backbone.onnx if it was optimized): the weights' sha256 is checked against
        backbone.json and torch loads them with ``weights_only=True``. With an ONNX file in the
        folder, inference runs with onnxruntime."""
        from face_perception.recognition.model_folder import read_model_folder

        model = read_model_folder(path)
        model.weights_path()  # checked now, not at the first inference
        if model.meta.architecture != self.backbone:
            raise ValueError(f"{model.folder} holds a {model.meta.architecture!r} model but "
                             f"this learner's backbone is {self.backbone!r}")
        self._use_model_folder(model.folder, "onnx" if model.has_onnx else "torch")
        self._onnx_path = None
        if self.mode == "full":
            self.network_head_model, self.classes = model.load_head()
        return self

    def save(self, path):
        """Write the model folder: backbone.pth + backbone.json (ModelMeta), and backbone.onnx
        when ``optimize`` ran (``recognition.model_folder.write_model_folder``). Existing files
        of the same names are overwritten."""
        from face_perception.recognition.model_folder import write_model_folder

        meta = self._current_meta()
        onnx_src = self._onnx_path
        # As in the seed, the ONNX file travels only when inference runs on it (optimize(), or
        # a loaded optimized folder); the pretrained cache's own export does not count.
        running_onnx = self._embedder is not None and self._embedder.backend == "onnx"
        if onnx_src is None and running_onnx and self._model_folder is not None and \
                meta.onnx_file:
            candidate = Path(self._model_folder) / meta.onnx_file
            onnx_src = candidate if candidate.is_file() else None
        # Weights of their own (not a loaded or pretrained model's) get a name of their own.
        return write_model_folder(path, self._torch_model(), meta, self.network_head_model,
                                  self.network_head, self.classes, onnx=onnx_src,
                                  keep_name=meta.name != self._fresh_name())

    def optimize(self, do_constant_folding=False):
        """Export the backbone to ONNX in ``temp_path``, check it against torch on random
        chips (max abs difference of the embeddings below 1e-3), and run inference with
        onnxruntime from then on. Returns the ONNX file's path."""
        from face_perception.recognition.pretrained import export_embedding_onnx

        model = self._torch_model().eval()
        meta = self._current_meta()
        out_dir = Path(self.temp_path) / f"optimized_{self.backbone}"
        onnx_path = out_dir / "backbone.onnx"
        diff = export_embedding_onnx(model, onnx_path, meta.input_size,
                                     do_constant_folding=do_constant_folding)
        self.onnx_parity = diff
        # Inference from a model folder next to the export, so that the Embedder reads the
        # same metadata either way.
        self._onnx_path = onnx_path
        self.save(out_dir)
        self._use_model_folder(out_dir, "onnx", keep_torch=True)
        return onnx_path

    def download(self, path=None, mode="pretrained", url=None, sha256=None, timeout=60.0):
        """Fetch files over HTTP(S)/FTP with sha256 checks (``face_perception.download``).

        mode "pretrained": the published backbone for ``self.backbone`` (mobilefacenet,
        ir_50) into ``path`` (default temp_path) as ``backbone_<name>.pth``, converted into a
        model folder at ``path`` (backbone.pth + backbone.json, so ``load(path)`` works) and
        used by this learner; returns the downloaded file's path.
        mode "test_data": the seed's test images into ``path/test_data/images``; returns that
        folder. ``url`` overrides the registry URL (the base URL for test_data), ``sha256``
        pins the expected checksum of a pretrained file.
        """
        from face_perception.download import download_file

        if mode not in ("pretrained", "test_data"):
            raise ValueError(f"download mode must be 'pretrained' or 'test_data', got {mode!r}")
        root = Path(path if path is not None else self.temp_path)
        if mode == "test_data":
            base = (url or TEST_DATA_URL).rstrip("/")
            dest = root / "test_data" / "images"
            for rel in TEST_DATA_FILES:
                download_file(f"{base}/{rel}", dest / rel, None, timeout=timeout)
            return dest
        entry = PRETRAINED_URLS.get(self.backbone)
        if self.backbone == "dlib_resnet" and url is None:
            raise ValueError("dlib_resnet ships with the package (converted from dlib's model "
                             "file on first use): there is nothing to download")
        if entry is None and url is None:
            raise ValueError(f"no published weights for backbone {self.backbone!r}; "
                             f"available: {', '.join(PRETRAINED_URLS)} (or pass url=)")
        source = url or entry["url"]
        expected = sha256 or (entry or {}).get("sha256")
        if not expected:
            # Weights are code-adjacent: never load a file nobody vouched for.
            raise ValueError(f"no sha256 is pinned for {source}; pass sha256= with the "
                             "checksum the publisher gives, so the download can be verified")
        dest = root / f"backbone_{self.backbone}.pth"
        download_file(source, dest, expected, timeout=timeout)
        # Turn the published state dict into our model folder next to it, so that the seed's
        # ``download(path); load(path)`` works; the learner uses the weights right away.
        self.load_state_dict_file(dest, folder=root)
        return dest

    def load_state_dict_file(self, path, threshold: Optional[float] = None, folder=None):
        """Use a plain torch state dict file (e.g. from ``download``) as this learner's
        backbone weights, and write them as a model folder (``folder``, default
        ``temp_path/model_<backbone>``). The file is read with ``weights_only=True``; keys
        must match the backbone (face.evoLVe's IR names are mapped). ``threshold``: the
        cosine similarity to store with the model (measure it with ``eval``)."""

        path = Path(path)
        state = load_torch_file(path, ValueError, "a torch state dict")
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
        model = self._new_backbone()
        state = _map_evolve_keys(state)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path} does not fit backbone {self.backbone!r}: missing "
                             f"{list(missing)[:5]}..., unexpected {list(unexpected)[:5]}...")
        folder = Path(folder) if folder is not None else \
            Path(self.temp_path) / f"model_{self.backbone}"
        self.backbone_model = model.eval()
        self._embedder = None  # the new weights get fresh metadata
        if threshold is not None:
            self.threshold = params.cosine_threshold(threshold)
        self._model_folder = None
        self._onnx_path = None
        self.save(folder)
        self._use_model_folder(folder, "torch")
        return self

    # ================================================================== inference
    def fit_reference(self, path=None, save_path=None):
        """Build the reference database from an ImageFolder tree (one identity per
        sub-folder), or load it.

        Every image's largest face (Detector + alignment + Embedder) is kept as a sample of its
        identity; images without a face are reported. With ``save_path`` the Gallery is saved
        there (``<save_path>.json`` + arrays, see docs/gallery.md). With ``path=None`` the
        gallery at ``save_path`` is loaded. Returns a report dict.
        """
        from face_perception.gallery import Gallery

        embedder = self._ensure_embedder()
        model_id, size = embedder.meta.name, embedder.meta.embedding_size
        if path is None:
            if save_path is None:
                raise ValueError("fit_reference needs path (images) or save_path (a saved "
                                 "reference database)")
            self.database = Gallery.load(save_path, model_id=model_id, embedding_size=size)
            self._recognizer = None
            return {"identities": len(self.database), "loaded": str(Gallery.index_path(
                save_path)), "images": 0, "embedded": 0, "no_face": []}
        gallery = Gallery(model_id, size)
        report = enroll_tree(gallery, self.detector, embedder, path)
        report["identities"] = len(gallery)
        if len(gallery) == 0:
            raise ValueError(f"no face found in any image under {path}")
        if save_path is not None:
            report["gallery"] = str(gallery.save(save_path))
        self.database = gallery
        self._recognizer = None
        return report

    def infer(self, img) -> Optional[Category]:
        """Identity of the largest face in ``img`` (path, BGR ndarray, or an object with
        ``opencv()``), or None when nobody in the reference database is similar enough.

        If the detector finds no face (e.g. a tight face crop), the whole image is taken as the
        face box and landmarks are searched in a padded crop around it."""
        if self.mode == "full":
            return self._infer_with_head(img)
        if self.mode != "backbone_only":
            raise ValueError(f"mode {self.mode!r} is a training mode; inference uses "
                             "mode='backbone_only'")
        if self.database is None:
            raise RuntimeError("no reference database: call fit_reference(path, save_path) "
                               "first (or fit_reference(None, save_path) to load one)")
        image = _image_input(img)
        faces = self.detector.detect(image)
        if faces:
            face = largest_face(faces)
        else:
            h, w = image.shape[:2]
            face = Face(box=[0, 0, w, h], score=0.0, landmarks=None)
        return self._get_recognizer().identify(image, [face])[0]

    def _infer_with_head(self, img) -> Optional[Category]:
        """Mode 'full': the trained classifier head's most probable class for the largest face
        (confidence = its softmax probability); None when no face is found."""
        import torch

        if self.network_head_model is None:
            raise RuntimeError("mode 'full' infers with a trained classifier head: fit() in "
                               "mode 'full' or load() a model folder trained in it")
        image = _image_input(img)
        faces = self.detector.detect(image)
        if not faces:
            return None
        embedder = self._ensure_embedder()
        chip = embedder.align(image, largest_face(faces).landmarks)
        emb = torch.from_numpy(embedder.embed_raw(chip[None]))
        if not torch.isfinite(emb).all():
            raise RuntimeError(f"model {embedder.meta.name!r} ({embedder.folder}) gives a "
                               "non-finite embedding: it is not trained enough (a few "
                               "iterations at a high lr leave batch-norm statistics behind)")
        with torch.no_grad():
            probs = torch.softmax(self.network_head_model.cpu().eval()(emb, None), dim=1)[0]
        best = int(probs.argmax())
        return Category(name=str(self.classes[best]), confidence=float(probs[best]))

    def embed(self, img) -> Optional[np.ndarray]:
        """(D,) embedding of the largest face in ``img``, or None when no face is found."""
        image = _image_input(img)
        faces = self.detector.detect(image)
        if not faces:
            return None
        embedder = self._ensure_embedder()
        face = largest_face(faces)
        return embedder.embed_chips(embedder.align(image, face.landmarks)[None])[0]

    # ================================================================== data preparation
    def align(self, data='', dest='/aligned', crop_size=112, silent=False):
        """Align every image of an ImageFolder tree into ``dest`` with the same structure.

        Each image's largest face is warped onto the ArcFace template scaled to
        ``crop_size`` (the InsightFace dataset geometry). ``dest`` may not be ``data``, inside
        it, or contain it (the source is never overwritten). Returns a report dict with the
        images that had no face (skipped) or several faces (largest kept); see
        ``face_perception.recognition.folder_alignment``.
        """
        from face_perception.recognition.folder_alignment import align_image_folder

        return align_image_folder(self.detector, data, dest, crop_size=crop_size, silent=silent)

    # ================================================================== evaluation
    def eval(self, dataset=None, num_pairs=1000, silent=False, verbose=True,
             open_set=False, enroll=1, known_fraction=0.5):
        """Verification metrics (face_perception.recognition.verification) on ``dataset``:
        a verification ``.bin`` file (lfw, cfp_fp, agedb_30, ...), an ImageFolder tree
        (``num_pairs`` seeded random positive and negative pairs; all that exist when there
        are fewer, with a note), a pairs list file (``pairs.txt`` style; images under the
        list's folder or its ``lfw/``; aligned from ``lfw_landmark.txt`` when it lies beside
        the list), or an IJB-B/C folder (1:1 template protocol). Writes the ROC curve to
        ``temp_path/roc_<name>.png`` and returns the metrics dict.

        open_set=True (ImageFolder): open-set identification instead (``enroll`` photos of a
        ``known_fraction`` of the identities enrolled, the rest strangers): FNIR at FPIR,
        rank-1, wrong and stranger names under the open-set rule; DET curve in
        ``temp_path/det_<name>.png`` (see docs/open_set.md)."""
        from face_perception.recognition.pair_eval import evaluate_verification_dataset

        if dataset is None:
            raise ValueError("eval needs a dataset: a verification .bin file, an ImageFolder "
                             "tree or a pairs list")
        if open_set:
            from face_perception.open_set import resolve_rule
            from face_perception.recognition.open_set_eval import evaluate_open_set

            embedder = self._ensure_embedder()
            threshold = None if self.threshold == 0.0 else self.threshold
            rule, _ = resolve_rule(embedder.meta, None, threshold)
            name = Path(dataset).name or "dataset"
            metrics = evaluate_open_set(self.detector, embedder, dataset, enroll=enroll,
                                        known_fraction=known_fraction, seed=self.seed,
                                        rule=rule,
                                        det_path=Path(self.temp_path) / f"det_{name}.png")
            if not silent:
                r = metrics["rule"]
                print(f"{name} open-set: rank-1 {metrics['rank1']:.4f}, "
                      f"{r['wrong_names']} wrong names, {r['stranger_names']} stranger names, "
                      f"{r['missed']} missed; DET: {metrics['det_png']}")
            return metrics
        name = Path(dataset).stem or "dataset"
        metrics = evaluate_verification_dataset(
            self.detector, self._ensure_embedder(), dataset, num_pairs=num_pairs,
            seed=self.seed, roc_path=Path(self.temp_path) / f"roc_{name}.png")
        if not silent:
            print(f"{name}: accuracy {metrics['accuracy_mean']:.4f} +- "
                  f"{metrics['accuracy_std']:.4f}, AUC {metrics['auc']:.4f}, "
                  f"EER {metrics['eer']:.4f} ({metrics['num_pairs']} pairs)")
            if verbose:
                print(f"  best threshold {metrics['threshold']:.4f} (model's "
                      f"{metrics['model_threshold']:.4f}); ROC: {metrics.get('roc_png')}")
                if metrics["skipped_pairs"]:
                    print(f"  skipped {len(metrics['skipped_pairs'])} pairs without a face")
            if metrics.get("pairs_note"):
                print(f"  note: {metrics['pairs_note']}")
        return metrics

    # ================================================================== internals
    @property
    def detector(self):
        if self._detector is None:
            from face_perception.detection import Detector
            self._detector = Detector(device=self.device)
        return self._detector

    @property
    def embedder(self):
        return self._ensure_embedder()

    def _ensure_embedder(self):
        if self._embedder is None:
            if self.backbone != "dlib_resnet":
                raise RuntimeError(
                    f"backbone {self.backbone!r} has no trained weights yet: load() a model "
                    "folder, or download() published weights and load_state_dict_file() them "
                    "(the pretrained 'dlib_resnet' backbone needs neither)")
            from face_perception.recognition import Embedder
            self._embedder = Embedder("dlib_resnet", backend="torch", device=self.device,
                                      num_threads=self.threads)
            self._model_folder = Path(self._embedder.folder)
        return self._embedder

    def _use_model_folder(self, folder: Path, backend: str, keep_torch: bool = False) -> None:
        from face_perception.recognition import Embedder

        embedder = Embedder(str(folder), backend=backend, device=self.device,
                            num_threads=self.threads)
        self._embedder = embedder
        self._model_folder = folder
        if not keep_torch:
            self.backbone_model = None  # read from the folder when save/optimize need it
        self._recognizer = None

    def _torch_model(self):
        """The current backbone as a torch module (read from the model folder when inference
        runs on onnxruntime or the weights came from the pretrained cache)."""
        from face_perception.recognition.model_folder import load_backbone

        if self.backbone_model is None:
            embedder = self._ensure_embedder()
            self.backbone_model = load_backbone(embedder.folder, embedder.meta)
        return self.backbone_model

    def _new_backbone(self):
        from face_perception.recognition.backbones import get_model

        if self.backbone in FIXED_GEOMETRY:
            return get_model(self.backbone)
        return get_model(self.backbone, embedding_size=self.embedding_size,
                         input_size=tuple(self.input_size))

    def _current_meta(self):
        """ModelMeta describing the current weights (from the loaded model when there is one,
        else from the constructor's geometry and normalisation)."""
        import copy

        from face_perception.recognition.model_folder import trained_meta
        from face_perception.recognition.training.data import network_normalisation

        if self._embedder is not None or self.backbone == "dlib_resnet":
            meta = copy.deepcopy(self._ensure_embedder().meta)
        else:
            mean, std = network_normalisation(self.rgb_mean, self.rgb_std, self.color_order)
            meta = trained_meta(self.backbone, self.embedding_size, self.input_size, mean, std,
                                self.color_order, source="a torch state dict file, loaded by "
                                "FaceRecognitionLearner.load_state_dict_file")
        if self.threshold != 0.0:
            meta.threshold = self.threshold
        return meta

    def _fresh_name(self) -> str:
        return f"{self.backbone}_{self.embedding_size}"

    def _get_recognizer(self):
        if self._recognizer is None or self._recognizer.gallery is not self.database:
            from face_perception.recognition.recognizer import Recognizer

            threshold = None if self.threshold == 0.0 else self.threshold
            self._recognizer = Recognizer(self._ensure_embedder(), self.database,
                                          threshold=threshold, detector=self.detector)
        return self._recognizer


# ====================================================================== helpers
# The constructor's training parameters, kept as attributes after TrainConfig checked them.
_CONFIG_ATTRIBUTES = (
    "lr", "iters", "batch_size", "optimizer", "backbone", "network_head", "loss", "temp_path",
    "checkpoint_after_iter", "checkpoint_load_iter", "val_after", "input_size", "rgb_mean",
    "rgb_std", "embedding_size", "weight_decay", "momentum", "drop_last", "stages",
    "pin_memory", "num_workers", "seed", "color_order", "sample_rate", "init_from")

def _image_input(img) -> np.ndarray:
    if hasattr(img, "opencv") and callable(img.opencv):  # the seed's engine.data.Image
        img = img.opencv()
    return load_bgr(img)


def _map_evolve_keys(state: dict) -> dict:
    """face.evoLVe / OpenDR IR module names -> ours (same layer order, other names)."""
    renames = (("input_layer.", "stem."), ("output_layer.", "head."),
               (".shortcut_layer.", ".shortcut."), (".res_layer.", ".residual."))
    out = {}
    for key, value in state.items():
        for old, new in renames:
            if key.startswith(old) or (old.startswith(".") and old in key):
                key = key.replace(old, new, 1)
        out[key] = value
    return out
