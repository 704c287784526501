"""Head pose from 5 landmarks (face_perception.head_pose): exact on a projected model, and on the
real detector's landmarks of real photos: plausible distance, and the pose follows the image when
it is rolled about the principal point or mirrored."""
import cv2
import numpy as np
import pytest

from face_perception import head_pose as hp
from face_perception.imageio import read_image_bgr


def rot(axis, deg):
    rvec = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis) * np.radians(deg)
    return cv2.Rodrigues(rvec)[0]


def angle_deg(r):
    """Rotation angle of a rotation matrix."""
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))


def intrinsics(f, w, h, d=()):
    return hp.Intrinsics.from_camera_info([f, 0, (w - 1) / 2, 0, f, (h - 1) / 2, 0, 0, 1], d)


def test_quaternion_round_trip_including_half_turns():
    rng = np.random.default_rng(0)
    cases = [np.eye(3), rot([1, 0, 0], 180), rot([0, 1, 0], 180), rot([0, 0, 1], 180),
             rot([1, 1, 0], 180), hp.FRONTAL, hp.GAZE_IN_FACE]
    cases += [rot(rng.normal(size=3), rng.uniform(0, 180)) for _ in range(50)]
    for r in cases:
        q = hp.quaternion_xyzw(r)
        assert abs(np.linalg.norm(q) - 1) < 1e-12 and q[3] >= 0
        np.testing.assert_allclose(hp.rotation_from_quaternion(*q), r, atol=1e-9)
    assert hp.quaternion_xyzw(np.eye(3)) == (0.0, 0.0, 0.0, 1.0)


