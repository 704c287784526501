"""What a training run reports while it runs: TensorBoard scalars (loss, accuracy, learning
rate, images/s, validation) under ``logging_path`` and a tqdm bar with loss, images/s and ETA."""
from __future__ import annotations

import re
import time
from pathlib import Path

_EVENT_FILE = re.compile(r"events\.out\.tfevents\.(\d+)\.")


def _after_existing_event_files(logging_path) -> None:
    """Wait, at most about a second, until the clock is past the newest event file's second.

    TensorBoard applies a resumed run's purge (drop the steps after its checkpoint) only when it
    reads that run's file after the interrupted one's, and it orders the files by name: the
    creation second, then host, pid and a per-process counter compared as text (``.10`` before
    ``.9``). Two runs in one second (or one process) could so be read in the wrong order and
    show the dropped steps twice; a later second always sorts after."""
    seconds = [int(m.group(1)) for p in Path(logging_path).glob("events.out.tfevents.*")
               if (m := _EVENT_FILE.match(p.name))]
    if not seconds:
        return
    newest = max(seconds)
    if newest > time.time() + 2:  # a clock set back: waiting would not help for long
        return
    while int(time.time()) <= newest:
        time.sleep(min(0.05, max(0.0, newest + 1 - time.time())))


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
            if start:
                _after_existing_event_files(logging_path)
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
