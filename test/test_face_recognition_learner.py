"""FaceRecognitionLearner (seed API) on real photos: reference database, infer, align, model
files, ONNX optimisation and downloads from a local HTTP server."""
import hashlib
import inspect
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from face_perception.detection import Detector
from face_perception.download import DownloadError
from face_perception.gallery import Gallery, GalleryError
from face_perception.imageio import read_image_bgr
from face_perception.learners import FaceRecognitionLearner
from face_perception.recognition.model_meta import ModelIntegrityError

SEED_DEFAULTS = dict(
    lr=0.1, iters=120, batch_size=128, optimizer="sgd", device="cuda", threshold=0.0,
    backbone="ir_50", network_head="arcface", loss="focal", temp_path="./temp",
    mode="backbone_only", checkpoint_after_iter=0, checkpoint_load_iter=0, val_after=0,
    input_size=[112, 112], rgb_mean=[0.5, 0.5, 0.5], rgb_std=[0.5, 0.5, 0.5],
    embedding_size=512, weight_decay=5e-4, momentum=0.9, drop_last=True, stages=[35, 65, 95],
    pin_memory=True, num_workers=4, seed=123)


@pytest.fixture(scope="module")
def detector():
    return Detector()


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory):
    """ImageFolder tree: obama (one photo), biden, and an identity whose photo has no face."""
    root = tmp_path_factory.mktemp("ref")
    (root / "obama").mkdir()
    (root / "biden").mkdir()
    (root / "nobody").mkdir()
    shutil.copy(photos / "obama.jpg", root / "obama" / "obama.jpg")
    shutil.copy(photos / "biden.jpg", root / "biden" / "biden.jpg")
    img = read_image_bgr(photos / "obama.jpg")
    cv2.imwrite(str(root / "nobody" / "wall.jpg"), img[:80, :200])  # background: no face
    return root


@pytest.fixture(scope="module")
def learner(detector, reference, tmp_path_factory):
    temp = tmp_path_factory.mktemp("temp")
    lrn = FaceRecognitionLearner(backbone="dlib_resnet", device="cpu", temp_path=str(temp),
                                 detector=detector)
    lrn.report = lrn.fit_reference(str(reference), str(temp / "reference"))
    return lrn


def test_constructor_has_every_seed_parameter_with_its_default():
    params = inspect.signature(FaceRecognitionLearner).parameters
    for name, default in SEED_DEFAULTS.items():
        assert name in params, name
        shown = params[name].default
        assert shown == default or (shown is None and isinstance(default, list)), name
    lrn = FaceRecognitionLearner(device="cpu")
    for name, default in SEED_DEFAULTS.items():
        if name != "device":
            assert getattr(lrn, name) == default, name


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback needs a machine "
                                                       "without CUDA")
def test_cuda_falls_back_to_cpu_with_a_warning():
    with pytest.warns(RuntimeWarning, match="CUDA is not available"):
        lrn = FaceRecognitionLearner()
    assert lrn.device == "cpu"


@pytest.mark.parametrize("kw, msg", [
    ({"lr": 0}, "lr must be a positive number"),
    ({"iters": 0}, "iters must be an integer >= 1"),
    ({"batch_size": 2.5}, "batch_size must be an integer"),
    ({"optimizer": "adam"}, "optimizer must be one of 'sgd'"),
    ({"device": "tpu"}, "device must be 'cpu' or 'cuda'"),
    ({"threshold": 2.0}, "threshold is a cosine similarity"),
    ({"backbone": "vgg"}, "backbone must be one of"),
    ({"network_head": "softmax"}, "network_head must be one of"),
    ({"loss": "triplet"}, "loss must be one of"),
    ({"mode": "train"}, "mode must be one of"),
    ({"checkpoint_after_iter": -1}, "checkpoint_after_iter must be an integer >= 0"),
    ({"input_size": [112]}, "input_size must be two positive integers"),
    ({"input_size": [100, 100]}, "multiples of 16"),
    ({"rgb_mean": [0.5, 0.5]}, "rgb_mean must be 3 numbers"),
    ({"rgb_std": [0.5, 0.0, 0.5]}, "rgb_std must be 3 numbers"),
    ({"embedding_size": 0}, "embedding_size must be an integer >= 1"),
    ({"weight_decay": -1e-4}, "weight_decay must be a number"),
    ({"momentum": 1.5}, "momentum must be a number in"),
    ({"drop_last": "yes"}, "drop_last must be True or False"),
    ({"stages": [65, 35]}, "stages must be increasing"),
    ({"num_workers": -2}, "num_workers must be an integer >= 0"),
    ({"temp_path": ""}, "temp_path must be a non-empty path"),
    ({"backbone": "dlib_resnet", "input_size": [128, 128]}, r"takes \(150, 150\) chips"),
    ({"backbone": "dlib_resnet", "embedding_size": 256}, "gives 128-d embeddings"),
])
def test_bad_constructor_values_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        FaceRecognitionLearner(**{"device": "cpu", **kw})