def test_frame_conventions_follow_rep155():
    # Face: x out of the face, y to the person's left, z up; gaze: z = face x, x right, y down.
    for r in (hp.FRONTAL, hp.GAZE_IN_FACE):
        assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1)
    face = hp.HeadPose(hp.FRONTAL, np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(face.rotation[:, 0], [0, 0, -1])  # looks at the camera
    np.testing.assert_allclose(face.rotation[:, 2], [0, -1, 0])  # up = image up
    np.testing.assert_allclose(face.gaze_rotation[:, 2], face.rotation[:, 0])
    np.testing.assert_allclose(face.gaze_rotation[:, 1], -face.rotation[:, 2])
    assert hp.frontal_angle_deg(face) == pytest.approx(0.0)
    # The model: eyes 63 mm apart about the origin, the person's right eye first.
    np.testing.assert_allclose(hp.FACE_MODEL_M[0] + hp.FACE_MODEL_M[1], 0)
    assert np.linalg.norm(hp.FACE_MODEL_M[1] - hp.FACE_MODEL_M[0]) == pytest.approx(0.063)


@pytest.mark.parametrize("yaw,pitch,roll,distortion", [
    (0, 0, 0, ()), (30, 0, 0, ()), (-25, 15, 10, ()), (20, -10, -30, (0.1, -0.05, 0, 0, 0))])
def test_pose_of_a_projected_model_is_recovered_exactly(yaw, pitch, roll, distortion):
    cam = intrinsics(600.0, 640, 480, distortion)
    # Turn the frontal face about its own up (yaw), left (pitch) and forward (roll) axes.
    turn = rot([0, 0, 1], yaw) @ rot([0, 1, 0], pitch) @ rot([1, 0, 0], roll)
    truth = hp.HeadPose(hp.FRONTAL @ turn, np.array([0.1, -0.05, 0.8]))
    pixels, _ = cv2.projectPoints(hp.FACE_MODEL_M, cv2.Rodrigues(truth.rotation)[0],
                                  truth.translation, cam.matrix,
                                  cam.distortion if cam.distortion.size else None)
    pose = hp.solve_head_pose(pixels.reshape(5, 2), cam)
    np.testing.assert_allclose(pose.translation, truth.translation, atol=1e-6)
    np.testing.assert_allclose(pose.rotation, truth.rotation, atol=1e-6)


def test_camera_info_that_the_pinhole_model_cannot_use_is_refused():
    good_k = [500, 0, 320, 0, 500, 240, 0, 0, 1]
    with pytest.raises(hp.HeadPoseError, match="not a calibrated"):
        hp.Intrinsics.from_camera_info([0] * 9, [])
    with pytest.raises(hp.HeadPoseError, match="9 finite"):
        hp.Intrinsics.from_camera_info([500, 0, 320], [])
    with pytest.raises(hp.HeadPoseError, match="'equidistant' is not supported"):
        hp.Intrinsics.from_camera_info(good_k, [0.1, 0, 0, 0], "equidistant")
    with pytest.raises(hp.HeadPoseError, match="3 distortion coefficients"):
        hp.Intrinsics.from_camera_info(good_k, [0.1, 0, 0])
    assert hp.Intrinsics.from_camera_info(good_k, [], "").distortion.size == 0
    with pytest.raises(hp.HeadPoseError, match="need 5 finite landmarks"):
        hp.solve_head_pose(np.full((5, 2), np.nan), hp.Intrinsics.from_camera_info(good_k, []))


def photo_pose(img, detector, f):
    (face,) = detector.detect(img)
    h, w = img.shape[:2]
    return face, hp.solve_head_pose(face.landmarks, intrinsics(f, w, h))


def test_real_face_is_in_front_at_the_distance_its_eye_spacing_gives(photos, core_detector):
    img = read_image_bgr(photos / "obama.jpg")
    f = float(img.shape[1])  # a 53 degree horizontal field of view
    face, pose = photo_pose(img, core_detector, f)
    eye_px = float(np.linalg.norm(face.landmarks[1] - face.landmarks[0]))
    distance = float(np.linalg.norm(pose.translation))
    assert 0.3 < pose.translation[2] < 3.0
    # Pinhole: 63 mm between the eyes seen as eye_px pixels at focal length f.
    assert distance == pytest.approx(f * 0.063 / eye_px, rel=0.15)
    # A portrait: the face looks toward the camera (not exactly: the focal length and principal
    # point are guesses, and a smile moves the mouth corners off the neutral model).
    assert hp.frontal_angle_deg(pose) < 45


def test_pose_follows_the_landmarks_rolled_about_the_principal_point(photos, core_detector):
    # The real detector's landmarks, rotated in the image about the principal point: exactly
    # what a camera rolled about its optical axis sees, so the pose must roll with it.
    # (Rotating the photo itself mostly measures the detector: its landmarks move by up to
    # 20 px on these photos when the image turns.)
    for name in ("obama.jpg", "biden.jpg", "obama2.jpg"):
        img = read_image_bgr(photos / name)
        h, w = img.shape[:2]
        cam = intrinsics(float(w), w, h)
        face, pose = photo_pose(img, core_detector, float(w))
        for degrees in (-40, -15, 25, 90):
            m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
            rolled = hp.solve_head_pose(face.landmarks @ m[:, :2].T + m[:, 2], cam)
            r2d = np.eye(3)
            r2d[:2, :2] = m[:, :2]
            assert angle_deg(rolled.rotation @ pose.rotation.T @ r2d.T) < 0.1, (name, degrees)
            np.testing.assert_allclose(rolled.translation, r2d @ pose.translation, atol=2e-4)


def test_a_mirrored_face_turns_the_other_way(photos, core_detector):
    img = read_image_bgr(photos / "obama.jpg")
    h, w = img.shape[:2]
    face, pose = photo_pose(img, core_detector, float(w))
    flip_cam, flip_face = np.diag([-1.0, 1, 1]), np.diag([1.0, -1, 1])
    # Mirror x in the camera; the model's left and right swap too (its y axis). Exact on the
    # mirrored landmarks (left and right points swap places in our order) ...
    mirrored_pts = face.landmarks[[1, 0, 2, 4, 3]] * [-1, 1] + [w - 1, 0]
    mirrored = hp.solve_head_pose(mirrored_pts, intrinsics(float(w), w, h))
    assert angle_deg(mirrored.rotation.T @ flip_cam @ pose.rotation @ flip_face) < 0.1
    np.testing.assert_allclose(mirrored.translation, flip_cam @ pose.translation, atol=2e-4)
    # ... and within a few degrees on the detector's landmarks of the mirrored photo.
    _, seen = photo_pose(cv2.flip(img, 1), core_detector, float(w))
    assert angle_deg(seen.rotation.T @ flip_cam @ pose.rotation @ flip_face) < 8.0
    # Yaw: the forward axis's sideways part changes sign.
    assert seen.rotation[0, 0] * pose.rotation[0, 0] <= 0 or abs(pose.rotation[0, 0]) < 0.05
