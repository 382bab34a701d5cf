"""Unity → nuScenes conventions, vectorised (docs: synthetic-schema.md, "Conversion").

Unity is left-handed with x right, y up, z forward and stores quaternions as (x, y, z, w);
nuScenes is right-handed with x forward, y left, z up and stores quaternions as (w, x, y, z).
Every function takes arrays with the record axis first, so one call converts a whole frame.
"""

from __future__ import annotations

import numpy as np

from occprep.errors import OccprepError
from occprep.geometry import arctan2

NUSCENES_FROM_UNITY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
"""`M`: a point in Unity axes → the same point in nuScenes axes (`p_n = M p_u`)."""

CAMERA_FROM_BODY_WXYZ = np.array([0.5, -0.5, 0.5, -0.5])
"""The fixed rotation `M · diag(1, −1, 1)` as a (w, x, y, z) quaternion: the nuScenes camera
frame (z forward, y down) relative to the nuScenes body frame of the same Unity object."""


def quat_multiply_xyzw(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product `a · b` of (…, 4) quaternions stored (x, y, z, w)."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a, float), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b, float), -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz], axis=-1)


def quat_multiply_wxyz(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product `a · b` of (…, 4) quaternions stored (w, x, y, z)."""
    return quat_multiply_xyzw(np.roll(a, -1, axis=-1), np.roll(b, -1, axis=-1)).take([3, 0, 1, 2], axis=-1)


def rotate_xyzw(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate (…, 3) vectors `v` by (…, 4) unit quaternions `q` stored (x, y, z, w)."""
    q = np.asarray(q, float)
    u, w = q[..., :3], q[..., 3:]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def position_to_nuscenes(p_unity: np.ndarray) -> np.ndarray:
    """(…, 3) positions, Unity axes → nuScenes axes, m."""
    return np.asarray(p_unity, float) @ NUSCENES_FROM_UNITY.T


def body_rotation_to_nuscenes(q_unity_xyzw: np.ndarray) -> np.ndarray:
    """(…, 4) Unity body orientations (x, y, z, w) → nuScenes (w, x, y, z): `(w, −z, x, −y)`.

    The body frame keeps its meaning (forward stays forward): a Unity yaw +θ becomes −θ.
    """
    x, y, z, w = np.moveaxis(np.asarray(q_unity_xyzw, float), -1, 0)
    return np.stack([w, -z, x, -y], axis=-1)


def camera_rotation_to_nuscenes(q_unity_xyzw: np.ndarray) -> np.ndarray:
    """(…, 4) Unity camera orientations → nuScenes camera orientations (w, x, y, z).

    `R_cam_n = M · R(q_u) · diag(1, −1, 1)`: the nuScenes camera looks along +z with y down.
    """
    return quat_multiply_wxyz(body_rotation_to_nuscenes(q_unity_xyzw), CAMERA_FROM_BODY_WXYZ)


def camera_point_to_nuscenes(p_unity_camera: np.ndarray) -> np.ndarray:
    """(…, 3) points in a Unity camera's frame → that camera's nuScenes frame (x right, y down,
    z forward), m: y flips, as `R_cam_n = M · R(q_u) · diag(1, −1, 1)` implies."""
    return np.asarray(p_unity_camera, float) * np.array([1.0, -1.0, 1.0])


def box_size_to_nuscenes(size_unity: np.ndarray) -> np.ndarray:
    """(…, 3) Unity box sizes (x, y, z) → nuScenes (w, l, h) = (s_x, s_z, s_y), m."""
    return np.asarray(size_unity, float)[..., [0, 2, 1]]


def boxes_to_world(camera_position: np.ndarray, camera_rotation_xyzw: np.ndarray,
                   box_translation: np.ndarray, box_rotation_xyzw: np.ndarray):
    """Boxes stored in the camera frame → Unity world: `p = p_cam + R(q_cam)·t`, `q = q_cam·q_box`.

    Returns (positions (N, 3), rotations (N, 4) x, y, z, w), Unity axes.
    """
    q_cam = np.broadcast_to(np.asarray(camera_rotation_xyzw, float), np.shape(box_rotation_xyzw))
    position = np.asarray(camera_position, float) + rotate_xyzw(q_cam, np.asarray(box_translation, float))
    return position, quat_multiply_xyzw(q_cam, box_rotation_xyzw)


def projection_matrix(matrix: "list[float] | list[list[float]]") -> np.ndarray:
    """The 3×3 projection `P` from a stored matrix: SOLO's 9 floats or legacy's 3 columns.

    Both are column-major: `P = reshape(matrix, 3, 3).T` equals `array(camera_intrinsic).T`.
    """
    return np.asarray(matrix, float).reshape(3, 3).T


def pixel_intrinsic(matrix, width: float, height: float, projection: str = "perspective") -> np.ndarray:
    """3×3 pixel camera matrix K of an image `width` × `height` from Unity's stored projection.

    `fx = P00·W/2, fy = P11·H/2, cx = W/2·(1 − P02), cy = H/2·(1 + P12)`.
    """
    if projection.lower() != "perspective":
        raise OccprepError(f"projection {projection!r} has no pixel camera matrix: only perspective "
                           "cameras convert to nuScenes; set the camera's projection to Perspective")
    p = projection_matrix(matrix)
    return np.array([[p[0, 0] * width / 2, 0.0, width / 2 * (1 - p[0, 2])],
                     [0.0, p[1, 1] * height / 2, height / 2 * (1 + p[1, 2])],
                     [0.0, 0.0, 1.0]])


def conjugate_wxyz(q: np.ndarray) -> np.ndarray:
    """Inverse of (…, 4) unit quaternions stored (w, x, y, z)."""
    return np.asarray(q, float) * np.array([1.0, -1.0, -1.0, -1.0])


def rotate_wxyz(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate (…, 3) vectors `v` by (…, 4) unit quaternions `q` stored (w, x, y, z)."""
    return rotate_xyzw(np.roll(np.asarray(q, float), -1, axis=-1), v)


def rotation_vector_wxyz(q: np.ndarray) -> np.ndarray:
    """(…, 3) axis × angle (rad) of (…, 4) unit quaternions (w, x, y, z), angle in [0, π]."""
    q = np.where(np.asarray(q, float)[..., :1] < 0, -q, q)
    v = q[..., 1:]
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * arctan2(norm, q[..., :1])
    return np.divide(angle * v, norm, out=np.zeros_like(v), where=norm > 1e-12)
