"""Stage 3: a `Scan` -> per-keyframe geometry in the LIDAR_TOP frame (`Temporal`), all batched.

sensor2lidar maps points from a sensor frame at its own time into the LIDAR_TOP frame at the
keyframe's time: sensor -> ego(t_sensor) -> global -> ego(t_lidar) -> lidar. Boxes go
global -> ego(t_lidar) -> lidar, as nuScenes-devkit `get_sample_data` moves them.
"""

from __future__ import annotations

import numpy as np

from occprep import geometry
from occprep.records import Readings, Scan, Temporal


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


def temporal(scan: Scan, max_sweeps: int) -> Temporal:
    """Sweeps, camera/sweep -> lidar transforms, boxes and velocities of every keyframe."""
    readings, keyframes, boxes = scan.readings, scan.keyframes, scan.annotations
    ego_from_sensor = geometry.rotation_matrices(scan.calibrations.rotation)
    global_from_ego = geometry.rotation_matrices(scan.ego_poses.rotation)

    lidar = keyframes.lidar
    lidar_calibration = readings.calibration[lidar]
    lidar_pose = readings.ego_pose[lidar]
    ego_from_lidar = ego_from_sensor[lidar_calibration]
    # global -> lidar at each keyframe: p_lidar = lidar_from_global @ p_global - lidar_offset
    lidar_from_global = np.einsum("sji,skj->sik", ego_from_lidar, global_from_ego[lidar_pose])
    lidar_offset = geometry.apply_inverse(
        ego_from_lidar, geometry.apply_inverse(global_from_ego[lidar_pose], scan.ego_poses.translation[lidar_pose])
        + scan.calibrations.translation[lidar_calibration])

    def to_lidar(rows: np.ndarray):
        """sensor -> lidar rotation and translation for reading rows (S, n)."""
        rows = np.maximum(rows, 0)
        calibration, pose = readings.calibration[rows], readings.ego_pose[rows]
        global_from_sensor = global_from_ego[pose] @ ego_from_sensor[calibration]
        sensor_origin = (geometry.apply(global_from_ego[pose], scan.calibrations.translation[calibration])
                         + scan.ego_poses.translation[pose])
        rotation = lidar_from_global[:, None] @ global_from_sensor
        translation = geometry.apply(lidar_from_global[:, None], sensor_origin) - lidar_offset[:, None]
        return rotation, translation

    sweeps = sweep_rows(readings, lidar, max_sweeps)
    camera_rotation, camera_translation = to_lidar(keyframes.cameras)
    sweep_rotation, sweep_translation = to_lidar(sweeps)

    owner = np.repeat(np.arange(len(lidar)), np.diff(keyframes.annotations))
    pose, calibration = lidar_pose[owner], lidar_calibration[owner]
    centre = geometry.apply(lidar_from_global[owner], boxes.translation) - lidar_offset[owner]
    ego_orientation = geometry.quaternion_product(
        geometry.normalised(geometry.quaternion_inverse(scan.ego_poses.rotation[pose])), boxes.rotation)
    lidar_orientation = geometry.quaternion_product(
        geometry.normalised(geometry.quaternion_inverse(scan.calibrations.rotation[calibration])), ego_orientation)
    gt_boxes = np.concatenate(
        [centre, boxes.size, -geometry.yaw(lidar_orientation)[:, None] - np.pi / 2], axis=1)
    planar_velocity = boxes.velocity * np.array([1.0, 1.0, 0.0])
    gt_velocity = geometry.apply(lidar_from_global[owner], planar_velocity)[:, :2]
    return Temporal(
        sweeps=sweeps,
        camera_to_lidar_rotation=camera_rotation,
        camera_to_lidar_translation=camera_translation,
        sweep_to_lidar_rotation=sweep_rotation,
        sweep_to_lidar_translation=sweep_translation,
        gt_boxes=gt_boxes,
        gt_velocity=gt_velocity,
    )
