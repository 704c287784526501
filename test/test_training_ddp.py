"""Data-parallel training on the CPU: two real processes under torchrun (gloo) through
``face-perception train`` give the loss curve of one process with the same global batch, with
the head replicated and with partial FC (classes sharded across the two processes), in mode
head_only and in mode full (batch norm over the global batch); a partial-FC checkpoint of two
processes resumes in one."""
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from face_perception.recognition.training import TrainConfig, train
from face_perception.training.checkpoint import read_checkpoint
from test import training_data
from test.proc import hang_guard

ITERS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tensorboard_losses(folder) -> list:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return [e.value for e in acc.Scalars("train/loss")]


@pytest.fixture(scope="module")
def data(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("ddp")
    train_dir, _ = training_data.build(root, photos, size=32, synthetic=6, per_identity=8,
                                       held_out=0, chips={})
    return root, train_dir


def _config(root, train_dir, name, batch, **kw) -> TrainConfig:
    args = dict(device="cpu", backbone="mobilefacenet", network_head="arcface",
                input_size=[32, 32], embedding_size=64, iters=ITERS, batch_size=batch, lr=0.01,
                stages=[], num_workers=0, dataset=str(train_dir), temp_path=str(root / name),
                logging_path=str(root / name / "tb"), silent=True)
    return TrainConfig(**{**args, **kw})


def _torchrun(root, cfg: TrainConfig, name: str) -> list:
    cfg_file = root / f"{name}.yaml"
    cfg.save(cfg_file)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "face_perception.cli", "train", str(cfg_file)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=hang_guard(280))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (root / name / "model" / "backbone.json").is_file()
    assert (root / name / "model" / "head.json").is_file()
    return _tensorboard_losses(root / name / "tb")


@pytest.fixture(scope="module")
def single(data):
    root, train_dir = data
    return train(_config(root, train_dir, "single", 16))


@pytest.mark.parametrize("partial_fc", [False, True])
def test_two_processes_train_a_head_exactly_as_one_process(data, single, partial_fc):
    """Mode head_only: the frozen backbone runs with its running statistics, so splitting the
    batch changes nothing and the curves agree to float precision: DDP's gradient averaging and
    the sharded softmax of partial FC are exact."""
    root, train_dir = data
    kw = dict(mode="head_only", init_model=single["model_folder"], network_head="cosface")
    one = train(_config(root, train_dir, "single_head", 16, **kw))["loss_history"]
    ddp = _torchrun(root, _config(root, train_dir, f"head_pfc{int(partial_fc)}", 8,
                                  partial_fc=partial_fc, **kw), f"head_pfc{int(partial_fc)}")
    assert len(ddp) == len(one) == ITERS
    assert one[-1] < one[0]
    np.testing.assert_allclose(ddp, one, rtol=1e-4)


@pytest.fixture(scope="module")
def single64(data):
    root, train_dir = data
    return train(_config(root, train_dir, "single64", 16, precision="float64",
                         checkpoint_after_iter=2))


