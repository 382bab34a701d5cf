"""Stage 3: a `Scan` -> per-keyframe geometry in the LIDAR_TOP frame (`Temporal`), all batched.

sensor2lidar maps points from a sensor frame at its own time into the LIDAR_TOP frame at the
keyframe's time: sensor -> ego(t_sensor) -> global -> ego(t_lidar) -> lidar. Boxes go
global -> ego(t_lidar) -> lidar, as nuScenes-devkit `get_sample_data` moves them.
"""

from __future__ import annotations

import numpy as np

from occprep import geometry
from occprep.records import Readings, Scan, Temporal
from occprep.se3 import SE3


def sweep_rows(readings: Readings, lidar: np.ndarray, max_sweeps: int) -> np.ndarray:
    """(S, max_sweeps) earlier readings of each keyframe's lidar, following `prev`, most recent
    first; -1 once the chain ends or would enter another scene."""
    sweeps = np.full((len(lidar), max_sweeps), -1, dtype=np.int64)
    current = lidar.copy()
    scene = readings.scene[lidar]
    alive = np.ones(len(lidar), dtype=bool)
    for k in range(max_sweeps):
        earlier = np.where(alive, readings.prev[current], -1)
        alive = (earlier >= 0) & (readings.scene[np.maximum(earlier, 0)] == scene)
        sweeps[:, k] = np.where(alive, earlier, -1)
        current = np.where(alive, earlier, current)
    return sweeps


def global_from_reading(scan: Scan, rows: np.ndarray) -> SE3:
    """sensor -> global at each reading's own time, for reading rows of any shape (-1 taken as row 0)."""
    rows = np.maximum(rows, 0)
    readings = scan.readings
    global_from_ego = scan.ego_poses.se3[readings.ego_pose[rows]]
    return global_from_ego.compose(scan.calibrations.se3[readings.calibration[rows]])


def orientation_from_global(rotations: np.ndarray, *frame_rotations: np.ndarray) -> np.ndarray:
    """Box orientations (w, x, y, z), global frame, moved through frames as the devkit's `Box.rotate`
    does: for each `frame_rotations` (child -> parent quaternions, outermost first), the box is
    rotated by that rotation's inverse."""
    orientation = rotations
    for frame in frame_rotations:
        orientation = geometry.quaternion_product(geometry.normalised(geometry.quaternion_inverse(frame)), orientation)
    return orientation


def temporal(scan: Scan, max_sweeps: int) -> Temporal:
    """Sweeps, camera/sweep -> lidar transforms, boxes and velocities of every keyframe."""
    readings, keyframes, boxes = scan.readings, scan.keyframes, scan.annotations
    lidar = keyframes.lidar
    lidar_from_global = global_from_reading(scan, lidar).inverse()
    sweeps = sweep_rows(readings, lidar, max_sweeps)

    owner = keyframes.of_boxes()
    pose, calibration = readings.ego_pose[lidar][owner], readings.calibration[lidar][owner]
    lidar_orientation = orientation_from_global(boxes.rotation, scan.ego_poses.rotation[pose],
                                                scan.calibrations.rotation[calibration])
    planar_velocity = boxes.velocity * np.array([1.0, 1.0, 0.0])
    return Temporal(
        sweeps=sweeps,
        lidar_from_global=lidar_from_global,
        lidar_from_camera=lidar_from_global[:, None].compose(global_from_reading(scan, keyframes.cameras)),
        lidar_from_sweep=lidar_from_global[:, None].compose(global_from_reading(scan, sweeps)),
        box_centre=lidar_from_global[owner].apply(boxes.translation),
        box_yaw=geometry.yaw(lidar_orientation),
        box_velocity=lidar_from_global[owner].rotate(planar_velocity)[:, :2],
    )
