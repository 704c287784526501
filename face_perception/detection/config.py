"""Per-backbone RetinaFace configurations: anchors, strides, channel widths, feature taps.

One plain dict per backbone, so that the network, the priors and the training code read their
geometry from the same place (the role timm's model configs play).
"""
from __future__ import annotations

import copy

# Anchor sizes in input pixels for each pyramid level, and that level's stride. Two anchors per
# feature-map cell; the published RetinaFace models were trained with exactly these.
MIN_SIZES = [[16, 32], [64, 128], [256, 512]]
STEPS = [8, 16, 32]
# Encoding variances for centre offsets and log sizes (SSD convention).
VARIANCE = [0.1, 0.2]
# BGR mean subtracted from the input image (ImageNet means in 0..255, BGR order).
BGR_MEAN = (104.0, 117.0, 123.0)

CONFIGS: dict[str, dict] = {
    "mnet": {
        "name": "mobilenet0.25",
        "min_sizes": MIN_SIZES,
        "steps": STEPS,
        "variance": VARIANCE,
        "clip": False,
        "loc_weight": 2.0,
        # Width of the deepest backbone stage / 8: FPN inputs are in_channel * (2, 4, 8).
        "in_channel": 32,
        "out_channel": 64,
        # Backbone stages whose outputs feed the FPN (strides 8, 16, 32).
        "return_layers": {"stage1": 1, "stage2": 2, "stage3": 3},
        # Training image size of the published model (square crops).
        "image_size": 640,
        "batch_size": 32,
        "epochs": 250,
        "decay1": 190,
        "decay2": 220,
    },
    "resnet": {
        "name": "Resnet50",
        "min_sizes": MIN_SIZES,
        "steps": STEPS,
        "variance": VARIANCE,
        "clip": False,
        "loc_weight": 2.0,
        "in_channel": 256,
        "out_channel": 256,
        "return_layers": {"layer2": 1, "layer3": 2, "layer4": 3},
        "image_size": 840,
        "batch_size": 24,
        "epochs": 100,
        "decay1": 70,
        "decay2": 90,
    },
}

BACKBONES = tuple(CONFIGS)
# Every backbone a Detector runs: the RetinaFace ones above plus YuNet-n (detection/yunet.py,
# inference only). The one list the CLI, the nodes' parameters and the benchmarks offer.
YUNET = "yunet"
DETECTOR_BACKBONES = BACKBONES + (YUNET,)
# Score threshold a Detector uses when given none. YuNet's scores (geometric mean of its class
# and objectness probabilities) run higher than RetinaFace's softmax: 0.87 is the highest
# threshold at which its recall on the test photos and sequences is at least mnet's at 0.5
# (python -m benchmarks.detectors; docs/detection.md#yunet).
DEFAULT_SCORE_THRESHOLDS = {"mnet": 0.5, "resnet": 0.5, YUNET: 0.87}


def default_score_threshold(backbone: str) -> float:
    """The score threshold of ``backbone`` when none is given (0.5 for an unlisted one)."""
    return DEFAULT_SCORE_THRESHOLDS.get(backbone, 0.5)


def get_config(backbone: str) -> dict:
    """A copy of the config of ``backbone`` ('mnet' or 'resnet'); callers may modify it."""
    try:
        return copy.deepcopy(CONFIGS[backbone])
    except KeyError:
        raise ValueError(
            f"unknown RetinaFace backbone {backbone!r}; choose one of {list(BACKBONES)}") from None


def fpn_in_channels(cfg: dict) -> list[int]:
    """Channel counts of the three backbone outputs that enter the FPN."""
    base = cfg["in_channel"]
    return [base * 2, base * 4, base * 8]


def leaky_slope(cfg: dict) -> float:
    """Negative slope of the FPN/SSH activations: leaky 0.1 for the thin mnet, plain ReLU above."""
    return 0.1 if cfg["out_channel"] <= 64 else 0.0