def test_every_mode_and_head_of_the_seed_is_accepted():
    for mode in ("backbone_only", "head_only", "full", "finetune"):
        for head in ("arcface", "cosface", "sphereface", "am_softmax", "classifier"):
            assert FaceRecognitionLearner(device="cpu", mode=mode, network_head=head).mode == mode


def test_fit_in_backbone_only_mode_is_refused():
    # Training itself is tested in test_training_*.py.
    with pytest.raises(ValueError, match="'backbone_only' is for inference"):
        FaceRecognitionLearner(device="cpu").fit("some/folder")


def test_inference_modes_are_explicit(photos):
    with pytest.raises(RuntimeError, match="mode 'full' infers with a trained classifier head"):
        FaceRecognitionLearner(device="cpu", mode="full").infer(str(photos / "obama.jpg"))
    with pytest.raises(ValueError, match="'finetune' is a training mode"):
        FaceRecognitionLearner(device="cpu", mode="finetune").infer(str(photos / "obama.jpg"))


def test_untrained_backbone_refuses_inference_with_a_clear_message(photos):
    lrn = FaceRecognitionLearner(device="cpu", backbone="mobilefacenet")
    with pytest.raises(RuntimeError, match="no trained weights yet: load"):
        lrn.fit_reference(str(photos), "x")


def test_fit_reference_enrolls_each_subfolder_and_reports_images_without_faces(learner,
                                                                               reference):
    report = learner.report
    assert report["identities"] == 2 and report["embedded"] == 2
    assert report["no_face"] == [str(reference / "nobody" / "wall.jpg")]
    saved = Gallery.load(report["gallery"], model_id="dlib_resnet", embedding_size=128)
    assert sorted(saved.names) == ["biden", "obama"]
    assert saved.sources("obama") == ["obama/obama.jpg"]
    # The file is JSON + npz, readable without pickle.
    assert json.loads(open(report["gallery"]).read())["model_id"] == "dlib_resnet"


def test_infer_names_other_photos_of_enrolled_people(learner, photos):
    for name, person in (("obama2.jpg", "obama"), ("obama3.jpg", "obama"),
                         ("biden.jpg", "biden")):
        cat = learner.infer(str(photos / name))
        assert cat is not None and cat.name == person, (name, cat)
    cat = learner.infer(read_image_bgr(photos / "obama2.jpg"))  # ndarray input too
    assert cat.name == "obama" and cat.confidence > learner.embedder.meta.threshold


def test_infer_on_a_tight_face_crop_uses_the_whole_image(learner, detector, photos):
    img = read_image_bgr(photos / "obama3.jpg")
    x1, y1, x2, y2 = detector.detect(img)[0].box.astype(int)
    crop = np.ascontiguousarray(img[y1:y2, x1:x2])
    cat = learner.infer(crop)
    assert cat is not None and cat.name == "obama"


def test_fit_reference_keeps_every_sample_and_infer_takes_seed_image_objects(detector, photos,
                                                                             tmp_path):
    (tmp_path / "ref" / "obama").mkdir(parents=True)
    for name in ("obama.jpg", "obama2.jpg"):
        shutil.copy(photos / name, tmp_path / "ref" / "obama")
    lrn = FaceRecognitionLearner(backbone="dlib_resnet", device="cpu", detector=detector,
                                 temp_path=str(tmp_path))
    lrn.fit_reference(str(tmp_path / "ref"), str(tmp_path / "db"))
    assert lrn.database.count("obama") == 2
    assert lrn.database.sources("obama") == ["obama/obama.jpg", "obama/obama2.jpg"]

    class SeedImage:  # the seed's engine.data.Image exposes opencv() -> BGR
        def __init__(self, data):
            self.data = data

        def opencv(self):
            return self.data

    assert lrn.infer(SeedImage(read_image_bgr(photos / "obama3.jpg"))).name == "obama"


