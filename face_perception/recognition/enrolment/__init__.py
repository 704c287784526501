"""Enrolment: putting people into a gallery, from photos, a camera stream or a video clip.

Modules: ``photos`` (image files -> largest-face embeddings -> a gallery file), ``names`` (what a
new identity may be called), ``views`` (quality gate, one-person check, best distinct views),
``stream`` (the recognizer node's non-waiting sessions and the stranger learner), ``clip`` (video
files and bag topics -> a gallery file), ``gallery_file`` (open a gallery file for a model, save
it with its look-alikes, changes written straight to it).
"""
from face_perception.recognition.enrolment.clip import enrol_clip_into_file
from face_perception.recognition.enrolment.names import check_new_name
from face_perception.recognition.enrolment.photos import (
    enrol_photos,
    enrol_photos_into_file,
    enroll_tree,
)

__all__ = ["check_new_name", "enrol_clip_into_file", "enrol_photos", "enrol_photos_into_file",
           "enroll_tree"]
