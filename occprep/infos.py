"""Stage 4: records -> the legacy info dicts (keys, order and types of the reference converter).

See /docs infos-format: one dict per keyframe; sensor dicts for the cameras and lidar sweeps.
"""

from __future__ import annotations

import os
from typing import Dict, List, Sequence

import numpy as np

from occprep.config import DatasetConfig
from occprep.records import Scan, Temporal


def data_paths(root_path: str, filenames: Sequence[str], cwd: str) -> List[str]:
    """Sensor dicts' `data_path`s: root joined with each filename, without a leading `cwd/`."""
    prefix = cwd.rstrip(os.sep) + os.sep
    paths = [os.path.join(root_path, f) for f in filenames]
    return [p[len(prefix):] if p.startswith(prefix) and os.path.isabs(p) else p for p in paths]


class InfoWriter:
    """Builds info dicts for keyframes of one `Scan` (flattening its arrays to Python values once)."""

    def __init__(self, scan: Scan, temporal: Temporal, can_bus: np.ndarray, config: DatasetConfig,
                 root_path: str) -> None:
        self.scan, self.temporal, self.can_bus, self.config = scan, temporal, can_bus, config
        self.root_path = root_path
        readings = scan.readings
        self._data_path = data_paths(root_path, readings.filename, os.getcwd())
        self._reading_time = readings.timestamp.tolist()
        self._calibration = readings.calibration.tolist()
        self._pose = readings.ego_pose.tolist()
        self._sweeps = temporal.sweeps.tolist()
        self._cameras = scan.keyframes.cameras.tolist()
        self._names = [config.detection_names.get(c, c) for c in scan.annotations.category]
        self._intrinsics = {row: np.array(scan.intrinsics[row], dtype=np.float64)
                            for row in set(readings.calibration[scan.keyframes.cameras.ravel()].tolist())}

    def _sensor(self, row: int, kind: str, rotation: np.ndarray, translation: np.ndarray) -> dict:
        calibrations, poses = self.scan.calibrations, self.scan.ego_poses
        calibration, pose = self._calibration[row], self._pose[row]
        return {
            "data_path": self._data_path[row],
            "type": kind,
            "sample_data_token": self.scan.readings.token[row],
            "sensor2ego_translation": calibrations.translation_list[calibration],
            "sensor2ego_rotation": calibrations.rotation_list[calibration],
            "ego2global_translation": poses.translation_list[pose],
            "ego2global_rotation": poses.rotation_list[pose],
            "timestamp": self._reading_time[row],
            "sensor2lidar_rotation": rotation,
            "sensor2lidar_translation": translation,
        }

    def info(self, s: int, annotations: bool) -> dict:
        """The info dict of keyframe row `s`; `annotations=False` for test sets (no gt_* keys)."""
        scan, temporal = self.scan, self.temporal
        keyframes, readings = scan.keyframes, scan.readings
        lidar = int(keyframes.lidar[s])
        calibration, pose = self._calibration[lidar], self._pose[lidar]
        sweeps = [self._sensor(row, "lidar", temporal.sweep_to_lidar_rotation[s, k],
                               temporal.sweep_to_lidar_translation[s, k])
                  for k, row in enumerate(self._sweeps[s]) if row >= 0]
        cams = {}
        for c, (channel, row) in enumerate(zip(self.config.camera_channels, self._cameras[s])):
            cams[channel] = self._sensor(row, channel, temporal.camera_to_lidar_rotation[s, c],
                                         temporal.camera_to_lidar_translation[s, c])
            cams[channel]["cam_intrinsic"] = self._intrinsics[self._calibration[row]].copy()
        scene = int(keyframes.scene[s])
        info = {
            "lidar_path": os.path.join(self.root_path, readings.filename[lidar]),
            "token": keyframes.token[s],
            "prev": keyframes.prev[s],
            "next": keyframes.next[s],
            "can_bus": self.can_bus[s],
            "frame_idx": int(keyframes.frame_idx[s]),
            "sweeps": sweeps,
            "cams": cams,
            "scene_token": scan.scenes.token[scene],
            "scene_name": scan.scenes.name[scene],
            "lidar2ego_translation": scan.calibrations.translation_list[calibration],
            "lidar2ego_rotation": scan.calibrations.rotation_list[calibration],
            "ego2global_translation": scan.ego_poses.translation_list[pose],
            "ego2global_rotation": scan.ego_poses.rotation_list[pose],
            "timestamp": int(keyframes.timestamp[s]),
        }
        if annotations:
            boxes = scan.annotations
            a, b = keyframes.annotations[s], keyframes.annotations[s + 1]
            info["gt_boxes"] = temporal.gt_boxes[a:b]
            info["gt_names"] = np.array(self._names[a:b], dtype=str)
            info["gt_velocity"] = temporal.gt_velocity[a:b]
            info["num_lidar_pts"] = boxes.num_lidar_pts[a:b]
            info["num_radar_pts"] = boxes.num_radar_pts[a:b]
            info["valid_flag"] = (boxes.num_lidar_pts[a:b] + boxes.num_radar_pts[a:b]) > 0
        return info

    def infos(self, rows: Sequence[int], annotations: bool) -> List[dict]:
        """Info dicts of keyframe `rows`, in that order."""
        return [self.info(s, annotations) for s in rows]


def info_file(extra_tag: str, split: str) -> str:
    """File name of a split's infos: `{extra_tag}_infos_temporal_{split}.pkl`."""
    return f"{extra_tag}_infos_temporal_{split}.pkl"


def info_pickle(infos: List[dict], version: str) -> Dict[str, object]:
    """The pickled top level: `{'infos': [...], 'metadata': {'version': version}}`."""
    return {"infos": infos, "metadata": {"version": version}}