def test_unknown_person_gives_none(detector, photos, tmp_path):
    only_biden = tmp_path / "ref" / "biden"
    only_biden.mkdir(parents=True)
    shutil.copy(photos / "biden.jpg", only_biden)
    lrn = FaceRecognitionLearner(backbone="dlib_resnet", device="cpu", detector=detector,
                                 temp_path=str(tmp_path))
    lrn.fit_reference(str(tmp_path / "ref"), str(tmp_path / "db"))
    assert lrn.infer(str(photos / "obama2.jpg")) is None


def test_fit_reference_without_path_loads_the_saved_database(learner, detector, photos,
                                                             tmp_path):
    again = FaceRecognitionLearner(backbone="dlib_resnet", device="cpu", detector=detector,
                                   temp_path=str(tmp_path))
    with pytest.raises(RuntimeError, match="no reference database"):
        again.infer(str(photos / "obama2.jpg"))
    again.fit_reference(None, learner.report["gallery"])
    assert again.infer(str(photos / "obama2.jpg")).name == "obama"
    with pytest.raises(FileNotFoundError, match="gallery index not found"):
        again.fit_reference(None, str(tmp_path / "missing"))
    # A database made with another model is refused.
    Gallery("ir_50_512", 512).save(tmp_path / "other")
    with pytest.raises(GalleryError, match="'ir_50_512'"):
        again.fit_reference(None, str(tmp_path / "other"))


def test_save_load_optimize_round_trip(learner, detector, photos, tmp_path):
    target = str(photos / "obama2.jpg")
    before = learner.infer(target)
    folder = learner.save(tmp_path / "model")
    meta = json.loads((folder / "backbone.json").read_text())
    assert meta["architecture"] == "dlib_resnet" and meta["onnx_file"] is None
    assert meta["weights_sha256"] == hashlib.sha256(
        (folder / "backbone.pth").read_bytes()).hexdigest()

    loaded = FaceRecognitionLearner(backbone="dlib_resnet", device="cpu", detector=detector,
                                    temp_path=str(tmp_path / "t1")).load(folder)
    loaded.fit_reference(None, learner.report["gallery"])
    after = loaded.infer(target)
    assert after.name == before.name and after.confidence == pytest.approx(before.confidence,
                                                                           abs=1e-5)

    onnx_path = loaded.optimize()
    assert onnx_path.is_file() and loaded.onnx_parity < 1e-3
    assert loaded.embedder.backend == "onnx"
    optimized = loaded.infer(target)
    assert optimized.name == "obama"
    assert optimized.confidence == pytest.approx(before.confidence, abs=1e-3)

    folder2 = loaded.save(tmp_path / "model_onnx")
    assert (folder2 / "backbone.onnx").is_file()
    again = FaceRecognitionLearner(backbone="dlib_resnet", device="cpu", detector=detector,
                                   temp_path=str(tmp_path / "t2")).load(folder2)
    assert again.embedder.backend == "onnx"
    again.fit_reference(None, learner.report["gallery"])
    assert again.infer(target).name == "obama"


def test_load_refuses_altered_weights_and_other_architectures(learner, tmp_path):
    folder = learner.save(tmp_path / "model")
    with pytest.raises(ValueError, match="holds a 'dlib_resnet' model but this learner's "
                                         "backbone is 'ir_50'"):
        FaceRecognitionLearner(device="cpu").load(folder)
    with open(folder / "backbone.pth", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        FaceRecognitionLearner(backbone="dlib_resnet", device="cpu").load(folder)
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        FaceRecognitionLearner(device="cpu").load(tmp_path / "nothing")


def test_load_refuses_weights_without_a_recorded_sha256(learner, tmp_path):
    # The same rule as the Embedder's (recognition.model_meta.verified_file).
    folder = learner.save(tmp_path / "model")
    meta = json.loads((folder / "backbone.json").read_text())
    meta["weights_sha256"] = None
    (folder / "backbone.json").write_text(json.dumps(meta))
    with pytest.raises(ModelIntegrityError, match=r"records no weights_sha256 for .*backbone.pth"):
        FaceRecognitionLearner(backbone="dlib_resnet", device="cpu").load(folder)


def test_align_writes_chips_in_the_same_tree_and_reports_problems(learner, reference, photos,
                                                                  tmp_path):
    with pytest.raises(ValueError, match="must be outside data"):
        learner.align(str(reference), str(reference / "aligned"), silent=True)
    with pytest.raises(ValueError, match="must be outside data"):
        learner.align(str(reference), str(reference), silent=True)
    with pytest.raises(ValueError, match="needs the data folder"):
        learner.align("", str(tmp_path / "x"), silent=True)
    before = {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()}
    out = tmp_path / "aligned"
    report = learner.align(str(reference), str(out), crop_size=112, silent=True)
    assert report["aligned"] == 2 and report["images"] == 3
    assert report["no_face"] == [str(reference / "nobody" / "wall.jpg")]
    for rel in ("obama/obama.jpg", "biden/biden.jpg"):
        chip = read_image_bgr(out / rel)
        assert chip.shape == (112, 112, 3)
    assert {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()} == before
    # The aligned chips are still recognised (tight crops: the landmark search pads them).
    assert learner.infer(str(out / "obama" / "obama.jpg")).name == "obama"


def test_align_reports_images_with_several_faces(learner, photos, tmp_path):
    a, b = read_image_bgr(photos / "obama.jpg"), read_image_bgr(photos / "biden.jpg")
    h = max(a.shape[0], b.shape[0])
    pair = np.zeros((h, a.shape[1] + b.shape[1], 3), np.uint8)
    pair[:a.shape[0], :a.shape[1]] = a
    pair[:b.shape[0], a.shape[1]:] = b
    (tmp_path / "data" / "x").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "data" / "x" / "pair.jpg"), pair)
    report = learner.align(str(tmp_path / "data"), str(tmp_path / "out"), crop_size=96,
                           silent=True)
    assert report["several_faces"] == [str(tmp_path / "data" / "x" / "pair.jpg")]
    assert read_image_bgr(tmp_path / "out" / "x" / "pair.jpg").shape == (96, 96, 3)


