"""Training throughput on this machine (not a test): images/s for mobilefacenet and ir_50 at
batch 32, ImageFolder vs RecordIO loading, one vs two DDP processes (gloo), with and without
batch norm over the global batch (sync_bn). Prints a table with
ratios. Run from the repository folder (it reuses the tests' dataset builder):
.venv/bin/python -m benchmarks.training [--iters N]"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from face_perception.data.recordio import write_recordio_dataset
from face_perception.recognition.training import TrainConfig, train
from test.training_data import augment, synthetic_face

REPO = Path(__file__).resolve().parents[1]


def make_data(root: Path, ids: int = 8, per: int = 16, size: int = 112):
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(ids):
        base = synthetic_face(i, size)
        for j in range(per):
            chip = augment(base, rng)
            (root / "folder" / f"id{i}").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "folder" / f"id{i}" / f"{j}.jpg"), chip)
            images.append(cv2.imencode(".jpg", chip)[1].tobytes())
            labels.append(i)
    write_recordio_dataset(root / "rec", images, labels, (size, size))
    return root / "folder", root / "rec"


def config(data, out, backbone, iters, batch=32, **kw):
    return TrainConfig(**kw, device="cpu", backbone=backbone, network_head="arcface", iters=iters,
                       batch_size=batch, stages=[], num_workers=0, dataset=str(data),
                       temp_path=str(out), silent=True, embedding_size=512, lr=0.01,
                       logging_path=str(Path(out) / "tb"))


def run(cfg) -> float:
    train(cfg)
    return tb_rate(cfg.logging_path)


def tb_rate(folder) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    values = [e.value for e in acc.Scalars("train/images_per_s")][1:]  # skip warm-up
    return float(np.median(values)) if values else float("nan")


def ddp(cfg, tmp: Path) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp / "ddp.yaml"
    cfg.save(path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_addr", "127.0.0.1", "--master_port", str(port), "-m",
                    "face_perception.cli", "train", str(path)], env=env, check=True,
                   capture_output=True)
    return tb_rate(cfg.logging_path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        folder, rec = make_data(tmp)
        rows = []
        mfn = run(config(folder, tmp / "a", "mobilefacenet", args.iters))
        rows.append(("mobilefacenet, ImageFolder, 1 process", mfn))
        rows.append(("mobilefacenet, RecordIO, 1 process",
                     run(config(rec, tmp / "b", "mobilefacenet", args.iters))))
        rows.append(("ir_50, ImageFolder, 1 process",
                     run(config(folder, tmp / "c", "ir_50", max(2, args.iters // 2)))))
        rows.append(("mobilefacenet, ImageFolder, 2 DDP processes (16 each)",
                     ddp(config(folder, tmp / "d", "mobilefacenet", args.iters, batch=16),
                         tmp)))
        rows.append(("  the same without sync_bn (per-process batch norm)",
                     ddp(config(folder, tmp / "e", "mobilefacenet", args.iters, batch=16,
                                sync_bn=False), tmp)))
    print(f"{'configuration (global batch 32, 112x112, CPU)':58s} {'images/s':>9s} "
          f"{'ratio':>6s}")
    for name, r in rows:
        print(f"{name:58s} {r:9.1f} {r / mfn:6.2f}")


if __name__ == "__main__":
    main()
