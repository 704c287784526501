"""Training throughput on this machine (not a test), every row with its thread count stated:
images/s of the training loop against a minimal PyTorch loop of the same model and head (a
ratio near 1 means the loop, loading and bookkeeping cost little), ImageFolder vs RecordIO
loading, one vs two DDP processes (gloo; with and without sync_bn), and the same rows again
with every core kept busy by spinning processes (a robot's CPU runs other nodes).

Run from the repository folder (it reuses the tests' dataset builder):
.venv/bin/python -m benchmarks.training [--iters N] [--busy] [--ir50]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from face_perception.data.recordio import write_recordio_dataset
from face_perception.recognition.training import TrainConfig, train
from face_perception.threads import usable_cores
from test.training_data import augment, synthetic_face

REPO = Path(__file__).resolve().parents[1]
BATCH = 32


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


def config(data, out, backbone, iters, threads, batch=BATCH, **kw):
    return TrainConfig(**kw, device="cpu", backbone=backbone, network_head="arcface", iters=iters,
                       batch_size=batch, stages=[], num_workers=0, dataset=str(data),
                       temp_path=str(out), silent=True, embedding_size=512, lr=0.01,
                       threads=threads, logging_path=str(Path(out) / "tb"))


def run(cfg) -> float:
    train(cfg)
    return tb_rate(cfg.logging_path)


def tb_rate(folder) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    values = [e.value for e in acc.Scalars("train/images_per_s")][1:]  # skip warm-up
    return float(np.median(values)) if values else float("nan")


def plain_loop(backbone: str, iters: int, threads: int) -> float:
    """The same model, head and optimizer in the shortest PyTorch loop: one random batch in
    memory, forward, cross-entropy, backward, SGD step. Median images/s after one warm-up."""
    import torch

    from face_perception.recognition.backbones import get_model
    from face_perception.recognition.heads import get_head
    from face_perception.threads import set_torch_threads

    set_torch_threads(threads)
    torch.manual_seed(0)
    net = get_model(backbone, embedding_size=512, input_size=(112, 112))
    head = get_head("arcface", 512, 8)
    opt = torch.optim.SGD(list(net.parameters()) + list(head.parameters()), lr=0.01,
                          momentum=0.9)
    x, y = torch.randn(BATCH, 3, 112, 112), torch.randint(0, 8, (BATCH,))
    rates = []
    for _ in range(iters):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(head(net(x), y), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rates.append(BATCH / (time.perf_counter() - start))
    return float(np.median(rates[1:]))


def ddp(cfg, tmp: Path) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp / f"ddp_{port}.yaml"
    cfg.save(path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_addr", "127.0.0.1", "--master_port", str(port), "-m",
                    "face_perception.cli", "train", str(path)], env=env, check=True,
                   capture_output=True)
    return tb_rate(cfg.logging_path)


@contextlib.contextmanager
def busy_cores(count: int):
    """``count`` processes spinning at full speed for the duration (stopped by their pids)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(count)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def measure(tmp: Path, folder: Path, rec: Path, iters: int, ir50: bool, tag: str) -> list:
    rows = []
    for threads in (1, 2):
        loop = run(config(folder, tmp / f"{tag}a{threads}", "mobilefacenet", iters, threads))
        rows.append((f"mobilefacenet, ImageFolder, 1 process, {threads} thread(s)", loop,
                     plain_loop("mobilefacenet", iters, threads)))
    rows.append(("mobilefacenet, RecordIO, 1 process, 1 thread",
                 run(config(rec, tmp / f"{tag}b", "mobilefacenet", iters, 1)), None))
    if ir50:
        n = max(3, iters // 2)
        rows.append(("ir_50, ImageFolder, 1 process, 1 thread",
                     run(config(folder, tmp / f"{tag}c", "ir_50", n, 1)),
                     plain_loop("ir_50", n, 1)))
    rows.append(("mobilefacenet, 2 DDP processes x 16, 1 thread each, sync_bn",
                 ddp(config(folder, tmp / f"{tag}d", "mobilefacenet", iters, 1, batch=16), tmp),
                 None))
    rows.append(("  the same without sync_bn (per-process batch norm)",
                 ddp(config(folder, tmp / f"{tag}e", "mobilefacenet", iters, 1, batch=16,
                            sync_bn=False), tmp), None))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--busy", action="store_true",
                    help="also measure with one spinning process per core")
    ap.add_argument("--ir50", action="store_true", help="add ir_50 rows (slow on a CPU)")
    args = ap.parse_args()
    cores = usable_cores()
    tables, loads = [], []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        folder, rec = make_data(tmp)
        loads.append(os.getloadavg()[0])
        tables.append(("none added", measure(tmp, folder, rec, args.iters, args.ir50, "i")))
        if args.busy:
            with busy_cores(cores):
                loads.append(os.getloadavg()[0])
                tables.append((f"{cores} spinning procs",
                               measure(tmp, folder, rec, args.iters, args.ir50, "b")))
    print(f"global batch {BATCH}, 112x112, CPU, {cores} usable cores, {args.iters} iterations "
          f"(the first not counted); 1-minute load average when each table started: "
          + ", ".join(f"{v:.1f}" for v in loads))
    base = tables[0][1][0][1]
    head = (f"{'configuration':62s} {'load we add':>20s} {'images/s':>9s} "
            f"{'vs row 1':>9s} {'plain loop':>11s} {'loop/plain':>11s}")
    print(head)
    for load_name, rows in tables:
        for name, rate, plain in rows:
            plain_text = f"{plain:11.1f} {rate / plain:11.2f}" if plain else \
                f"{'':11s} {'':11s}"
            print(f"{name:62s} {load_name:>20s} {rate:9.1f} {rate / base:9.2f} {plain_text}")
    if len(tables) == 2:
        print("busy / idle, row by row: " + ", ".join(
            f"{b[1] / a[1]:.2f}" for a, b in zip(tables[0][1], tables[1][1])))


if __name__ == "__main__":
    main()
