"""What arcface_torch and AdaFace users expect of a training config: warm-up with step, cosine
and polynomial schedules, epochs, AdamW (exact resume included), gradient clipping and
accumulation, bfloat16 on the CPU, AdaFace's augmentations, several validation sets with flip
test-time augmentation, ordered verification sets, and the thread setting."""
import numpy as np
import pytest
import torch

from face_perception.data.verification_bin import write_verification_bin
from face_perception.recognition import Embedder
from face_perception.recognition.backbones import get_model
from face_perception.recognition.heads import get_head
from face_perception.recognition.training import TrainConfig, train
from face_perception.recognition.training.data import Augmentation, BatchOrder, BatchSampler
from face_perception.recognition.training.validation import ValidationSet
from face_perception.training.checkpoint import read_checkpoint
from test import training_data


@pytest.fixture(scope="module")
def data(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("options")
    return training_data.build(root, photos, size=32, synthetic=4, per_identity=4, held_out=2,
                               chips={})


def _cfg(train_dir, temp, **kw):
    args = dict(device="cpu", backbone="mobilefacenet", network_head="arcface",
                input_size=[32, 32], embedding_size=32, iters=4, batch_size=4, lr=0.05,
                stages=[], num_workers=0, dataset=str(train_dir), temp_path=str(temp),
                silent=True)
    return TrainConfig(**{**args, **kw})


def test_schedules_warm_up_then_follow_step_cosine_or_poly():
    lrs = lambda cfg: [cfg.learning_rate(k, 10) for k in range(10)]  # noqa: E731
    warm = dict(lr=1.0, warmup_iters=2, stages=[5])
    assert lrs(TrainConfig(**warm))[:6] == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 0.1])
    cos = lrs(TrainConfig(**warm, lr_schedule="cosine"))
    assert cos[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert cos[2 + 4] == pytest.approx(0.5)          # half-way through the 8 after warm-up
    poly = lrs(TrainConfig(**warm, lr_schedule="poly"))
    assert poly[2 + 4] == pytest.approx(0.25)        # (1 - 1/2)^2
    assert all(a >= b for a, b in zip(cos[1:], cos[2:]))


def test_epochs_set_the_iterations(data, tmp_path):
    stats = train(_cfg(data[0], tmp_path, epochs=2, iters=1))  # 16 images / 4 = 4 per epoch
    assert stats["iterations"] == 8 and len(stats["loss_history"]) == 8


def test_adamw_with_augmentations_resumes_exactly(data, tmp_path):
    kw = dict(optimizer="adamw", lr=1e-3, network_head="adaface", aug_crop=0.5,
              aug_photometric=0.5, aug_low_res=0.5, checkpoint_after_iter=2)
    whole = train(_cfg(data[0], tmp_path / "a", **kw))
    resumed = train(_cfg(data[0], tmp_path / "b", iters=2, **kw))
    resumed = train(_cfg(data[0], tmp_path / "b", resume=True, **kw))
    assert resumed["start_iteration"] == 2
    assert resumed["loss_history"] == whole["loss_history"][2:]
    state = read_checkpoint(tmp_path / "a" / "checkpoints" / "checkpoint_2.pth", "recognition")
    assert "exp_avg_sq" in next(iter(state.optimizer["state"].values()))


def test_augmentations_are_a_pure_function_of_the_seed(data):
    chip = np.full((32, 32, 3), 128, np.uint8)
    chip[8:24, 8:24] = (30, 200, 90)
    aug = Augmentation(crop=1.0, photometric=1.0, low_res=1.0)
    a, b = aug(chip, 7), aug(chip, 7)
    assert np.array_equal(a, b) and not np.array_equal(a, chip)
    assert not np.array_equal(aug(chip, 8), a)


def test_gradient_clipping_bounds_the_first_step(data, tmp_path):
    cfg = _cfg(data[0], tmp_path, iters=1, clip_grad_norm=1e-3, momentum=0.0,
               weight_decay=0.0, lr=0.5)
    torch.manual_seed(cfg.seed)  # the run's initial weights, built in the run's order
    net = get_model("mobilefacenet", embedding_size=32, input_size=(32, 32))
    head = get_head("arcface", 32, 4)
    from face_perception.recognition.training import Trainer

    trainer = Trainer(cfg)
    trainer.fit()
    before = [p for _, p in net.named_parameters()] + [p for _, p in head.named_parameters()]
    after = [p for _, p in trainer.backbone.named_parameters()] + \
        [p for _, p in trainer.head.named_parameters()]
    step = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, before)))
    assert 0 < float(step.detach()) <= 0.5 * 1e-3 * (1 + 1e-4)


