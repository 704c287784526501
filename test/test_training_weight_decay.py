"""Weight decay applies to weights of two or more dimensions only (not to batch-norm scales
and shifts or biases) unless ``decay_bn_and_bias``: checked on the groups and on a real step."""
import pytest
import torch
from torch import nn

from face_perception.recognition.backbones import get_model
from face_perception.recognition.training import TrainConfig, train
from face_perception.recognition.training.model import optimizer_groups
from test import training_data


def test_batchnorm_and_bias_parameters_get_no_weight_decay():
    net = get_model("mobilefacenet", embedding_size=32, input_size=(32, 32))
    head = nn.Linear(32, 5)
    groups, names = optimizer_groups({"backbone": net, "head": head}, 5e-4, False)
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    decayed = set(names[:len(groups[0]["params"])])
    bn = {f"backbone.{m}.{p}" for m, mod in net.named_modules()
          if isinstance(mod, nn.modules.batchnorm._BatchNorm) for p in ("weight", "bias")}
    assert bn and not bn & decayed
    assert "head.bias" not in decayed and "head.weight" in decayed
    convs = {f"backbone.{m}.weight" for m, mod in net.named_modules()
             if isinstance(mod, nn.Conv2d)}
    assert convs <= decayed
    assert len(names) == len(set(names)) == sum(1 for _ in net.parameters()) + 2
    everything, _ = optimizer_groups({"backbone": net, "head": head}, 5e-4, True)
    assert len(everything) == 1 and everything[0]["weight_decay"] == 5e-4


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("decay")
    return training_data.build(root, photos, size=32, synthetic=3, per_identity=4, held_out=0,
                               chips={})[0]


def test_one_step_decays_only_multi_dimensional_weights(train_dir, tmp_path):
    """One step from the same start on the same batch: with weight decay the 1-D parameters
    end exactly where they end without it; the weights do not (unless decay_bn_and_bias)."""
    def step(name, **kw):
        cfg = TrainConfig(device="cpu", backbone="mobilefacenet", network_head="classifier",
                          input_size=[32, 32], embedding_size=32, iters=1, batch_size=4,
                          lr=0.1, stages=[], num_workers=0, dataset=str(train_dir),
                          temp_path=str(tmp_path / name), silent=True, **kw)
        folder = train(cfg)["model_folder"]
        return {**{f"backbone.{k}": v for k, v in
                   torch.load(f"{folder}/backbone.pth", weights_only=True).items()},
                **{f"head.{k}": v for k, v in
                   torch.load(f"{folder}/head.pth", weights_only=True).items()}}

    plain = step("plain", weight_decay=0.0)
    default = step("default", weight_decay=0.5)
    everything = step("all", weight_decay=0.5, decay_bn_and_bias=True)
    one_d = [k for k, v in plain.items() if v.is_floating_point() and v.ndim == 1
             and "running" not in k]
    multi = [k for k, v in plain.items() if v.ndim > 1]
    assert "head.fc.bias" in one_d and "head.fc.weight" in multi
    for k in one_d:
        assert torch.equal(default[k], plain[k]), k
    assert any(not torch.equal(everything[k], plain[k]) for k in one_d)
    for k in multi:
        assert not torch.equal(default[k], plain[k]), k
