"""AP and recall of a detector on WIDER-format samples (the learner's ``eval``, the CLI's
``detector-eval`` and validation during training), and the validation a training run calls
after its epochs: the network being trained, through the same ``Detector`` code."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from face_perception.detection.wider import WiderSample
from face_perception.imageio import read_image_bgr

# Score threshold for evaluation: low, so the precision/recall curve covers the whole range.
EVAL_SCORE_THRESHOLD = 0.02
EVAL_NMS_THRESHOLD = 0.4
# Test-time pyramid (pyramid=True): factors on top of the base size.
EVAL_PYRAMID = (0.5, 1.0, 1.5)


def evaluate_samples(detector, samples: list[WiderSample], iou_threshold: float = 0.5,
                     verbose: bool = False) -> dict:
    """``{"ap", "recall", "precision", "num_images", "num_faces", "<difficulty>": {...}}`` of
    ``detector`` on ``samples`` (AP at IoU ``iou_threshold``, VOC all-point)."""
    from face_perception.detection.evaluation import evaluate_detection_dataset

    detections = []
    for i, sample in enumerate(samples):
        faces = detector.detect(read_image_bgr(sample.image_path))
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


def training_validation(model, samples: list[WiderSample], image_size: int,
                        device: str) -> Callable[[int], dict]:
    """``evaluate(epoch)`` of a run: the network as it is after that epoch, one pass (no
    pyramid, no flip) at the training size (long side at most twice that)."""
    from face_perception.detection.detector import Detector

    def evaluate(epoch: int) -> dict:
        detector = Detector.from_torch_model(
            model, device=device, score_threshold=EVAL_SCORE_THRESHOLD,
            nms_threshold=EVAL_NMS_THRESHOLD, target_size=image_size, max_size=2 * image_size,
            scales=None, flip=False, upscale=True)  # the seed's size rule enlarges small images
        return evaluate_samples(detector, samples)

    return evaluate
