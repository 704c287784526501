"""Names of new enrolments: any script's letters, no reserved labels, path or control
characters, bounded length; the one rule for the CLI and the recognizer's enrolment."""
import unicodedata

import pytest

from face_perception.enrolment.names import MAX_NAME_LENGTH, check_new_name
from face_perception.enrolment.stream import MAX_FRAMES, MAX_TIMEOUT_S, check_goal
from face_perception.gallery import GalleryError


@pytest.mark.parametrize("name, message", [
    ("", "empty"), ("   ", "empty"), ("unknown", "reserved"), ("Unknown", "reserved"),
    ("face", "reserved"), ("FACE", "reserved"), ("anon_3", "strangers"),
    ("x" * 5000, "5000 characters"), ("x" * (MAX_NAME_LENGTH + 1), "at most"),
    ("../../etc/passwd", "not allowed"), ("a/b", "not allowed"), ("a\\b", "not allowed"),
    ("..", "path component"), ("a\x00b", "control"), ("tab\there", "control"),
    ("\u202eevil", "not allowed"), (" bob", "white space"), (42, "strings"), (None, "strings"),
])
def test_new_names_refused_with_the_reason(name, message):
    with pytest.raises(GalleryError, match=message):
        check_new_name(name)


@pytest.mark.parametrize("name", ["Zoë", "Андрей", "王伟", "O'Brien", "Jean-Luc Picard",
                                  "محمد", "x" * MAX_NAME_LENGTH, "anonymous", "unknown person"])
def test_names_of_any_script_are_accepted(name):
    assert check_new_name(name) == name


def test_name_typed_in_decomposed_form_is_stored_composed():
    decomposed = unicodedata.normalize("NFD", "Zoë")
    assert decomposed != "Zoë" and check_new_name(decomposed) == "Zoë"


def test_node_unknown_label_is_reserved_too():
    with pytest.raises(GalleryError, match="reserved"):
        check_new_name("Stranger", reserved=["stranger"])


@pytest.mark.parametrize("kwargs, message", [
    ({"max_frames": 4294967295}, f"1..{MAX_FRAMES}"), ({"max_frames": -1}, f"1..{MAX_FRAMES}"),
    ({"max_samples": 51}, "1..50"), ({"timeout_s": -1.0}, "timeout_s"),
    ({"timeout_s": float("nan")}, "timeout_s"), ({"timeout_s": MAX_TIMEOUT_S + 1}, "timeout_s"),
    ({"max_frames": 2.5}, "whole number"), ({"track_id": "7" * 65}, "track_id"),
])
def test_enrolment_goal_bounds_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_goal("obama", **kwargs)


def test_enrolment_goal_zero_values_take_the_node_defaults():
    goal = check_goal("Zoë", "7", defaults={"max_frames": 20, "max_samples": 3,
                                            "timeout_s": 12.0})
    assert (goal.name, goal.track_id, goal.max_frames, goal.max_samples, goal.timeout_s,
            goal.allow_duplicate) == ("Zoë", "7", 20, 3, 12.0, False)
    goal = check_goal("Zoë", "", MAX_FRAMES, 50, MAX_TIMEOUT_S, True)
    assert (goal.max_frames, goal.max_samples, goal.timeout_s, goal.allow_duplicate) == (
        MAX_FRAMES, 50, MAX_TIMEOUT_S, True)
