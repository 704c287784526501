"""What a training run reports while it runs: TensorBoard scalars (loss, accuracy, learning
rate, images/s, validation) under ``logging_path`` and a tqdm bar with loss, images/s and ETA."""
from __future__ import annotations

import time


class Progress:
    """One per run; only the main process writes. ``silent`` turns the bar and prints off."""

    def __init__(self, logging_path: str, total: int, start: int, silent: bool,
                 enabled: bool = True, verbose: bool = True):
        self.writer = None
        self.bar = None
        self.silent = silent or not enabled
        self.verbose = verbose
        if enabled and logging_path:
            from torch.utils.tensorboard import SummaryWriter

            # a resumed run drops the events the interrupted one wrote after its checkpoint,
            # so that no step appears twice
            self.writer = SummaryWriter(log_dir=str(logging_path),
                                        purge_step=start + 1 if start else None)
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

    def restart_clock(self) -> None:
        """The next step's images/s counts from now (not the validation or checkpoint time
        spent since the last step)."""
        self._t = time.perf_counter()

    def validation(self, iteration: int, metrics: dict, name: str = "") -> None:
        """One validation set's figures (``name``: its tag when there are several)."""
        prefix = f"val/{name}/" if name else "val/"
        if self.writer is not None:
            self.writer.add_scalar(prefix + "accuracy", metrics["accuracy_mean"], iteration)
            self.writer.add_scalar(prefix + "auc", metrics["auc"], iteration)
            self.writer.add_scalar(prefix + "accuracy_at_threshold",
                                   metrics["accuracy_at_threshold"], iteration)
        self.message(f"iteration {iteration}: validation{' ' + name if name else ''} accuracy "
                     f"{metrics['accuracy_mean']:.4f}, AUC {metrics['auc']:.4f}")

    def message(self, text: str) -> None:
        if self.silent or not self.verbose:
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
