"""Callbacks of a training loop: what runs after a step, after an epoch and at the end of a
run (checkpointing, validation and the best model, progress) is a ``Callback`` the loop calls,
not code inside the loop. Detection counts in epochs, recognition in steps (iterations); each
periodic callback says which it counts."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class RunState:
    """Where a run is, as the callbacks see it: ``step`` optimizer steps and ``epoch`` epochs
    done of ``total`` (steps or epochs: the loop's unit); ``stats`` is the loop's result dict,
    which callbacks may add to."""

    total: int
    step: int = 0
    epoch: int = 0
    stats: dict = field(default_factory=dict)
    scalars: dict = field(default_factory=dict)  # the last step's figures (loss, lr, ...)
    images: int = 0                              # images the last step trained on

    def count(self, unit: str) -> int:
        return self.epoch if unit == "epoch" else self.step


class Callback:
    """A training hook; every method is optional. ``on_step`` runs after each optimizer step,
    ``on_epoch_end`` after each epoch, ``on_train_end`` once after the last."""

    def on_step(self, run: RunState) -> None:
        pass

    def on_epoch_end(self, run: RunState) -> None:
        pass

    def on_train_end(self, run: RunState) -> None:
        pass


class Callbacks(Callback):
    """Several callbacks called in order (the order is part of the run: a checkpoint taken after
    a validation holds that validation's result)."""

    def __init__(self, callbacks):
        self.callbacks = [c for c in callbacks if c is not None]

    def on_step(self, run: RunState) -> None:
        for c in self.callbacks:
            c.on_step(run)

    def on_epoch_end(self, run: RunState) -> None:
        for c in self.callbacks:
            c.on_epoch_end(run)

    def on_train_end(self, run: RunState) -> None:
        for c in self.callbacks:
            c.on_train_end(run)


class Periodic(Callback):
    """Calls ``action(count)`` every ``every`` steps or epochs (``unit``); 0 turns it off."""

    def __init__(self, every: int, unit: str, action: Callable[[int], None]):
        if unit not in ("step", "epoch"):
            raise ValueError(f"unit must be 'step' or 'epoch', got {unit!r}")
        self.every, self.unit, self.action = int(every), unit, action

    def due(self, run: RunState) -> bool:
        return bool(self.every) and run.count(self.unit) % self.every == 0

    def on_step(self, run: RunState) -> None:
        if self.unit == "step" and self.due(run):
            self.action(run.step)

    def on_epoch_end(self, run: RunState) -> None:
        if self.unit == "epoch" and self.due(run):
            self.action(run.epoch)


class Checkpointing(Periodic):
    """Saves a checkpoint every ``every`` steps or epochs: ``save(count)`` writes it and
    returns its path, kept in ``paths``."""

    def __init__(self, every: int, unit: str, save: Callable[[int], object]):
        self.paths: list = []
        super().__init__(every, unit, lambda count: self.paths.append(str(save(count))))


class Validation(Periodic):
    """Validates every ``every`` steps or epochs and, with ``final``, once more at the end when
    the last count was not one of them. ``evaluate(count)`` returns a result dict (or None:
    nothing to validate); ``score(result)`` the figure the best model is chosen by (higher is
    better); ``on_best(count, result)`` runs when a result beats every earlier one, including
    those of the run a resume continues (``restore``)."""

    def __init__(self, every: int, unit: str, evaluate: Callable[[int], Optional[dict]],
                 score: Optional[Callable[[dict], float]] = None,
                 on_best: Optional[Callable[[int, dict], None]] = None, final: bool = False):
        super().__init__(every, unit, self._validate)
        self.evaluate, self.score, self.on_best, self.final = evaluate, score, on_best, final
        self.best: Optional[float] = None
        self.results: list = []  # (count, result)

    def restore(self, best: Optional[float]) -> None:
        self.best = best

    def _validate(self, count: int) -> None:
        result = self.evaluate(count)
        if result is None:
            return
        self.results.append((count, result))
        if self.score is None:
            return
        value = self.score(result)
        if self.best is None or value > self.best:
            self.best = value
            if self.on_best is not None:
                self.on_best(count, result)

    def on_train_end(self, run: RunState) -> None:
        count = run.count(self.unit)
        if self.final and (not self.every or count % self.every):
            self._validate(count)


class Reporting(Callback):
    """Each step's (or epoch's: ``unit``) ``run.scalars`` to the progress display (TensorBoard,
    bar) and to the run's history lists: ``history`` maps a scalar's name to its list in
    ``run.stats``. The images/s of every report are kept in ``rates``."""

    def __init__(self, progress, history: dict, unit: str = "step"):
        self.progress, self.history, self.unit = progress, history, unit
        self.rates: list = []

    def _report(self, run: RunState) -> None:
        self.rates.append(self.progress.step(run.count(self.unit), run.scalars, run.images))
        for name, key in self.history.items():
            run.stats[key].append(run.scalars[name])

    def on_step(self, run: RunState) -> None:
        if self.unit == "step":
            self._report(run)

    def on_epoch_end(self, run: RunState) -> None:
        if self.unit == "epoch":
            self._report(run)
