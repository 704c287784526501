"""A face box's motion: constant-velocity Kalman filter on (cx, cy, w, h) with real time steps.

filterpy does the filter algebra; this module only builds the matrices for an elapsed time, so a
dropped frame or an uneven frame rate is one longer step rather than a wrong one.
"""
from __future__ import annotations

import numpy as np
from filterpy.kalman import KalmanFilter

# Noise as fractions of the box height, per frame at REFERENCE_DT (ByteTrack's values at 30 Hz):
# a face box moves and resizes in proportion to its size. Scaled with the real elapsed time.
REFERENCE_DT = 1.0 / 30.0
POSITION_STD = 1.0 / 20.0
VELOCITY_STD = 1.0 / 160.0
MEASUREMENT_STD = 1.0 / 20.0
H = np.hstack([np.eye(4), np.zeros((4, 4))])


def box_to_state(box) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(4))
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


class BoxKalman:
    """Kalman-filtered box of one track; ``predict(dt)`` then ``update(box)`` per frame."""

    def __init__(self, box):
        z = box_to_state(box)
        self.kf = KalmanFilter(dim_x=8, dim_z=4)
        self.kf.x = np.concatenate([z, np.zeros(4)])
        self.kf.H = H.copy()
        h = max(z[3], 1.0)
        # A new track's velocity is unknown: large initial variance (ByteTrack's factors).
        self.kf.P = np.diag(np.square(np.concatenate([
            [2 * POSITION_STD * h] * 4, [10 * VELOCITY_STD * h / REFERENCE_DT] * 4])))

    def predict(self, dt: float) -> np.ndarray:
        """Move the state ``dt`` seconds on; returns the predicted box."""
        dt = max(float(dt), 0.0)
        if dt > 0:
            f = np.eye(8)
            f[:4, 4:] = np.eye(4) * dt
            steps = dt / REFERENCE_DT
            h = max(self.kf.x[3], 1.0)
            q = np.square(np.concatenate([[POSITION_STD * h] * 4,
                                          [VELOCITY_STD * h / REFERENCE_DT] * 4])) * steps
            self.kf.predict(F=f, Q=np.diag(q))
            # A shrinking box must not turn inside out while the face is unseen.
            self.kf.x[2:4] = np.maximum(self.kf.x[2:4], 1.0)
        return self.box

    def update(self, box) -> None:
        h = max(box_to_state(box)[3], 1.0)
        self.kf.update(box_to_state(box), R=np.eye(4) * (MEASUREMENT_STD * h) ** 2)

    @property
    def box(self) -> np.ndarray:
        cx, cy, w, h = self.kf.x[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)
