"""face-perception model import: every foreign format round-trips, and wrong files are refused.

Nothing is downloaded: each test builds one of the package's own backbones with random weights,
writes it in the foreign format's exact layout (key names, containers, graph signature; written
here from the foreign code's layout, independently of the importer), imports it, and compares the
imported folder's Embedder with the original network fed the way the foreign code feeds it, on
real aligned photos.
"""
from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import pytest
import torch

from face_perception.recognition import Embedder
from face_perception.recognition.backbones.iresnet import STAGE_UNITS, IResNet, SqueezeExcite
from face_perception.recognition.model_import import ModelImportError, import_model
from face_perception.recognition.model_meta import ModelMeta

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def chips(photos):
    """ArcFace 112x112 chips (BGR uint8) of the four shipped frontal photos."""
    from face_perception.alignment import ARCFACE_TEMPLATE_112, align_to_template
    from test.face_crops import detected_faces

    return np.stack([align_to_template(image, lm, ARCFACE_TEMPLATE_112, (112, 112), fit="chip")
                     for image, lm in detected_faces(photos).values()])


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random BN statistics, affine weights and PReLU slopes (a fresh network's are 1, 0 and
    0.25 everywhere, which would hide a BN mapped to the wrong place)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(1 + torch.randn(m.weight.shape, generator=g) * 0.1)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, torch.nn.PReLU):
                m.weight.copy_(0.25 + torch.randn(m.weight.shape, generator=g) * 0.05)
    return model.eval()


def assert_same_embeddings(embedder, model, chips_bgr: np.ndarray, color: str, to_input):
    """The imported folder's Embedder gives the original network's embeddings when fed as the
    foreign code feeds it.

    Checked in two steps: the Embedder's network input equals the foreign preprocessing (to
    float32 rounding), and on that input the embeddings agree to TOLERANCE. (Feeding each its
    own rounding of the same pixels is no test of the weights: a deep random network amplifies
    1e-7 input differences to 1e-4.)"""
    x = chips_bgr[..., ::-1] if color == "rgb" else chips_bgr
    foreign = to_input(np.ascontiguousarray(x).astype(np.float64)).transpose(0, 3, 1, 2)
    ours = embedder.preprocess(chips_bgr)
    assert np.abs(ours - foreign).max() < 1e-6
    with torch.no_grad():
        out = model(torch.from_numpy(ours))
    out = out[0] if isinstance(out, tuple) else out
    want = torch.nn.functional.normalize(out, dim=1).numpy()
    assert np.abs(embedder.embed_chips(chips_bgr) - want).max() < TOLERANCE


def insightface_input(x):
    return (x - 127.5) / 127.5


def raw_pixels(x):
    return x


def half_unit_input(x):
    # AdaFace's to_input and OpenDR's Normalize(0.5, 0.5) after ToTensor.
    return (x / 255.0 - 0.5) / 0.5


