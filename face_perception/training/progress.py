"""What a training run reports while it runs: TensorBoard scalars (loss, accuracy, learning
rate, images/s, validation) under ``logging_path``, a tqdm bar with loss, images/s and ETA, and
the run's messages (through the bar, so that they do not break it)."""
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
                 enabled: bool = True, verbose: bool = True, bar: bool = True,
                 unit: str = "it"):
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
        if not self.silent and bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit=unit, dynamic_ncols=True,
                            desc="train")
        self._t = time.perf_counter()

    def step(self, position: int, scalars: dict, images: int) -> float:
        """One step done: ``scalars`` ({"loss": ..., "accuracy": ..., "lr": ...}) go to
        TensorBoard as ``train/<name>`` with the images/s since the last step, which is
        returned."""
        now = time.perf_counter()
        rate = images / max(now - self._t, 1e-9)
        self._t = now
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(f"train/{name}", value, position)
            self.writer.add_scalar("train/images_per_s", rate, position)
        if self.bar is not None:
            shown = {k: f"{v:.4f}" for k, v in scalars.items() if k == "loss"}
            shown["img_s"] = f"{rate:.1f}"
            if "lr" in scalars:
                shown["lr"] = f"{scalars['lr']:.3g}"
            self.bar.set_postfix(**shown)
            self.bar.update(1)
        return rate

    def restart_clock(self) -> None:
        """The next step's images/s counts from now (not the validation or checkpoint time
        spent since the last step)."""
        self._t = time.perf_counter()

    def scalars(self, position: int, values: dict, prefix: str) -> None:
        """Figures of ``position`` other than the step's (validation: ``prefix`` 'val/')."""
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(prefix + name, value, position)

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
