"""Training speed of RetinaFace on this machine: images/s of one SGD step (forward, multibox
loss, backward, update) for mnet and resnet, with ratios to mnet. Not a test.

    .venv/bin/python benchmarks/detection_training.py [--quick] [--size 640] [--batch 4]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from face_perception.detection.config import get_config
from face_perception.detection.loss import MultiBoxLoss
from face_perception.detection.priors import prior_boxes_for
from face_perception.detection.retinaface import RetinaFace


def random_targets(batch: int, rng: np.random.Generator) -> list[dict]:
    """A few faces per image at random places and sizes (normalised coordinates)."""
    out = []
    for _ in range(batch):
        n = int(rng.integers(1, 6))
        centre = rng.uniform(0.15, 0.85, (n, 2))
        size = rng.uniform(0.03, 0.3, (n, 1))
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        pts = np.repeat(centre, 5, axis=0).reshape(n, 10) + rng.normal(0, 0.01, (n, 10))
        out.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                    "landmarks": torch.tensor(pts, dtype=torch.float32),
                    "has_landmarks": torch.ones(n, dtype=torch.bool)})
    return out


def time_steps(backbone: str, size: int, batch: int, steps: int) -> float:
    """Seconds per SGD step (median of ``steps`` after one warm-up step)."""
    cfg = get_config(backbone)
    model = RetinaFace(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    criterion = MultiBoxLoss(cfg["variance"], loc_weight=cfg["loc_weight"])
    priors = torch.from_numpy(prior_boxes_for(cfg, size, size).copy())
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.normal(0, 60, (batch, 3, size, size)).astype(np.float32))
    times = []
    for i in range(steps + 1):
        targets = random_targets(batch, rng)
        start = time.perf_counter()
        loss, _ = criterion(model(images), priors, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="320 px, 2 steps: just check it runs")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    size, steps = (320, 2) if args.quick else (args.size, args.steps)
    print(f"RetinaFace training step, {size}x{size}, batch {args.batch}, "
          f"{torch.get_num_threads()} torch threads")
    rows = []
    for backbone in ("mnet", "resnet"):
        sec = time_steps(backbone, size, args.batch, steps)
        rows.append((backbone, sec))
    base = rows[0][1]
    print(f"{'backbone':<10}{'s/step':>10}{'images/s':>10}{'vs mnet':>10}")
    for backbone, sec in rows:
        print(f"{backbone:<10}{sec:>10.3f}{args.batch / sec:>10.1f}{sec / base:>9.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
