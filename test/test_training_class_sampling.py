"""Partial FC's class sampling (``sample_rate``, arcface_torch's PartialFC v2): the positives of
the batch plus random other centres, logits and gradients over those only; 1.0 is the plain
head bit for bit; a sampled run learns, resumes bit-identically and runs under two gloo
processes."""
import shutil

import numpy as np
import pytest
import torch

from face_perception.recognition.heads import HEAD_NAMES, get_head
from face_perception.recognition.training import TrainConfig, train
from face_perception.recognition.training.class_sampling import ClassSampler, sampled_head
from face_perception.recognition.training.distributed import class_keys
from test import training_data

CLASSES = 16


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("sampling")
    return training_data.build(root, photos, size=32, synthetic=CLASSES, per_identity=3,
                               held_out=0, chips={})[0]


def _cfg(train_dir, temp, **kw):
    args = dict(device="cpu", backbone="mobilefacenet", network_head="arcface",
                input_size=[32, 32], embedding_size=32, iters=6, batch_size=4, lr=0.05,
                stages=[], num_workers=0, dataset=str(train_dir), temp_path=str(temp),
                silent=True)
    return TrainConfig(**{**args, **kw})


def test_the_sample_keeps_every_positive_and_fills_up_with_other_classes():
    sampler = ClassSampler(0.5, 20, seed=3)
    labels = torch.tensor([7, 2, 7, -1, 19])  # -1: a sample of another process's shard
    sampler.at(5)
    index, remapped = sampler.choose(labels)
    assert len(index) == 10 and torch.equal(index, index.sort().values)
    assert {2, 7, 19} <= set(index.tolist())
    assert remapped[3] == -1
    assert torch.equal(index[remapped[[0, 1, 2, 4]]], labels[[0, 1, 2, 4]])
    # a pure function of (seed, iteration, micro-batch, rank): resume draws the same
    sampler.at(5)
    assert torch.equal(sampler.choose(labels)[0], index)
    sampler.at(6)
    assert not torch.equal(sampler.choose(labels)[0], index)
    # more positives than the count: the positives alone
    few = ClassSampler(0.1, 20, seed=3)
    assert few.choose(labels)[0].tolist() == [2, 7, 19]


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_all_classes_sampled_is_the_plain_head_bit_for_bit(name):
    torch.manual_seed(0)
    head = get_head(name, 8, 6).train()
    twin = get_head(name, 8, 6).train()
    twin.load_state_dict(head.state_dict())
    emb = torch.randn(5, 8)
    labels = torch.tensor([0, 3, 5, 3, 1])
    keys = class_keys(head.state_dict(), 6)
    plain = head(emb, labels)
    cut = sampled_head(twin, keys, torch.arange(6), emb, labels)
    assert torch.equal(plain, cut)
    plain.logsumexp(1).sum().backward()
    cut.logsumexp(1).sum().backward()
    for (n, a), b in zip(head.named_parameters(), twin.parameters()):
        assert torch.equal(a.grad, b.grad), n
    for (n, a), b in zip(head.named_buffers(), twin.buffers()):
        assert torch.equal(a, b), n  # AdaFace's norm statistics move alike


def test_only_the_sampled_centres_get_gradients():
    torch.manual_seed(0)
    head = get_head("arcface", 8, 20)
    sampler = ClassSampler(0.25, 20, seed=1)
    labels = torch.tensor([4, 11])
    index, remapped = sampler.choose(labels)
    logits = sampled_head(head, {"weight"}, index, torch.randn(2, 8), remapped)
    assert logits.shape == (2, 5)
    torch.nn.functional.cross_entropy(logits, remapped).backward()
    touched = torch.nonzero(head.weight.grad.abs().sum(1)).flatten()
    assert set(touched.tolist()) == set(index.tolist())


def test_sample_rate_one_trains_as_before_bit_for_bit(train_dir, tmp_path):
    before = train(_cfg(train_dir, tmp_path / "plain", iters=3))
    same = train(_cfg(train_dir, tmp_path / "one", iters=3, sample_rate=1.0))
    assert same["loss_history"] == before["loss_history"]
    a = torch.load(tmp_path / "plain" / "model" / "head.pth", weights_only=True)
    b = torch.load(tmp_path / "one" / "model" / "head.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_sampled_head_learns_and_resumes_bit_identically(train_dir, tmp_path):
    """The logged loss is over the sampled classes and noisy on batches of 8: compared as the
    means of the first and last quarter of 16 steps."""
    kw = dict(iters=16, batch_size=8, lr=0.1, loss="softmax", head_s=16.0, head_m=0.2,
              sample_rate=0.5)
    whole = train(_cfg(train_dir, tmp_path / "a", checkpoint_after_iter=6, **kw))
    losses = whole["loss_history"]
    print(f"sample_rate 0.5: loss {np.mean(losses[:4]):.2f} -> {np.mean(losses[-4:]):.2f}")
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4]), losses
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "checkpoints" / "checkpoint_6.pth",
                tmp_path / "b" / "checkpoints")
    resumed = train(_cfg(train_dir, tmp_path / "b", checkpoint_load_iter=6, **kw))
    assert resumed["loss_history"] == losses[6:]
    for part in ("backbone.pth", "head.pth"):
        a = torch.load(tmp_path / "a" / "model" / part, weights_only=True)
        b = torch.load(tmp_path / "b" / "model" / part, weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a), part
    # the rate is part of the run: a checkpoint of another rate is refused
    from face_perception.training.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="sample_rate"):
        train(_cfg(train_dir, tmp_path / "b", checkpoint_load_iter=6,
                   **{**kw, "sample_rate": 0.25}))


@pytest.mark.parametrize("rate", [0.0, 1.5, -0.1, "half", True])
def test_a_sample_rate_outside_zero_to_one_is_refused(train_dir, tmp_path, rate):
    with pytest.raises(ValueError, match="sample_rate"):
        _cfg(train_dir, tmp_path, sample_rate=rate)