# ---------------------------------------------------------------- downloads (local server)
def test_download_pretrained_verifies_sha256_and_loads_into_the_backbone(server, tmp_path,
                                                                         detector, photos):
    files, base = server
    from face_perception.recognition.backbones import get_model
    torch.manual_seed(1)
    weights = tmp_path / "published.pth"
    torch.save(get_model("mobilefacenet", embedding_size=512).state_dict(), weights)
    payload = weights.read_bytes()
    files["/backbone_mobilefacenet.pth"] = payload
    sha = hashlib.sha256(payload).hexdigest()

    lrn = FaceRecognitionLearner(backbone="mobilefacenet", device="cpu", detector=detector,
                                 temp_path=str(tmp_path / "temp"))
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        lrn.download(str(tmp_path / "dl"), url=f"{base}/backbone_mobilefacenet.pth",
                     sha256="0" * 64)
    path = lrn.download(str(tmp_path / "dl"), url=f"{base}/backbone_mobilefacenet.pth",
                        sha256=sha)
    assert path.read_bytes() == payload
    emb = lrn.embed(str(photos / "obama.jpg"))
    assert emb.shape == (512,) and abs(np.linalg.norm(emb) - 1) < 1e-5
    # The seed's flow: download(path) then load(path) in another learner gives the same model.
    other = FaceRecognitionLearner(backbone="mobilefacenet", device="cpu", detector=detector,
                                   temp_path=str(tmp_path / "temp2")).load(tmp_path / "dl")
    assert np.allclose(other.embed(str(photos / "obama.jpg")), emb, atol=1e-5)
    with pytest.raises(DownloadError, match="HTTP 404"):
        lrn.download(str(tmp_path / "dl2"), url=f"{base}/nope.pth", sha256=sha)
    with pytest.raises(ValueError, match="download mode must be"):
        lrn.download(mode="weights")
    with pytest.raises(ValueError, match="nothing to download"):
        FaceRecognitionLearner(backbone="dlib_resnet", device="cpu").download(str(tmp_path))
    with pytest.raises(ValueError, match="no published weights for backbone 'ir_se_50'"):
        FaceRecognitionLearner(backbone="ir_se_50", device="cpu").download(str(tmp_path))
    # Registry entries without a pinned checksum are refused before any byte is fetched.
    with pytest.raises(ValueError, match="no sha256 is pinned"):
        lrn.download(str(tmp_path / "dl3"), url=f"{base}/backbone_mobilefacenet.pth")
    assert not (tmp_path / "dl3").exists()


def test_download_test_data_fetches_the_seed_image_tree(server, tmp_path, photos):
    files, base = server
    jpeg = (photos / "obama.jpg").read_bytes()
    for i in range(1, 7):
        for j in (1, 2):
            files[f"/images/{i}/{j}.jpg"] = jpeg
    lrn = FaceRecognitionLearner(backbone="dlib_resnet", device="cpu")
    dest = lrn.download(str(tmp_path), mode="test_data", url=f"{base}/images")
    got = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.jpg"))
    assert len(got) == 12 and got[0] == "1/1.jpg"
    assert (dest / "6" / "2.jpg").read_bytes() == jpeg