def test_accumulation_takes_consecutive_batches_per_step():
    order = BatchOrder(16, 4, seed=3)
    plain = list(BatchSampler(order, 1, 3, accumulate=1))
    accumulated = list(BatchSampler(order, 1, 3, accumulate=2))
    assert accumulated == [order.batch_at(k) for k in (2, 3, 4, 5)]
    assert len(plain) == 2 and len(accumulated) == 4


def test_accumulation_and_bfloat16_train_and_the_model_embeds(data, tmp_path):
    stats = train(_cfg(data[0], tmp_path, accumulate=2, precision="bfloat16", iters=3))
    assert len(stats["loss_history"]) == 3 and np.isfinite(stats["loss_history"]).all()
    chip = np.zeros((32, 32, 3), np.uint8)
    emb = Embedder(stats["model_folder"], backend="torch").embed_chips(chip[None])
    assert emb.shape == (1, 32) and np.isfinite(emb).all()


def test_several_validation_sets_with_flip_tta(data, tmp_path):
    train_dir, val_dir = data
    stats = train(_cfg(train_dir, tmp_path, val_dataset=[str(val_dir), str(train_dir)],
                       val_flip=True, val_pairs=40))
    assert set(stats["val_sets"]) == {str(val_dir), str(train_dir)}
    auc = np.mean([m["auc"] for m in stats["val_sets"].values()])
    assert stats["best_metric"] == "auc" and stats["best_val_score"] == pytest.approx(auc)


def test_an_ordered_bin_is_warned_about_and_best_is_chosen_by_auc(data, tmp_path):
    val = ValidationSet(str(data[1]), 40, seed=0)
    chips = {name: val.images[name] for name in val.images}
    # this small folder has 4 pairs of each kind: repeated, so that folds hold several pairs
    same = [(a, b) for (a, b), s in zip(val.pairs, val.labels) if s] * 3
    diff = [(a, b) for (a, b), s in zip(val.pairs, val.labels) if not s] * 3
    path = write_verification_bin(tmp_path / "ordered.bin",
                                  [chips[n] for p in same + diff for n in p],
                                  [True] * len(same) + [False] * len(diff))
    assert "pairs are ordered" in ValidationSet(str(path)).fold_problem()
    with pytest.warns(RuntimeWarning, match="ordered.*best/ is chosen by auc"):
        stats = train(_cfg(data[0], tmp_path / "run", val_dataset=str(path), iters=2))
    assert stats["best_val_score"] == pytest.approx(stats["val"]["auc"])


def test_the_thread_setting_is_what_torch_uses(data, tmp_path):
    before = torch.get_num_threads()
    try:
        stats = train(_cfg(data[0], tmp_path, iters=1, threads=1))
        assert stats["threads"] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_learner_passes_its_threads_to_training(data, tmp_path):
    from face_perception.learners import FaceRecognitionLearner

    before = torch.get_num_threads()
    try:
        lrn = FaceRecognitionLearner(backbone="mobilefacenet", mode="full", device="cpu",
                                     iters=1, batch_size=4, input_size=[32, 32],
                                     embedding_size=32, stages=[], num_workers=0,
                                     temp_path=str(tmp_path), threads=1)
        stats = lrn.fit(str(data[0]), silent=True)
        assert stats["threads"] == 1 and lrn.embedder.threads == 1
    finally:
        torch.set_num_threads(before)
