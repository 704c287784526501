"""Enrolment into a gallery file (enrolment/: photos.enrol_photos_into_file,
gallery_file.save_gallery_file; recognizer.open_gallery_file), without the CLI, on the shipped
photos."""
import shutil

import pytest

from face_perception.enrolment import enrol_photos_into_file
from face_perception.enrolment.gallery_file import save_gallery_file
from face_perception.gallery import Gallery, GalleryError
from face_perception.recognition.recognizer import open_gallery_file


@pytest.fixture()
def people(photos, tmp_path):
    for name in ("obama", "biden"):
        (tmp_path / "people" / name).mkdir(parents=True)
        shutil.copy(photos / f"{name}.jpg", tmp_path / "people" / name)
    return tmp_path / "people"


def test_enrol_photos_into_file_saves_every_person_tagged_with_the_model(
        people, tmp_path, core_detector, dlib_embedder):
    path = tmp_path / "people.json"
    done = enrol_photos_into_file(path, core_detector, dlib_embedder, [people])
    assert done.saved is not None and done.saved.index == path
    assert (done.saved.identities, done.saved.samples, done.saved.look_alikes) == (2, 2, [])
    summary = done.to_dict()
    assert summary["gallery"] == str(path) and summary["enrolled"] == ["biden", "obama"]
    assert summary["embedded"] == 2 and summary["gallery_samples"] == 2
    saved = Gallery.load(path)
    assert saved.names == ["biden", "obama"] and saved.model_id == dlib_embedder.meta.name


def test_enrol_photos_into_file_writes_nothing_when_no_photo_gives_a_face(
        tmp_path, core_detector, dlib_embedder):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    path = tmp_path / "people.json"
    done = enrol_photos_into_file(path, core_detector, dlib_embedder, [broken], name="x")
    assert done.saved is None and done.report["unreadable"] == [str(broken)]
    assert done.to_dict()["gallery"] is None
    assert not path.exists() and not Gallery.exists(path)


def test_enrol_photos_into_file_refuses_a_reserved_name_before_writing(
        photos, tmp_path, core_detector, dlib_embedder):
    path = tmp_path / "people.json"
    with pytest.raises(GalleryError, match="reserved"):
        enrol_photos_into_file(path, core_detector, dlib_embedder, [photos / "obama.jpg"],
                               name="unknown")
    assert not Gallery.exists(path)


def test_the_same_face_under_two_names_is_reported_as_look_alikes(
        photos, tmp_path, core_detector, dlib_embedder):
    path = tmp_path / "people.json"
    enrol_photos_into_file(path, core_detector, dlib_embedder, [photos / "obama.jpg"], name="a")
    done = enrol_photos_into_file(path, core_detector, dlib_embedder, [photos / "obama.jpg"],
                                  name="b")
    ((a, b, similarity),) = done.saved.look_alikes
    assert (a, b) == ("a", "b") and similarity > 0.99
    assert done.to_dict()["look_alikes"] == [["a", "b", similarity]]


def test_open_gallery_file_refuses_a_missing_file_unless_creating_and_another_models_file(
        tmp_path, dlib_embedder):
    path = tmp_path / "people.json"
    with pytest.raises((GalleryError, FileNotFoundError), match="people"):
        open_gallery_file(path, dlib_embedder.meta)
    fresh = open_gallery_file(path, dlib_embedder.meta, create=True)
    assert len(fresh) == 0 and not Gallery.exists(path)
    Gallery("another_model", dlib_embedder.meta.embedding_size).save(path)
    with pytest.raises(GalleryError, match="another_model"):
        open_gallery_file(path, dlib_embedder.meta, create=True)


def test_save_gallery_file_counts_what_the_file_holds(photos, tmp_path, core_detector,
                                                      dlib_embedder):
    path = tmp_path / "people.json"
    gallery = open_gallery_file(path, dlib_embedder.meta, create=True)
    done = enrol_photos_into_file(tmp_path / "other.json", core_detector, dlib_embedder,
                                  [photos / "biden.jpg"], name="biden")
    gallery.add("biden", Gallery.load(done.saved.index).samples("biden"))
    saved = save_gallery_file(gallery, path, dlib_embedder.meta)
    assert (saved.index, saved.identities, saved.samples) == (path, 1, 1)
    assert Gallery.load(path).names == ["biden"]