@pytest.mark.parametrize("partial_fc", [False, True])
def test_two_processes_train_the_whole_model_as_one_process(data, single64, partial_fc):
    """Mode full: batch norm runs over the global batch (GlobalBatchNorm, sync_bn on by
    default), so two processes of 8 images take the steps one process of 16 takes.

    Compared in float64 within rtol 1e-6: on this tiny set at 32x32 each step moves the early
    convolutions by about their own size, and float32 gradients of two equally valid summation
    orders (split batch vs whole batch) already differ by ~0.1% (their error against float64
    is ~0.4% in one process too), which grows to percents within four steps. In float64 the
    rounding differences start near 1e-13 and stay far below 1e-6 over these steps, so the
    check is tight enough to catch any missing term of the global batch statistics (without
    them the second loss differs by several percent)."""
    root, train_dir = data
    name = f"full_pfc{int(partial_fc)}"
    ddp = _torchrun(root, _config(root, train_dir, name, 8, partial_fc=partial_fc,
                                  precision="float64", checkpoint_after_iter=2), name)
    one = single64["loss_history"]
    assert len(ddp) == len(one) == ITERS
    assert one[-1] < one[0]
    print(f"{name}: losses {ddp}; largest relative difference to one process "
          f"{np.max(np.abs(np.subtract(ddp, one)) / np.abs(one)):.1e}")
    np.testing.assert_allclose(ddp, one, rtol=1e-6)
    if partial_fc:
        # Its checkpoint holds the whole head (and momentum): one process resumes it.
        ckpt_file = root / name / "checkpoints" / "checkpoint_2.pth"
        assert not list((root / name / "checkpoints").glob("*.rank*.pth"))
        resume = root / "resume_2to1"
        (resume / "checkpoints").mkdir(parents=True)
        shutil.copy(ckpt_file, resume / "checkpoints")
        resumed = train(_config(root, train_dir, "resume_2to1", 16, precision="float64",
                                checkpoint_load_iter=2, partial_fc=True))
        assert resumed["start_iteration"] == 2
        np.testing.assert_allclose(resumed["loss_history"], ddp[2:], rtol=1e-6)
        # ... and continues as the uninterrupted single process from its own checkpoint
        whole = read_checkpoint(ckpt_file, "recognition")
        mine = read_checkpoint(root / "single64" / "checkpoints" / "checkpoint_2.pth",
                               "recognition")
        for key, value in mine.models["head"].items():
            torch.testing.assert_close(whole.models["head"][key], value, rtol=1e-6, atol=1e-9)
        assert mine.optimizer["state"].keys() == whole.optimizer["state"].keys()


def test_without_drop_last_two_processes_share_uneven_batches_as_one_process(data, single):
    """48 images in global batches of 10, drop_last false: every epoch is 5 batches (10, 10,
    10, 9, 9), the 9s split 5 + 4 between the processes (never an empty or one-image slice;
    partial FC gathers the uneven slices), past the end of the first epoch; the head_only curve
    equals one process with the whole batch."""
    root, train_dir = data
    kw = dict(mode="head_only", init_model=single["model_folder"], network_head="cosface",
              drop_last=False, iters=ITERS + 2)
    one = train(_config(root, train_dir, "uneven_one", 10, **kw))["loss_history"]
    ddp = _torchrun(root, _config(root, train_dir, "uneven_ddp", 5, partial_fc=True, **kw),
                    "uneven_ddp")
    assert len(ddp) == len(one) == ITERS + 2
    np.testing.assert_allclose(ddp, one, rtol=1e-4)


def test_two_processes_sample_their_shards_of_the_class_centres(tmp_path, photos):
    """partial FC with sample_rate 0.5 under two gloo processes: 16 classes in shards of 8,
    global batches of 4 (at most 4 positives), so each process keeps 4 centres a step. The
    first step starts from the same weights with and without sampling, and a softmax over a
    subset of the classes that holds the target has the smaller loss; a resume on two
    processes repeats the run exactly."""
    train_dir, _ = training_data.build(tmp_path, photos, size=32, synthetic=16, per_identity=3,
                                       held_out=0, chips={})
    losses = {}
    for rate in (1.0, 0.5):
        name = f"sampled_{rate}"
        losses[rate] = _torchrun(tmp_path, _config(tmp_path, train_dir, name, 2, partial_fc=True,
                                                   sample_rate=rate, loss="softmax",
                                                   checkpoint_after_iter=2), name)
        assert len(losses[rate]) == ITERS and np.all(np.isfinite(losses[rate]))
    # each process's draws are a function of (seed, step, rank): two processes resumed from
    # the checkpoint of step 2 repeat the uninterrupted run
    resume = tmp_path / "sampled_resume"
    (resume / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "sampled_0.5" / "checkpoints" / "checkpoint_2.pth",
                resume / "checkpoints")
    resumed = _torchrun(tmp_path, _config(tmp_path, train_dir, "sampled_resume", 2,
                                          partial_fc=True, sample_rate=0.5, loss="softmax",
                                          checkpoint_load_iter=2), "sampled_resume")
    assert resumed[-2:] == losses[0.5][2:]
    print(f"two processes, partial FC: losses {losses[1.0]} (all centres), {losses[0.5]} "
          "(sample_rate 0.5)")
    assert losses[0.5][0] < losses[1.0][0]
    head = torch.load(tmp_path / "sampled_0.5" / "model" / "head.pth", weights_only=True)
    assert head["weight"].shape[0] == 16  # the whole head, gathered from the two shards
