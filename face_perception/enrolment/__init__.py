"""Enrolment: putting people into a gallery, from photos, a camera stream or a video clip.

Modules: ``photos`` (image files -> largest-face embeddings -> identities; the faces come
from ``recognition.photo_faces``), ``names`` (what a new identity may be called), ``views``
(quality gate, one-person check, best distinct views), ``stream`` (the recognizer node's
non-waiting sessions and the stranger learner), ``clip`` (video files and bag topics, tracked),
``gallery_file`` (save a gallery file with its look-alikes, changes written straight to it).
A layer above pipeline and bag (test/test_layers.py): clips are read from bags and tracked.
"""
from face_perception.enrolment.clip import enrol_clip_into_file
from face_perception.enrolment.names import check_new_name
from face_perception.enrolment.photos import enrol_photos, enrol_photos_into_file, enroll_tree

__all__ = ["check_new_name", "enrol_clip_into_file", "enrol_photos", "enrol_photos_into_file",
           "enroll_tree"]
