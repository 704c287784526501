"""Training of face recognition models: ``train(config)`` runs the loop of ``loop.py`` with the
parameters of ``config.TrainConfig`` (the seed learner's names) and writes a model folder.

Modules: config (parameters, YAML), data (training sets), loop (the run in named steps),
partial_fc (the sharded head), checkpoint (where checkpoints are, in the core's format),
validation, distributed (torchrun / DDP),
batchnorm, class_sampling. The learning-rate schedule, the checkpoint format, progress and
callbacks are the shared training core's (``face_perception.training``). The trained model on
disk: ``recognition/model_folder.py``.
Imported lazily: reading a config does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "TrainConfig": "face_perception.recognition.training.config",
    "load_config": "face_perception.recognition.training.config",
    "Trainer": "face_perception.recognition.training.loop",
    "train": "face_perception.recognition.training.loop",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
