"""Batched rigid-transform maths on numpy arrays.

Quaternions are (..., 4) arrays in (w, x, y, z) order, the nuScenes convention. Rotation matrices
act on column vectors: `p_to = from_rotation @ p_from`. Functions follow pyquaternion's
conventions (which nuscenes-devkit uses), including its yaw formula, so results match the devkit
to rounding.
"""

from __future__ import annotations

import numpy as np

_UNIT_TOLERANCE = 1e-14
"""pyquaternion's `is_unit` tolerance on |q|^2: quaternions within it are used as they are."""


def normalised(quaternions: np.ndarray) -> np.ndarray:
    """Unit quaternions, leaving those already unit (to pyquaternion's tolerance) untouched."""
    q = np.asarray(quaternions, dtype=np.float64)
    squared = np.einsum("...i,...i->...", q, q)
    scale = np.where(np.abs(1.0 - squared) < _UNIT_TOLERANCE, 1.0, np.sqrt(squared))
    return q / scale[..., None]


def rotation_matrices(quaternions: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices of (..., 4) quaternions (normalised first)."""
    w, x, y, z = np.moveaxis(normalised(quaternions), -1, 0)
    return np.stack(
        [
            np.stack([w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z], -1),
        ],
        -2,
    )


def quaternion_product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Hamilton products `left * right` (the rotation `right` followed by `left`)."""
    a0, a1, a2, a3 = np.moveaxis(np.asarray(left, dtype=np.float64), -1, 0)
    b0, b1, b2, b3 = np.moveaxis(np.asarray(right, dtype=np.float64), -1, 0)
    return np.stack(
        [
            a0 * b0 - a1 * b1 - a2 * b2 - a3 * b3,
            a1 * b0 + a0 * b1 - a3 * b2 + a2 * b3,
            a2 * b0 + a3 * b1 + a0 * b2 - a1 * b3,
            a3 * b0 - a2 * b1 + a1 * b2 + a0 * b3,
        ],
        -1,
    )


def quaternion_inverse(quaternions: np.ndarray) -> np.ndarray:
    """Inverse quaternions: the conjugate divided by |q|^2."""
    q = np.asarray(quaternions, dtype=np.float64)
    conjugate = q * np.array([1.0, -1.0, -1.0, -1.0])
    return conjugate / np.einsum("...i,...i->...", q, q)[..., None]


def arctan2(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`np.arctan2(y, x)` (rad) with the same last bit whatever the arrays' memory layout. numpy 1.2x's SIMD
    arctan2 falls back to libm, which rounds some values differently, when an input's span as numpy estimates
    it (length x stride, which runs past the end of a strided view) reaches the output buffer: for strided
    views that depends on where the heap put the output. Contiguous inputs always take the SIMD loop."""
    return np.arctan2(np.ascontiguousarray(y), np.ascontiguousarray(x))


def yaw(quaternions: np.ndarray) -> np.ndarray:
    """Yaw about z, rad, by pyquaternion's `yaw_pitch_roll[0]` formula (normalised first)."""
    w, x, y, z = np.moveaxis(normalised(quaternions), -1, 0)
    return arctan2(2 * (w * z - x * y), 1 - 2 * (y * y + z * z))


def heading(quaternions: np.ndarray) -> np.ndarray:
    """Angle, rad, of the rotated x axis in the xy plane, as nuScenes-devkit `quaternion_yaw`."""
    matrices = rotation_matrices(quaternions)
    return arctan2(matrices[..., 1, 0], matrices[..., 0, 0])


def apply(rotation: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """`rotation @ v` for stacks of (..., 3, 3) rotations and (..., 3) vectors."""
    return np.einsum("...ij,...j->...i", rotation, vectors)


def apply_inverse(rotation: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """`rotation.T @ v`: the inverse of a rotation matrix applied to (..., 3) vectors."""
    return np.einsum("...ji,...j->...i", rotation, vectors)
