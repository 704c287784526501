"""The training core shared by detection (``detection/training/``) and recognition
(``recognition/training/``): learning-rate schedule, checkpoints (one format: sha256, RNG
state, atomic write, ``weights_only`` loading), progress (TensorBoard and the bar), callbacks
(checkpointing and validation run as callbacks of a loop) and the settings both share
(optimizer and schedule names, device, threads).

ROS-free and below both: it depends only on the foundation modules (files, threads, devices)
and torch. Modules are imported by name; this package imports nothing itself, so that reading
a config does not import torch.
"""