def state_of(prefix: str, module: torch.nn.Module) -> dict:
    return {f"{prefix}.{k}": v.clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------- foreign layouts, restated
def arcface_torch_state_dict(model: IResNet) -> dict:
    """arcface_torch's iresnet names: conv1/bn1/prelu stem, layerL.i.{bn1, conv1, bn2, prelu,
    conv2, bn3, downsample.0/1}, then bn2, fc, features."""
    sd = {**state_of("conv1", model.stem[0]), **state_of("bn1", model.stem[1]),
          **state_of("prelu", model.stem[2])}
    units = iter(model.body)
    for layer, count in enumerate(STAGE_UNITS[model.depth], 1):
        for i in range(count):
            unit = next(units)
            for name, m in zip(("bn1", "conv1", "bn2", "prelu", "conv2", "bn3"), unit.residual):
                sd.update(state_of(f"layer{layer}.{i}.{name}", m))
            if i == 0:  # stride 2: arcface_torch always projects
                sd.update(state_of(f"layer{layer}.{i}.downsample.0", unit.shortcut[0]))
                sd.update(state_of(f"layer{layer}.{i}.downsample.1", unit.shortcut[1]))
    sd.update({**state_of("bn2", model.head[0]), **state_of("fc", model.head[3]),
               **state_of("features", model.head[4])})
    return sd


def body_state_dict(model: IResNet, se_name) -> dict:
    """AdaFace / face.evoLVe names: input_layer, body.k.res_layer.j (SE appended under
    ``se_name``), body.k.shortcut_layer, output_layer."""
    sd = state_of("input_layer", model.stem)
    for k, unit in enumerate(model.body):
        for j, m in enumerate(unit.residual):
            name = se_name if se_name and isinstance(m, SqueezeExcite) else str(j)
            sd.update(state_of(f"body.{k}.res_layer.{name}", m))
        if isinstance(unit.shortcut, torch.nn.Sequential):
            sd.update(state_of(f"body.{k}.shortcut_layer", unit.shortcut))
    sd.update(state_of("output_layer", model.head))
    return sd


@pytest.mark.parametrize("layout, depth, use_se", [
    ("arcface_torch", 34, False), ("arcface_torch", 50, False), ("arcface_torch", 200, False),
    ("adaface", 50, True), ("adaface", 101, False), ("evolve", 152, True)])
def test_key_layouts_name_every_entry_as_the_foreign_code_does(layout, depth, use_se):
    # Shapes only (meta device): the importer's names for every depth equal the names the
    # foreign layouts give, as restated above.
    from face_perception.recognition.model_import.iresnet_layouts import LAYOUT_KWARGS, key_map

    with torch.device("meta"):
        model = IResNet(depth, use_se, **LAYOUT_KWARGS[layout])
    foreign = (arcface_torch_state_dict(model) if layout == "arcface_torch" else
               body_state_dict(model, "se_block" if layout == "adaface" else None))
    assert set(key_map(model, layout)) == set(foreign)


# ----------------------------------------------------------------------------- round trips
def test_arcface_torch_iresnet_pth_round_trips(tmp_path, chips):
    torch.manual_seed(1)
    model = randomise(IResNet(18, mid_bn=True, projection_shortcut=True), 1)
    sd = arcface_torch_state_dict(model)
    assert {"conv1.weight", "layer1.0.downsample.0.weight", "layer4.1.bn3.running_var",
            "fc.weight", "features.running_mean"} <= set(sd)
    torch.save(sd, tmp_path / "model.pt")

    folder = import_model(tmp_path / "model.pt", "arcface-torch", tmp_path / "r18")
    meta = ModelMeta.load(folder)
    assert (meta.architecture, meta.embedding_size, meta.color_order) == ("ir_18", 512, "rgb")
    assert meta.needs_open_set_calibration and meta.threshold == pytest.approx(0.28)
    torch_embedder = Embedder(folder, backend="torch")
    assert_same_embeddings(torch_embedder, model, chips, "rgb", insightface_input)
    # The default backend exports the imported network to ONNX on first use.
    onnx_embedder = Embedder(folder)
    assert np.abs(onnx_embedder.embed_chips(chips) -
                  torch_embedder.embed_chips(chips)).max() < 1e-4


def test_adaface_lightning_checkpoint_round_trips(tmp_path, chips):
    torch.manual_seed(2)
    model = randomise(IResNet(18, mid_bn=True), 2)
    with torch.no_grad():  # AdaFace's last BatchNorm1d has no affine weights
        model.head[4].weight.fill_(1.0)
        model.head[4].bias.zero_()
    backbone = body_state_dict(model, "se_block")
    del backbone["output_layer.4.weight"], backbone["output_layer.4.bias"]
    assert "body.0.res_layer.2.running_var" in backbone  # the BN between conv and PReLU
    state = {f"model.{k}": v for k, v in backbone.items()}
    state["head.kernel"] = torch.randn(512, 7)  # AdaFace's margin head, not imported
    checkpoint = {"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.8.6",
                  "state_dict": state,
                  "hyper_parameters": argparse.Namespace(arch="ir_18", head="adaface", m=0.4)}
    torch.save(checkpoint, tmp_path / "adaface_ir18_casia.ckpt")

    folder = import_model(tmp_path / "adaface_ir18_casia.ckpt", "adaface", tmp_path / "ada")
    meta = ModelMeta.load(folder)
    assert (meta.architecture, meta.color_order) == ("ir_18", "bgr")
    assert_same_embeddings(Embedder(folder, backend="torch"), model, chips, "bgr",
                           half_unit_input)


def test_opendr_ir_se_folder_round_trips_with_its_threshold(tmp_path, chips):
    torch.manual_seed(3)
    model = randomise(IResNet(50, use_se=True), 3)
    sd = body_state_dict(model, None)
    assert "body.0.res_layer.5.fc1.weight" in sd  # face.evoLVe's SE module by position
    saved = tmp_path / "opendr_model"
    saved.mkdir()
    torch.save(sd, saved / "backbone_ir_se_50.pth")
    # OpenDR's save(): the threshold is a squared distance of unit embeddings.
    (saved / "backbone_ir_se_50.json").write_text(json.dumps({
        "model_paths": "/home/someone/opendr/backbone_ir_se_50.pth", "framework": "pytorch",
        "format": "pth", "has_data": False, "inference_params": {"threshold": 1.2},
        "optimized": False, "optimizer_info": {}}))

    folder = import_model(saved, "opendr", tmp_path / "imported")
    meta = ModelMeta.load(folder)
    assert meta.architecture == "ir_se_50" and meta.threshold == pytest.approx(0.4)
    assert_same_embeddings(Embedder(folder, backend="torch"), model, chips, "rgb",
                           half_unit_input)


def export(module, path, input_name, batch, size=112):
    """An ONNX graph with InsightFace's signature: ``input_name`` N x 3 x 112 x 112 (``batch``
    None: dynamic, as in w600k_r50.onnx) and one output named "683" (as there)."""
    import onnx

    with torch.no_grad():
        torch.onnx.export(module, (torch.zeros(batch or 2, 3, size, size),), str(path),
                          input_names=[input_name], output_names=["embedding"],
                          opset_version=17, dynamo=False,
                          dynamic_axes=None if batch else {input_name: {0: "None"},
                                                           "embedding": {0: "None"}})
    # torch names no value "683" (a number); rename it the way the graph has it.
    graph = onnx.load(str(path))
    for node in graph.graph.node:
        node.output[:] = ["683" if o == "embedding" else o for o in node.output]
    graph.graph.output[0].name = "683"
    onnx.save(graph, str(path))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's note on the legacy exporter
def test_insightface_onnx_graph_round_trips(tmp_path, chips):
    import onnx

    # buffalo_l's w600k_r50.onnx: input "input.1" N x 3 x 112 x 112, normalised outside.
    torch.manual_seed(4)
    model = randomise(IResNet(18, mid_bn=True, projection_shortcut=True), 4)
    export(model, tmp_path / "w600k_r18.onnx", "input.1", None)
    graph = onnx.load(str(tmp_path / "w600k_r18.onnx"))  # exports often fix the output batch
    graph.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(graph, str(tmp_path / "w600k_r18.onnx"))

    folder = import_model(tmp_path / "w600k_r18.onnx", "insightface-onnx", tmp_path / "onnx")
    kept = onnx.load(str(folder / "backbone.onnx")).graph.output[0].type.tensor_type
    assert kept.shape.dim[0].dim_param == "N"  # opened, after the batch check
    meta = ModelMeta.load(folder)
    assert (meta.mean, meta.std, meta.weights_file) == ((127.5,) * 3, (127.5,) * 3, None)
    assert meta.name.startswith("w600k_r18_")
    assert_same_embeddings(Embedder(folder, backend="onnx"), model, chips, "rgb",
                           insightface_input)
    with pytest.raises(ValueError, match="ONNX graph without torch weights.*backend 'onnx'"):
        Embedder(folder, backend="torch")


class RawPixels(torch.nn.Module):
    """MXNet-converted InsightFace graphs (glint360k r100) subtract and scale inside."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net((x - 127.5) * 0.0078125)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_insightface_onnx_with_normalisation_inside_and_batch_of_one(tmp_path, chips):
    from face_perception.recognition.backbones import get_model

    torch.manual_seed(5)
    model = randomise(get_model("mobilefacenet"), 5)
    export(RawPixels(model).eval(), tmp_path / "glint_mbf.onnx", "data", 1)

    folder = import_model(tmp_path / "glint_mbf.onnx", "insightface-onnx", tmp_path / "mbf")
    meta = ModelMeta.load(folder)
    assert (meta.mean, meta.std) == ((0.0,) * 3, (1.0,) * 3)
    # The graph takes raw RGB pixels; the Embedder runs the 4 chips in one batch.
    assert_same_embeddings(Embedder(folder, backend="onnx", batch_size=4), RawPixels(model),
                           chips, "rgb", raw_pixels)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_opendr_folder_saved_after_optimize_round_trips(tmp_path, chips):
    # optimize() exports the backbone as onnx_<name>_backbone_model.onnx (input 'data', batch
    # 1, normalised outside); the graph is kept, so even OpenDR's own MobileFaceNet imports. The
    # stand-in graph here is this package's 128-d MobileFaceNet: any graph with the signature.
    from face_perception.recognition.backbones import get_model

    torch.manual_seed(8)
    model = randomise(get_model("mobilefacenet", embedding_size=128), 8)
    saved = tmp_path / "opendr_optimized"
    saved.mkdir()
    export(model, saved / "onnx_mobilefacenet_backbone_model.onnx", "data", 1)
    (saved / "backbone_mobilefacenet.json").write_text(json.dumps({
        "model_paths": "/home/someone/onnx_mobilefacenet_backbone_model.onnx",
        "framework": "pytorch", "format": "onnx", "has_data": False,
        "inference_params": {"threshold": 0.9}, "optimized": True, "optimizer_info": {}}))

    folder = import_model(saved, "opendr", tmp_path / "imported")
    meta = ModelMeta.load(folder)
    assert (meta.architecture, meta.embedding_size) == ("onnx_graph", 128)
    assert meta.threshold == pytest.approx(0.55)
    assert_same_embeddings(Embedder(folder, backend="onnx"), model, chips, "rgb",
                           half_unit_input)


# -------------------------------------------------------------------------------- refusals
@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("arcface") / "backbone.pth"
    torch.manual_seed(6)
    torch.save(arcface_torch_state_dict(IResNet(18, mid_bn=True, projection_shortcut=True)),
               path)
    return path


@pytest.mark.parametrize("fmt, message", [
    ("insightface-onnx", "not a valid ONNX model"),
    ("arcface-torch", "not an arcface_torch iresnet state dict loadable with weights_only"),
    ("adaface", "not an AdaFace checkpoint loadable with weights_only"),
])
def test_import_refuses_a_photo(tmp_path, photos, fmt, message):
    with pytest.raises(ModelImportError, match=message):
        import_model(photos / "obama.jpg", fmt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["arcface-torch", "adaface"])
def test_import_refuses_a_truncated_checkpoint(tmp_path, arcface_file, fmt):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(arcface_file.read_bytes()[: arcface_file.stat().st_size // 2])
    with pytest.raises(ModelImportError, match="cut.pth is not .* loadable with weights_only"):
        import_model(cut, fmt, tmp_path / "out")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_import_refuses_a_truncated_onnx_graph(tmp_path):
    torch.manual_seed(7)
    export(randomise(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 112 * 112, 8)),
                     7), tmp_path / "r.onnx", "input.1", None)
    data = (tmp_path / "r.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelImportError, match="cut.onnx is not a valid ONNX model"):
        import_model(tmp_path / "cut.onnx", "insightface-onnx", tmp_path / "out")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_import_refuses_an_onnx_graph_of_another_input_size(tmp_path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 96 * 96, 8)).eval()
    export(net, tmp_path / "small.onnx", "input.1", None, size=96)
    with pytest.raises(ModelImportError, match=r"input 'input.1' has shape \['None', 3, 96, 96\]"
                                               r"; an InsightFace recognizer takes N x 3 x 112"):
        import_model(tmp_path / "small.onnx", "insightface-onnx", tmp_path / "out")


def test_import_refuses_the_wrong_format_flag(tmp_path, arcface_file):
    with pytest.raises(ModelImportError, match="no 'state_dict' entry"):
        import_model(arcface_file, "adaface", tmp_path / "a")
    with pytest.raises(ModelImportError, match="not a valid ONNX model"):
        import_model(arcface_file, "insightface-onnx", tmp_path / "b")
    with pytest.raises(ModelImportError, match="not an OpenDR model folder|not the weights"):
        import_model(arcface_file, "opendr", tmp_path / "c")


def test_import_refuses_an_ir_of_another_layout(tmp_path):
    # face.evoLVe's IR-18 (no mid BN, max-pool shortcut) under arcface_torch's names: the
    # key check names what differs instead of loading half a network.
    model = IResNet(18, mid_bn=True, projection_shortcut=True)
    sd = arcface_torch_state_dict(model)
    del sd["layer1.0.downsample.0.weight"]
    sd["layer1.0.se.fc1.weight"] = torch.zeros(4, 64, 1, 1)
    torch.save(sd, tmp_path / "odd.pth")
    with pytest.raises(ModelImportError, match="no SE blocks"):
        import_model(tmp_path / "odd.pth", "arcface-torch", tmp_path / "out")
    del sd["layer1.0.se.fc1.weight"]
    torch.save(sd, tmp_path / "odd.pth")
    with pytest.raises(ModelImportError, match=r"1 expected keys missing "
                                               r"\['layer1.0.downsample.0.weight'\]"):
        import_model(tmp_path / "odd.pth", "arcface-torch", tmp_path / "out")


def test_import_refuses_an_architecture_that_does_not_match(tmp_path, arcface_file):
    with pytest.raises(ModelImportError, match="holds an ir_18 .*not --arch ir_50"):
        import_model(arcface_file, "arcface-torch", tmp_path / "out", arch="ir_50")


class Touch:
    """A pickle that would create a file when unpickled without weights_only."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import pathlib
        return pathlib.Path.touch, (pathlib.Path(self.path),)


def test_import_never_unpickles_arbitrary_objects(tmp_path):
    marker = tmp_path / "code_ran"
    torch.save({"state_dict": {"model.x": torch.zeros(1)}, "payload": Touch(marker)},
               tmp_path / "evil.ckpt")
    with pytest.raises(ModelImportError, match="evil.ckpt is not an AdaFace checkpoint "
                                               "loadable with weights_only=True"):
        import_model(tmp_path / "evil.ckpt", "adaface", tmp_path / "out")
    assert not marker.exists()


def test_import_refuses_a_used_output_folder(tmp_path, arcface_file):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ModelImportError, match="not an empty folder"):
        import_model(arcface_file, "arcface-torch", tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_opendr_mobilefacenet_is_refused_with_the_reason(tmp_path):
    (tmp_path / "backbone_mobilefacenet.json").write_text("{}")
    with pytest.raises(ModelImportError, match="MobileNetV2 variant with ReLU6"):
        import_model(tmp_path, "opendr", tmp_path / "out")


# --------------------------------------------------------------------- open set and the CLI
@pytest.fixture(scope="module")
def imported_folder(tmp_path_factory, arcface_file):
    return import_model(arcface_file, "arcface-torch",
                        tmp_path_factory.mktemp("imported") / "r18")


def test_imported_model_names_nobody_until_calibrated(imported_folder, photos, core_detector,
                                                     caplog):
    import cv2

    from face_perception.gallery import Gallery
    from face_perception.open_set import OpenSetRule, UncalibratedRule
    from face_perception.recognition import Recognizer

    embedder = Embedder(imported_folder, backend="torch")
    image = cv2.imread(str(photos / "obama.jpg"))
    faces = core_detector.detect(image)
    gallery = Gallery(embedder.meta.name, embedder.embedding_size)
    gallery.add("obama", Recognizer(embedder, None, detector=core_detector).embed(image, faces))

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="face_perception.open_set"):
        rec = Recognizer(embedder, gallery, detector=core_detector)
    assert isinstance(rec.rule, UncalibratedRule) and rec.rule_source == "uncalibrated model"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "face-perception gallery calibrate" in warnings[0]
    assert rec.identify(image, faces) == [None]  # the very photo enrolled stays unknown

    gallery.set_open_set({"threshold": 0.5, "margin": 0.0})  # what calibrate stores
    rec.set_gallery(gallery)
    assert rec.rule == OpenSetRule(0.5, 0.0) and rec.rule_source == "gallery"
    assert [c.name for c in rec.identify(image, faces)] == ["obama"]
    # An explicit threshold is the user's rule: it names too.
    explicit = Recognizer(embedder, None, threshold=0.5, detector=core_detector)
    assert type(explicit.rule) is OpenSetRule and explicit.rule_source == "explicit+model"


def test_cli_imports_shows_and_verifies_with_the_recorded_threshold(tmp_path, arcface_file,
                                                                   photos, capsys):
    from face_perception.cli import main

    out = tmp_path / "model"
    assert main(["model", "import", str(arcface_file), "--format", "arcface-torch", "--out",
                 str(out), "--name", "my_r18", "--threshold", "0.35"]) == 0
    printed = capsys.readouterr().out
    assert "ir_18, 512-d, RGB" in printed and "gallery calibrate" in printed
    assert main(["model", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"].startswith("my_r18_") and info["threshold"] == 0.35
    assert main(["verify", str(photos / "obama.jpg"), str(photos / "obama2.jpg"), "--model",
                 str(out), "--backend", "torch", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["threshold"] == 0.35


def test_cli_reports_a_refused_file_in_one_line(tmp_path, photos, capsys):
    from face_perception.cli import main

    assert main(["model", "import", str(photos / "obama.jpg"), "--format", "insightface-onnx",
                 "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "face-perception model: error:" in err and "obama.jpg is not a valid ONNX" in err