# ---------------------------------------------------------------- verification evaluation
@pytest.fixture(scope="module")
def lfw_tree(photos, tmp_path_factory):
    """LFW-style tree (name/name_000n.jpg) of the real photos."""
    root = tmp_path_factory.mktemp("lfw")
    for person, files in (("obama", ["obama.jpg", "obama2.jpg", "obama3.jpg"]),
                          ("biden", ["biden.jpg"])):
        (root / person).mkdir()
        for i, f in enumerate(files, 1):
            shutil.copy(photos / f, root / person / f"{person}_{i:04d}.jpg")
    return root


def test_eval_on_a_verification_bin_separates_the_real_pairs(learner, detector, photos,
                                                             tmp_path):
    from face_perception.alignment import ARCFACE_TEMPLATE_112, align_to_template
    from face_perception.data.verification_bin import write_verification_bin

    # InsightFace-style chips: 112x112 in the ArcFace template, re-aligned by eval into the
    # dlib model's 150x150 geometry.
    chips = {}
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        img = read_image_bgr(photos / name)
        chips[name] = align_to_template(img, detector.detect(img)[0].landmarks,
                                        ARCFACE_TEMPLATE_112, 112)
    pairs = [("obama.jpg", "obama2.jpg", True), ("obama.jpg", "biden.jpg", False),
             ("obama.jpg", "obama3.jpg", True), ("obama2.jpg", "biden.jpg", False),
             ("obama2.jpg", "obama3.jpg", True), ("obama3.jpg", "biden.jpg", False)]
    images = [chips[n] for a, b, _ in pairs for n in (a, b)]
    path = write_verification_bin(tmp_path / "tiny_lfw.bin", images, [s for *_, s in pairs])
    metrics = learner.eval(str(path), silent=True)
    assert metrics["num_pairs"] == 6 and metrics["dataset_kind"] == "bin"
    assert metrics["accuracy_mean"] == 1.0 and metrics["auc"] == 1.0 and metrics["eer"] == 0.0
    png = metrics["roc_png"]
    assert png.endswith("roc_tiny_lfw.png") and open(png, "rb").read(4) == b"\x89PNG"


def test_eval_on_an_imagefolder_and_a_pairs_list(learner, lfw_tree, tmp_path):
    from face_perception.data.pairs import write_lfw_pairs

    metrics = learner.eval(str(lfw_tree), num_pairs=6, silent=True)
    assert metrics["dataset_kind"] == "imagefolder"
    assert (metrics["num_same"], metrics["num_different"]) == (3, 3)
    assert metrics["auc"] == 1.0
    pairs = write_lfw_pairs(lfw_tree / "pairs.txt", [("obama", 1, 2), ("obama", 2, 3),
                                                     ("obama", 1, "biden", 1),
                                                     ("obama", 3, "biden", 1)])
    metrics = learner.eval(str(pairs), silent=True)
    assert metrics["dataset_kind"] == "pairs" and metrics["num_pairs"] == 4
    assert metrics["auc"] == 1.0 and metrics["skipped_pairs"] == []
    with pytest.raises(FileNotFoundError, match="evaluation dataset not found"):
        learner.eval(str(tmp_path / "nope.bin"), silent=True)


def test_state_dicts_in_face_evolve_naming_load_into_our_ir_backbone(tmp_path, photos,
                                                                     detector):
    from face_perception.recognition.backbones import get_model
    torch.manual_seed(2)
    ours = get_model("ir_50").state_dict()
    evolve = {k.replace("stem.", "input_layer.", 1).replace("head.", "output_layer.", 1)
              .replace(".shortcut.", ".shortcut_layer.").replace(".residual.", ".res_layer."): v
              for k, v in ours.items()}
    assert "body.0.res_layer.1.weight" in evolve and "input_layer.0.weight" in evolve
    torch.save(evolve, tmp_path / "backbone_ir_50.pth")
    lrn = FaceRecognitionLearner(device="cpu", detector=detector, temp_path=str(tmp_path))
    lrn.load_state_dict_file(tmp_path / "backbone_ir_50.pth", threshold=0.4)
    loaded = lrn._torch_model().state_dict()
    assert all(torch.equal(loaded[k], ours[k]) for k in ours)
    assert lrn.embedder.meta.threshold == 0.4
    # Own weights, own model id (galleries of other ir_50 weights are refused).
    assert lrn.embedder.meta.name.startswith("ir_50_512_") and len(lrn.embedder.meta.name) == 18
    with pytest.raises(ValueError, match="does not fit backbone 'ir_50'"):
        torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
        lrn.load_state_dict_file(tmp_path / "other.pth")
