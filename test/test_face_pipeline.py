"""FacePipeline, the one per-frame pipeline of nodes, bag and video: on the real photos it gives
exactly what its parts give (Detector boxes, Recognizer names and embeddings), draws and hides
faces as asked, and build_recognizer turns settings into the same recognizer for CLI and nodes."""
import numpy as np
import pytest

from face_perception.detection import Detector
from face_perception.gallery import Gallery
from face_perception.imageio import read_image_bgr
from face_perception.pipeline import FacePipeline, build_recognizer
from face_perception.recognition import Embedder, Recognizer


@pytest.fixture(scope="module")
def detector():
    return Detector()


@pytest.fixture(scope="module")
def recognizer(photos, detector):
    emb = Embedder("dlib_resnet", backend="onnx")
    g = Gallery(emb.meta.name, emb.meta.embedding_size)
    for person in ("obama", "biden"):
        img = read_image_bgr(photos / f"{person}.jpg")
        g.add(person, emb.embed_faces(img, detector.detect(img)[:1]))
    return Recognizer(emb, g, detector=detector)


def test_frame_result_holds_the_detector_faces_and_the_recognizer_names(photos, detector,
                                                                         recognizer):
    image = read_image_bgr(photos / "obama2.jpg")
    result = FacePipeline(detector, recognizer).process(image, 0)
    faces = detector.detect(image)
    assert [f.box.tolist() for f in result.faces] == [f.box.tolist() for f in faces]
    assert result.names == [c.name if c else None for c in recognizer.identify(image, faces)]
    assert result.names == ["obama"] and result.named == 1 and result.track_ids == [None]
    drawn = result.annotated()
    assert drawn.shape == image.shape and not np.array_equal(drawn, image)


def test_detection_only_pipeline_has_no_identities_and_hides_every_face(photos, detector):
    image = read_image_bgr(photos / "biden.jpg")
    result = FacePipeline(detector, None, anonymize="unknown").process(image, 0)
    assert result.categories is None and result.names == [None] * len(result.faces)
    x1, y1, x2, y2 = (int(v) for v in result.faces[0].box)
    inner = result.annotated()[y1 + 10:y2 - 10, x1 + 10:x2 - 10]
    assert not np.array_equal(inner, image[y1 + 10:y2 - 10, x1 + 10:x2 - 10])


def test_pipeline_without_detector_needs_the_faces(photos, detector):
    image = read_image_bgr(photos / "biden.jpg")
    with pytest.raises(ValueError, match="no detector"):
        FacePipeline().process(image, 0)
    faces = detector.detect(image)
    assert FacePipeline().process(image, 0, faces=faces).faces == faces
    with pytest.raises(ValueError, match="no image"):
        FacePipeline().process_received(None, [], 0, []).annotated()


def test_build_recognizer_reads_a_gallery_and_refuses_a_missing_one(tmp_path, detector,
                                                                   recognizer):
    recognizer.gallery.save(tmp_path / "people.json")
    settings = {"model": "dlib_resnet", "backend": "onnx", "device": "cpu",
                "gallery_path": str(tmp_path / "people.json"), "threshold": -1.0,
                "margin": -1.0}
    setup = build_recognizer(settings, recognizer.embedder, detector)
    assert setup.names == ["obama", "biden"] and setup.gallery_note == ""
    assert setup.recognizer.rule == recognizer.rule  # sentinels: the model's rule
    missing = {**settings, "gallery_path": str(tmp_path / "none.json")}
    assert "not found" in build_recognizer(missing, recognizer.embedder, detector).gallery_note
    with pytest.raises(FileNotFoundError):
        build_recognizer(missing, recognizer.embedder, detector, require_gallery=True)
