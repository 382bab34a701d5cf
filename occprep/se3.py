"""Batched rigid transforms: rotation and translation of each transform kept together.

An `SE3` named `b_from_a` maps points from frame a to frame b: `p_b = b_from_a.apply(p_a)`, and
`c_from_a = c_from_b.compose(b_from_a)`. Every method works on any leading batch shape, so one
object holds e.g. the camera -> lidar transform of every camera of every keyframe ((S, C) batch).
The idea is Argoverse 2's `SE3`, batched. Quaternions are (w, x, y, z), the nuScenes order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from occprep import geometry

Index = Union[int, slice, np.ndarray, tuple]


@dataclass(frozen=True)
class SE3:
    """A batch of rigid transforms `p -> rotation @ p + translation`.

    `rotation` is (..., 3, 3), `translation` (..., 3), m; both float64 with the same batch shape.
    """

    rotation: np.ndarray
    translation: np.ndarray

    @classmethod
    def from_quaternions(cls, quaternions: np.ndarray, translations: np.ndarray) -> "SE3":
        """Transforms from (..., 4) (w, x, y, z) rotations (normalised as pyquaternion does) and (..., 3)
        translations: the nuScenes `calibrated_sensor` / `ego_pose` convention (child -> parent)."""
        return cls(geometry.rotation_matrices(quaternions), np.asarray(translations, dtype=np.float64))

    @classmethod
    def from_matrices(cls, matrices: np.ndarray) -> "SE3":
        """Transforms from (..., 4, 4) homogeneous matrices."""
        matrices = np.asarray(matrices, dtype=np.float64)
        return cls(matrices[..., :3, :3], matrices[..., :3, 3])

    def __getitem__(self, index: Index) -> "SE3":
        """The transforms at `index` of the batch dimensions."""
        return SE3(self.rotation[index], self.translation[index])

    @property
    def shape(self) -> tuple:
        """The batch shape."""
        return self.translation.shape[:-1]

    def compose(self, first: "SE3") -> "SE3":
        """`self ∘ first`: apply `first`, then `self` (batch shapes broadcast)."""
        return SE3(self.rotation @ first.rotation, geometry.apply(self.rotation, first.translation) + self.translation)

    def inverse(self) -> "SE3":
        """The inverse transforms (`a_from_b` of `b_from_a`)."""
        rotation = np.swapaxes(self.rotation, -1, -2)
        return SE3(rotation, -geometry.apply(rotation, self.translation))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) points mapped by the transforms (batch shapes broadcast)."""
        return geometry.apply(self.rotation, points) + self.translation

    def rotate(self, vectors: np.ndarray) -> np.ndarray:
        """(..., 3) directions (velocities) rotated, without the translation."""
        return geometry.apply(self.rotation, vectors)

    def as_matrix(self) -> np.ndarray:
        """(..., 4, 4) homogeneous matrices."""
        matrix = np.zeros(self.shape + (4, 4))
        matrix[..., :3, :3] = self.rotation
        matrix[..., :3, 3] = self.translation
        matrix[..., 3, 3] = 1.0
        return matrix

    def __reduce__(self) -> tuple:
        """Pickled with the memory order of `rotation` kept: an `inverse`'s transposed rotations arrive
        transposed in another process (numpy would send them in C order), so that the products taken there
        sum in the same order and give the same bits."""
        transposed = not self.rotation.flags.c_contiguous and np.swapaxes(self.rotation, -1, -2).flags.c_contiguous
        rotation = np.swapaxes(self.rotation, -1, -2) if transposed else self.rotation
        return _unpickled, (rotation, self.translation, transposed)


def _unpickled(rotation: np.ndarray, translation: np.ndarray, transposed: bool) -> SE3:
    """The `SE3` that `SE3.__reduce__` sent."""
    return SE3(np.swapaxes(rotation, -1, -2) if transposed else rotation, translation)
