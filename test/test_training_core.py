"""The shared training core (face_perception/training/): one schedule, one checkpoint format
(sha256, RNG state of python/numpy/torch, weights_only, clear errors for damaged or foreign
files) and the callbacks both training loops run on."""
import random

import numpy as np
import pytest
import torch

from face_perception.training.callbacks import Callbacks, Checkpointing, RunState, Validation
from face_perception.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from face_perception.training.schedule import learning_rate, step_lr


def _checkpoint(**kw):
    args = dict(kind="detection", epoch=2, step=7, models={"model": {"w": torch.arange(4.0)}},
                optimizer={"state": {}, "param_groups": []}, identity={"backbone": "mnet"},
                rng=rng_state())
    return Checkpoint(**{**args, **kw})


def test_step_schedule_divides_by_ten_at_each_stage_in_any_unit():
    assert [step_lr(1.0, [2, 4], p) for p in range(5)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.1, 0.01])
    assert [learning_rate(1.0, p, 5, "step", [2, 4]) for p in range(5)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.1, 0.01])
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        learning_rate(1.0, 3, 5, "linear")


def test_checkpoint_round_trip_restores_every_random_generator(tmp_path):
    path = tmp_path / "c.pth"
    save_checkpoint(path, _checkpoint())
    drawn = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    loaded = read_checkpoint(path, "detection")
    assert (loaded.epoch, loaded.step, loaded.identity) == (2, 7, {"backbone": "mnet"})
    assert torch.equal(loaded.models["model"]["w"], torch.arange(4.0))
    set_rng_state(loaded.rng)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == drawn
    assert (tmp_path / "c.pth.sha256").read_text().split()[0] != ""


def test_a_modified_checkpoint_fails_its_checksum_naming_the_file(tmp_path):
    path = tmp_path / "c.pth"
    save_checkpoint(path, _checkpoint())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"checksum mismatch for {path}"):
        read_checkpoint(path, "detection")


def test_a_truncated_checkpoint_without_its_sha256_is_refused_clearly(tmp_path):
    path = tmp_path / "c.pth"
    save_checkpoint(path, _checkpoint())
    (tmp_path / "c.pth.sha256").unlink()  # copied alone: loads unverified, but never pickled
    assert read_checkpoint(path, "detection").step == 7
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=f"{path} is not a training checkpoint loadable "
                                              "with weights_only=True"):
        read_checkpoint(path, "detection")


def test_foreign_files_and_the_other_kind_are_refused(tmp_path):
    path = tmp_path / "c.pth"
    save_checkpoint(path, _checkpoint())
    with pytest.raises(CheckpointError, match="is a detection checkpoint, not a recognition one"):
        read_checkpoint(path, "recognition")
    other = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="weights.pth is not a face_perception detection "
                                              "training checkpoint"):
        read_checkpoint(other, "detection")
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nowhere.pth"):
        read_checkpoint(tmp_path / "nowhere.pth", "detection")


def test_periodic_callbacks_run_in_order_and_validation_runs_once_more_at_the_end():
    calls = []
    scores = iter([0.5, 0.4, 0.9])
    validation = Validation(2, "step", lambda n: calls.append(("val", n)) or {"s": next(scores)},
                            score=lambda r: r["s"], on_best=lambda n, r: calls.append(("best", n)),
                            final=True)
    checkpointing = Checkpointing(2, "step", lambda n: calls.append(("ckpt", n)) or f"c{n}")
    hooks = Callbacks([validation, checkpointing])
    run = RunState(total=5)
    for step in range(1, 6):
        run.step = step
        hooks.on_step(run)
    hooks.on_train_end(run)
    assert calls == [("val", 2), ("best", 2), ("ckpt", 2), ("val", 4), ("ckpt", 4), ("val", 5),
                     ("best", 5)]
    assert checkpointing.paths == ["c2", "c4"]
    assert [n for n, _ in validation.results] == [2, 4, 5]
