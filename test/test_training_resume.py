"""Training state on disk: exact resume, checkpoints of other models refused, bad training
input named in the error without harm to files written before, and the YAML config round trip
through ``face-perception train``."""
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from face_perception.cli import main as cli_main
from face_perception.data import DatasetError
from face_perception.files import sha256_file
from face_perception.recognition.training import TrainConfig, load_config, train
from face_perception.training.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from test import training_data


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("resume")
    return training_data.build(root, photos, size=32, synthetic=4, per_identity=4, held_out=0,
                               chips={})[0]


def _cfg(train_dir, temp, **kw):
    args = dict(device="cpu", backbone="mobilefacenet", network_head="adaface",
                input_size=[32, 32], embedding_size=32, iters=6, batch_size=4, lr=0.05,
                stages=[4], num_workers=0, dataset=str(train_dir), temp_path=str(temp),
                silent=True)
    return TrainConfig(**{**args, **kw})


def load_json(path):
    return json.loads(path.read_text())


def _weights(folder):
    return torch.load(folder / "backbone.pth", weights_only=True)


def test_resuming_at_iteration_k_repeats_the_uninterrupted_run(train_dir, tmp_path):
    whole = train(_cfg(train_dir, tmp_path / "a", checkpoint_after_iter=3))
    assert (tmp_path / "a" / "checkpoints" / "checkpoint_3.pth").is_file()
    # The run that stopped at 3: its checkpoint, resumed in a fresh folder.
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "checkpoints" / "checkpoint_3.pth",
                tmp_path / "b" / "checkpoints")
    resumed = train(_cfg(train_dir, tmp_path / "b", checkpoint_load_iter=3))
    assert resumed["start_iteration"] == 3
    assert resumed["loss_history"] == whole["loss_history"][3:]
    a, b = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    # The learning-rate stage at 4 was passed after the resume point, as in the whole run.
    assert resumed["lr_history"] == whole["lr_history"][3:]
    assert resumed["lr_history"] == pytest.approx([0.05, 0.005, 0.005])


def test_a_checkpoint_written_before_the_shared_core_still_resumes_exactly(train_dir, tmp_path):
    whole = train(_cfg(train_dir, tmp_path / "a", checkpoint_after_iter=3))
    new = read_checkpoint(tmp_path / "a" / "checkpoints" / "checkpoint_3.pth", "recognition")
    old = tmp_path / "b" / "checkpoints" / "checkpoint_3.pth"
    old.parent.mkdir(parents=True)
    # format 1: one flat dict, no sha256 file, torch's RNG state only
    torch.save({"format": 1, **new.identity, "iteration": 3,
                "backbone_state": new.models["backbone"], "head_state": new.models["head"],
                "optimizer": new.optimizer, "rng": {"torch": new.rng["torch"]},
                "validation": new.extra["validation"]}, old)
    resumed = train(_cfg(train_dir, tmp_path / "b", checkpoint_load_iter=3))
    assert resumed["start_iteration"] == 3
    assert resumed["loss_history"] == whole["loss_history"][3:]


def test_a_checkpoint_of_another_backbone_is_refused_naming_the_file(train_dir, tmp_path):
    train(_cfg(train_dir, tmp_path, iters=2, checkpoint_after_iter=2))
    ckpt = tmp_path / "checkpoints" / "checkpoint_2.pth"
    digest = sha256_file(ckpt)
    with pytest.raises(CheckpointError, match=f"{ckpt}.*backbone='mobilefacenet'.*ir_50"):
        train(_cfg(train_dir, tmp_path, backbone="ir_50", iters=3, checkpoint_load_iter=2))
    assert sha256_file(ckpt) == digest


def test_a_pickled_object_in_a_checkpoint_is_not_loaded(train_dir, tmp_path):
    bad = tmp_path / "checkpoints" / "checkpoint_1.pth"
    bad.parent.mkdir(parents=True)
    torch.save({"format": 1, "payload": shutil.copy}, bad)  # a callable: needs full pickle
    with pytest.raises(CheckpointError, match=f"{bad}.*weights_only"):
        train(_cfg(train_dir, tmp_path, iters=2, checkpoint_load_iter=1))


