"""RetinaFace training on WIDER-format samples, on the shared training core
(``face_perception.training``): ``network`` (the starting network: pretrained backbone or
detector, frozen batch norms), ``data`` (dataset arguments -> samples, augmented training
set), ``loop`` (the SGD loop with its step schedule and per-epoch callbacks), ``checkpoint``
(exact resume), ``validation`` (AP and recall). ``RetinaFaceLearner`` and
``face-perception detector-train`` both drive it.
"""
from face_perception.detection.training.checkpoint import checkpoint_path
from face_perception.detection.training.data import open_samples
from face_perception.detection.training.loop import EpochCount, TrainSettings, parse_lr_steps, train

__all__ = ["EpochCount", "TrainSettings", "checkpoint_path", "open_samples", "parse_lr_steps",
           "train"]
