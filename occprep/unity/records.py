"""Typed records a Unity reader hands to the table builder: one camera capture at one step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from occprep.errors import OccprepError

Vec3 = Tuple[float, float, float]
QuatXYZW = Tuple[float, float, float, float]


@dataclass(frozen=True)
class CameraBoxes:
    """The 3D boxes of one capture, in the capture's camera frame, Unity axes.

    `values` is (N, 10): centre (x, y, z), m; size (x, y, z), m; rotation (x, y, z, w).
    `visible_pixels` is (N,) int: rendered pixels of the instance in this capture, −1 when the
    dataset has no rendered-object-info metric for the capture.
    """

    instance_ids: List[str]
    labels: List[str]
    values: np.ndarray
    visible_pixels: np.ndarray

    @staticmethod
    def from_rows(ids: List[str], labels: List[str], rows: List[List[float]],
                  visible: Optional[Dict[str, int]], where: str) -> "CameraBoxes":
        """Boxes from per-box rows (translation + size + rotation); `visible` maps instance id →
        rendered pixels (None: the capture has no rendered-object-info metric)."""
        if any(len(row) != 10 for row in rows):
            raise OccprepError(f"{where}: a 3D box needs translation[3], size[3], rotation[4]")
        pixels = np.array([-1 if visible is None else visible.get(i, 0) for i in ids], dtype=np.int64)
        return CameraBoxes(ids, labels, np.array(rows, dtype=float).reshape(len(rows), 10), pixels)


@dataclass(frozen=True)
class Capture:
    """One camera image at one step of one sequence; poses in the Unity world frame.

    Positions in m (left-handed, y up); rotations (x, y, z, w). `ego_*` is None when the
    dataset has no real ego (legacy 0.0.2's dummy ego, SOLO): the builder then puts the ego at
    a camera. `matrix` is Unity's stored 3×3 projection, column-major (9 floats).
    """

    source: str
    """File and record the capture came from, for messages ('sequence.0/step3.frame_data.json captures[0]')."""
    run: str
    """Run folder relative to the dataset root ('' when the root is the run)."""
    sequence: str
    step: int
    timestamp: float
    """Seconds since the sequence started."""
    sensor_id: str
    filename: str
    """Image path relative to the dataset root."""
    width: int
    height: int
    camera_position: Vec3
    camera_rotation: QuatXYZW
    ego_position: Optional[Vec3]
    ego_rotation: Optional[QuatXYZW]
    projection: str
    matrix: Tuple[float, ...]
    boxes: CameraBoxes