def test_bad_training_input_is_named_and_earlier_files_survive(train_dir, tmp_path):
    out = tmp_path / "run"
    train(_cfg(train_dir, out, iters=2, checkpoint_after_iter=2))
    before = {p: sha256_file(p) for p in out.rglob("*") if p.is_file()}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=str(empty)):
        train(_cfg(empty, out, iters=2))
    one = tmp_path / "one"
    shutil.copytree(train_dir / "synthetic_00", one / "synthetic_00")
    with pytest.raises(DatasetError, match=f"{one}.*at least 2 identities"):
        train(_cfg(one, out, iters=2))
    broken = tmp_path / "broken"
    shutil.copytree(train_dir, broken)
    ok, data = cv2.imencode(".jpg", cv2.imread(str(broken / "synthetic_01" / "000.png")))
    cut = broken / "synthetic_01" / "cut.jpg"
    cut.write_bytes(data.tobytes()[: len(data) // 2])
    with pytest.raises(DatasetError, match=f"{cut}: truncated JPEG"):
        train(_cfg(broken, out, iters=2))
    after = {p: sha256_file(p) for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_too_few_images_for_one_batch_is_explained(train_dir, tmp_path):
    with pytest.raises(DatasetError, match="fewer than one batch of 64"):
        train(_cfg(train_dir, tmp_path, batch_size=64))


def test_config_round_trip_and_overrides(tmp_path, capsys):
    cfg = TrainConfig(lr=0.02, stages=[5, 9], network_head="adaface", color_order="bgr",
                      head_m=0.35, input_size=[96, 96], dataset="/data/imgs")
    path = cfg.save(tmp_path / "cfg.yaml")
    assert load_config(path) == cfg
    changed = load_config(path, {"lr": 0.5, "stages": [1]})
    assert (changed.lr, changed.stages, changed.network_head) == (0.5, [1], "adaface")
    # The toolkit seed's keys are understood.
    (tmp_path / "toolkit.yml").write_text("lr: 0.4\ntrain_batch_size: 256\nm: 0.35\ns: 30\n"
                                          "model: mobilefacenet\nembed_size: 256\n")
    seed = load_config(tmp_path / "toolkit.yml")
    assert (seed.batch_size, seed.head_m, seed.head_s, seed.backbone, seed.embedding_size) == \
        (256, 0.35, 30.0, "mobilefacenet", 256)
    (tmp_path / "bad.yaml").write_text("lr: 0.1\nlearning_rate: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown parameter 'learning_rate'"):
        load_config(tmp_path / "bad.yaml")
    assert cli_main(["train", "--print-config"]) == 0
    assert load_config(None, {}) == TrainConfig()
    printed = capsys.readouterr().out
    assert "lr: 0.1\n" in printed and "stages: [35, 65, 95]" in printed
    assert cli_main(["train", str(path), "--set", "lr=0.3", "--iters", "7",
                     "--print-config"]) == 0
    shown = capsys.readouterr().out
    (tmp_path / "shown.yaml").write_text(shown)
    assert load_config(tmp_path / "shown.yaml") == load_config(path, {"lr": 0.3, "iters": 7})
    assert cli_main(["train", str(tmp_path / "bad.yaml")]) == 2
    assert "learning_rate" in capsys.readouterr().err


def test_train_command_writes_resolved_config_model_and_tensorboard(train_dir, tmp_path, capsys):
    cfg = _cfg(train_dir, tmp_path / "out", iters=2, logging_path=str(tmp_path / "tb"))
    cfg.save(tmp_path / "run.yaml")
    assert cli_main(["train", str(tmp_path / "run.yaml"), "--set", "network_head=cosface"]) == 0
    resolved = load_config(tmp_path / "out" / "checkpoints" / "config.yaml")
    assert resolved.network_head == "cosface" and resolved.iters == 2
    assert (tmp_path / "out" / "model" / "backbone.json").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/accuracy", "train/lr", "train/images_per_s"} <= tags
    assert len(events.Scalars("train/loss")) == 2
    assert np.isfinite([e.value for e in events.Scalars("train/loss")]).all()


def test_resume_keeps_the_best_model_and_its_validation_history(train_dir, tmp_path):
    """The interrupted run validated at 2 and kept best/; the resumed run knows that score
    and replaces best/ only with a better one, exactly as the uninterrupted run does."""
    kw = dict(val_dataset=str(train_dir), val_after=2, checkpoint_after_iter=2, val_pairs=60)
    whole = train(_cfg(train_dir, tmp_path / "a", **kw))
    part = train(_cfg(train_dir, tmp_path / "b", iters=2, **kw))
    assert part["best_iteration"] == 2
    resumed = train(_cfg(train_dir, tmp_path / "b", resume=True, **kw))
    assert resumed["start_iteration"] == 2
    assert resumed["val_scores"] == whole["val_scores"]
    assert [i for i, _ in resumed["val_scores"]] == [2, 4, 6]
    best = max(s for _, s in whole["val_scores"])
    first_best = next(i for i, s in whole["val_scores"] if s == best)
    assert resumed["best_iteration"] == whole["best_iteration"] == first_best
    assert resumed["best_val_score"] == pytest.approx(best)
    name = load_json(tmp_path / "a" / "best" / "backbone.json")["name"]
    assert load_json(tmp_path / "b" / "best" / "backbone.json")["name"] == name


def test_resume_refuses_a_dataset_whose_classes_changed(train_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(train_dir, data)
    train(_cfg(data, tmp_path / "run", iters=2, checkpoint_after_iter=2))
    # same number of classes, but a renamed folder shifts the class indices
    (data / "synthetic_00").rename(data / "zz_renamed")
    with pytest.raises(CheckpointError, match="other classes: class 0 is 'synthetic_00' there "
                                              "but 'synthetic_01'"):
        train(_cfg(data, tmp_path / "run", iters=4, checkpoint_load_iter=2))


def test_resume_true_continues_from_the_latest_checkpoint_without_duplicate_events(
        train_dir, tmp_path):
    tb = tmp_path / "tb"
    out = tmp_path / "run"
    train(_cfg(train_dir, out, iters=4, checkpoint_after_iter=2, logging_path=str(tb)))
    # a run killed after iteration 4 had checkpointed at 2: its events 3, 4 are dropped
    (out / "checkpoints" / "checkpoint_4.pth").unlink()
    again = train(_cfg(train_dir, out, iters=6, resume=True, checkpoint_after_iter=2,
                       keep_checkpoints=1, logging_path=str(tb)))
    assert again["start_iteration"] == 2
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pth")) == ["checkpoint_6.pth"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb))
    events.Reload()
    assert sorted(e.step for e in events.Scalars("train/loss")) == [1, 2, 3, 4, 5, 6]


def test_equal_weights_give_the_same_model_name(train_dir, tmp_path):
    from face_perception.recognition.backbones import get_model
    from face_perception.recognition.model_folder import (
        trained_meta,
        write_model_folder,
    )

    torch.manual_seed(0)
    net = get_model("mobilefacenet", embedding_size=32, input_size=(32, 32))
    names = []
    for sub in ("x", "y"):
        meta = trained_meta("mobilefacenet", 32, [32, 32], [127.5] * 3, [127.5] * 3, "rgb")
        write_model_folder(tmp_path / sub, net, meta)
        names.append(meta.name)
    assert names[0] == names[1]
    assert sha256_file(tmp_path / "x" / "backbone.pth") == \
        sha256_file(tmp_path / "y" / "backbone.pth")


def test_yaml_duplicate_keys_and_bad_overrides_are_named(tmp_path):
    (tmp_path / "dup.yaml").write_text("lr: 0.1\niters: 5\nlr: 0.2\n")
    with pytest.raises(ValueError, match=r"dup.yaml.*'lr' is given twice"):
        load_config(tmp_path / "dup.yaml")
    (tmp_path / "alias.yaml").write_text("batch_size: 8\ntrain_batch_size: 16\n")
    with pytest.raises(ValueError, match=r"alias.yaml: parameter 'batch_size' is given twice"):
        load_config(tmp_path / "alias.yaml")
    (tmp_path / "ok.yaml").write_text("lr: 0.1\n")
    with pytest.raises(ValueError, match=r"^--set: iters must be an integer"):
        load_config(tmp_path / "ok.yaml", {"iters": "many"})
    with pytest.raises(ValueError, match=r"^--set: unknown parameter 'iter'"):
        load_config(tmp_path / "ok.yaml", {"iter": 3})
    with pytest.raises(ValueError, match=r"network_head 'arcface' takes no m1, m2, m3"):
        load_config(None, {"network_head": "arcface", "margin_list": [1.0, 0.5, 0.0]})
    (tmp_path / "arc.yaml").write_text("gradient_acc: 2\nnum_epoch: 3\noutput: /tmp/o\n")
    arc = load_config(tmp_path / "arc.yaml")  # arcface_torch's names
    assert (arc.accumulate, arc.epochs, arc.temp_path) == (2, 3, "/tmp/o")
    combined = load_config(None, {"network_head": "combined", "margin_list": [1, 0.5, 0]})
    assert combined.head_kwargs() == {"m1": 1.0, "m2": 0.5, "m3": 0.0}


def test_a_resumed_run_does_not_replace_a_better_best_model(train_dir, tmp_path):
    kw = dict(val_dataset=str(train_dir), val_after=2, checkpoint_after_iter=2, val_pairs=60)
    train(_cfg(train_dir, tmp_path, iters=2, **kw))
    name = load_json(tmp_path / "best" / "backbone.json")["name"]
    path = tmp_path / "checkpoints" / "checkpoint_2.pth"
    state = read_checkpoint(path, "recognition")
    state.extra["validation"]["best_val_score"] = 1.5  # above any AUC to come
    save_checkpoint(path, state)
    resumed = train(_cfg(train_dir, tmp_path, iters=4, checkpoint_load_iter=2, **kw))
    assert resumed["best_iteration"] == 2 and resumed["best_val_score"] == 1.5
    assert [i for i, _ in resumed["val_scores"]] == [2, 4]
    assert load_json(tmp_path / "best" / "backbone.json")["name"] == name


def test_a_resumed_runs_event_file_sorts_after_the_interrupted_ones(tmp_path):
    """TensorBoard purges a resumed run's dropped steps only when it reads the runs' files in
    order, by name: the resumed file is never made in the same second as an existing one."""
    import time

    from face_perception.training.progress import _after_existing_event_files

    now = int(time.time())
    (tmp_path / f"events.out.tfevents.{now:010d}.host.123.9").write_bytes(b"")
    _after_existing_event_files(tmp_path)
    assert int(time.time()) > now
