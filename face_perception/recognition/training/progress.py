"""What a training run reports while it runs: TensorBoard scalars (loss, accuracy, learning
rate, images/s, validation) under ``logging_path`` and a tqdm bar with loss, images/s and ETA."""
from __future__ import annotations

import time


class Progress:
    """One per run; only the main process writes. ``silent`` turns the bar and prints off."""

    def __init__(self, logging_path: str, total: int, start: int, silent: bool,
                 enabled: bool = True):
        self.writer = None
        self.bar = None
        self.silent = silent or not enabled
        if enabled and logging_path:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(logging_path))
        if not self.silent:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True,
                            desc="train")
        self._t = time.perf_counter()

    def step(self, iteration: int, loss: float, accuracy: float, lr: float,
             images: int) -> float:
        now = time.perf_counter()
        rate = images / max(now - self._t, 1e-9)
        self._t = now
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, iteration)
            self.writer.add_scalar("train/accuracy", accuracy, iteration)
            self.writer.add_scalar("train/lr", lr, iteration)
            self.writer.add_scalar("train/images_per_s", rate, iteration)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.1f}", lr=f"{lr:.3g}")
            self.bar.update(1)
        return rate

    def validation(self, iteration: int, metrics: dict) -> None:
        if self.writer is not None:
            self.writer.add_scalar("val/accuracy", metrics["accuracy_mean"], iteration)
            self.writer.add_scalar("val/auc", metrics["auc"], iteration)
        self.message(f"iteration {iteration}: validation accuracy "
                     f"{metrics['accuracy_mean']:.4f}, AUC {metrics['auc']:.4f}")

    def message(self, text: str) -> None:
        if self.silent:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
