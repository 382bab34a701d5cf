"""Stage 4's building blocks: the pieces every target's info dict is made of.

`InfoParts` turns the records of one version (`Scan`, `Temporal`, CAN bus slots) into the values
the legacy info formats share (see /docs infos-format): sensor dicts for cameras and LiDAR sweeps,
the calibration and pose keys, and the gt_* keys in either box convention. Each target module in
`occprep.targets` arranges them (and its own keys) in its reference's order.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

from occprep import boxes
from occprep.config import DatasetConfig
from occprep.projection import CameraBoxes, camera_boxes_on_cores, project_centres
from occprep.records import CanBus, Scan, Temporal

T = TypeVar("T")


def data_paths(root_path: str, filenames: Sequence[str], cwd: str) -> List[str]:
    """Sensor dicts' `data_path`s: root joined with each filename (`os.path.join`), without a leading `cwd/`."""
    prefix = cwd.rstrip(os.sep) + os.sep
    if any(f.startswith(os.sep) for f in filenames):
        paths = [os.path.join(root_path, f) for f in filenames]
        return [p[len(prefix):] if p.startswith(prefix) and os.path.isabs(p) else p for p in paths]
    base = os.path.join(root_path, "")  # what joining a relative filename puts before it
    paths = [base + f for f in filenames]
    if not os.path.isabs(base):
        return paths
    if len(base) >= len(prefix):  # every path starts with the prefix or none does
        return [p[len(prefix):] for p in paths] if base.startswith(prefix) else paths
    return [p[len(prefix):] if p.startswith(prefix) else p for p in paths]


GT_KEYS = ("gt_boxes", "gt_names", "gt_velocity", "num_lidar_pts", "num_radar_pts", "valid_flag")
"""The annotation keys of a legacy info (absent on test sets)."""
NEUTRAL_KEYS = ("lidar_path", "token", "prev", "next", "can_bus", "frame_idx", "sweeps", "cams", "scene_token",
                "scene_name", "lidar2ego_translation", "lidar2ego_rotation", "ego2global_translation",
                "ego2global_rotation", "timestamp", *GT_KEYS)
"""The keys of a neutral info (see `InfoParts.neutral`), in order. A neutral info may also carry a
target's extra keys (`Target.extras`: BEVDet's `ann_infos`, mmdet3d-v2's `cam_instances`)."""
SAMPLE_KEYS = tuple(key for key in NEUTRAL_KEYS if key not in GT_KEYS and key != "scene_name")
"""The sample keys of BEVFormer's own converter (without OccNet's `scene_name`), in order, which
UniAD's and VAD's converters copy."""


class InfoParts:
    """The shared pieces of the info dicts of one `Scan` (its arrays flattened to Python values once).

    `root_path` prefixes every path as typed; a target with another default root asks for its own
    with `paths(root)`. `messages` are the CAN bus messages themselves, kept only when a target reads
    more of them than the `can_bus` slots.
    """

    def __init__(self, scan: Scan, temporal: Temporal, can_bus: np.ndarray, config: DatasetConfig,
                 root_path: str, messages: Optional[CanBus] = None, cwd: Optional[str] = None) -> None:
        self.scan, self.temporal, self.can_bus, self.config = scan, temporal, can_bus, config
        self.root_path = root_path
        self.cwd = cwd or os.getcwd()
        """The folder a `data_path` under it is written relative to (the reference strips it)."""
        self.messages = messages if messages is not None else CanBus(poses={}, missing={})
        """The CAN bus messages, for targets that read more than the `can_bus` slots (VAD)."""
        readings = scan.readings
        self._data_paths: Dict[str, List[str]] = {}
        self._memo: Dict[str, object] = {}
        self._reading_time = readings.timestamp.tolist()
        self._calibration = readings.calibration.tolist()
        self._pose = readings.ego_pose.tolist()
        self._sweeps = temporal.sweeps.tolist()
        self._cameras = scan.keyframes.cameras.tolist()
        self.names = [config.detection_names.get(c, c) for c in scan.annotations.category]
        """Detection name of every box (unmapped categories keep their name)."""
        self._intrinsics: Dict[int, np.ndarray] = {}

    def intrinsic(self, calibration: int) -> np.ndarray:
        """A new (3, 3) float64 array of calibrated sensor row `calibration`'s `camera_intrinsic` (px)."""
        known = self._intrinsics.get(calibration)
        if known is None:
            known = self._intrinsics[calibration] = np.array(self.scan.intrinsics[calibration], dtype=np.float64)
        return known.copy()

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """`compute()`, run once per `InfoParts` (a target's per-box arrays, computed for all keyframes)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def camera_boxes(self) -> CameraBoxes:
        """`occprep.projection.camera_boxes` of the scan, computed once (on both cores where it can) for every
        target that reads them (mmdet3d-v2's `cam_instances`, StreamPETR's per-camera lists)."""
        return self.memo("camera boxes", lambda: camera_boxes_on_cores(self.scan))

    def camera_box_centres(self, dtype: type) -> Tuple[np.ndarray, np.ndarray]:
        """`occprep.projection.project_centres` of `camera_boxes()` in `dtype`: (P, 2) u, v, px, and (P,)
        depth, m; computed once per dtype."""
        return self.memo(f"camera box centres {np.dtype(dtype).name}",
                         lambda: project_centres(self.scan, self.camera_boxes(), dtype))

    def labels(self, consumer: str) -> np.ndarray:
        """(A,) int64 label id of every box in `consumer`'s label order (the config's `label_orders`), -1 for
        names outside it; computed once per consumer."""
        def compute() -> np.ndarray:
            order = {name: label for label, name in enumerate(self.config.label_order(consumer))}
            return np.array([order.get(name, -1) for name in self.names], dtype=np.int64)

        return self.memo(f"labels {consumer}", compute)

    def paths(self, root: Optional[str] = None) -> List[str]:
        """`data_path` of every reading under `root` (default: the root as typed), computed once per root."""
        root = self.root_path if root is None else root
        if root not in self._data_paths:
            self._data_paths[root] = data_paths(root, self.scan.readings.filename, self.cwd)
        return self._data_paths[root]

    def lidar_path(self, s: int, root: Optional[str] = None) -> str:
        """The keyframe LIDAR_TOP file: root joined with the filename, never shortened."""
        root = self.root_path if root is None else root
        return os.path.join(root, self.scan.readings.filename[int(self.scan.keyframes.lidar[s])])

    def _sensor(self, row: int, kind: str, rotation: np.ndarray, translation: np.ndarray, paths: List[str]) -> dict:
        calibrations, poses = self.scan.calibrations, self.scan.ego_poses
        calibration, pose = self._calibration[row], self._pose[row]
        return {
            "data_path": paths[row],
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

    def sweeps(self, s: int, max_sweeps: int, paths: List[str]) -> List[dict]:
        """Sensor dicts of keyframe `s`'s first `max_sweeps` LiDAR sweeps, most recent first."""
        lidar_from_sweep = self.temporal.lidar_from_sweep
        return [self._sensor(row, "lidar", lidar_from_sweep.rotation[s, k], lidar_from_sweep.translation[s, k], paths)
                for k, row in enumerate(self._sweeps[s][:max_sweeps]) if row >= 0]

    def cams(self, s: int, paths: List[str]) -> Dict[str, dict]:
        """Sensor dicts of keyframe `s`'s cameras, in the config's order, each with `cam_intrinsic`."""
        lidar_from_camera = self.temporal.lidar_from_camera
        cams = {}
        for c, (channel, row) in enumerate(zip(self.config.camera_channels, self._cameras[s])):
            cams[channel] = self._sensor(row, channel, lidar_from_camera.rotation[s, c],
                                         lidar_from_camera.translation[s, c], paths)
            cams[channel]["cam_intrinsic"] = self.intrinsic(self._calibration[row])
        return cams

    def scene(self, s: int) -> Dict[str, str]:
        """`scene_token` and `scene_name` of keyframe `s`."""
        scene = int(self.scan.keyframes.scene[s])
        return {"scene_token": self.scan.scenes.token[scene], "scene_name": self.scan.scenes.name[scene]}

    def poses(self, s: int) -> dict:
        """`lidar2ego_*` (the LIDAR_TOP calibration) and `ego2global_*` (its ego pose) of keyframe `s`,
        then the sample's `timestamp` (µs)."""
        scan = self.scan
        lidar = int(scan.keyframes.lidar[s])
        calibration, pose = self._calibration[lidar], self._pose[lidar]
        return {
            "lidar2ego_translation": scan.calibrations.translation_list[calibration],
            "lidar2ego_rotation": scan.calibrations.rotation_list[calibration],
            "ego2global_translation": scan.ego_poses.translation_list[pose],
            "ego2global_rotation": scan.ego_poses.rotation_list[pose],
            "timestamp": int(scan.keyframes.timestamp[s]),
        }

    def neutral(self, s: int, annotations: bool, root: str, max_sweeps: int) -> dict:
        """The neutral info of keyframe `s`: the BEVFormer temporal info (keys in `NEUTRAL_KEYS` order,
        legacy boxes; no gt_* keys when `annotations` is False), from which every target is assembled."""
        keyframes = self.scan.keyframes
        paths = self.paths(root)
        info = {
            "lidar_path": self.lidar_path(s, root),
            "token": keyframes.token[s],
            "prev": keyframes.prev[s],
            "next": keyframes.next[s],
            "can_bus": self.can_bus[s],
            "frame_idx": int(keyframes.frame_idx[s]),
            "sweeps": self.sweeps(s, max_sweeps, paths),
            "cams": self.cams(s, paths),
            **self.scene(s),
            **self.poses(s),
        }
        if annotations:
            info.update(self.annotations(s, "legacy"))
        return info

    def box_rows(self, s: int) -> slice:
        """Rows of keyframe `s`'s boxes in `Scan.annotations` (and every per-box array)."""
        offsets = self.scan.keyframes.annotations
        return slice(int(offsets[s]), int(offsets[s + 1]))

    def annotations(self, s: int, convention: str) -> dict:
        """The gt_* keys of keyframe `s`: boxes in the LIDAR_TOP frame in box `convention`
        (`occprep.boxes`), detection names, LiDAR-frame velocity, point counts, valid_flag."""
        rows = self.box_rows(s)
        scan, temporal = self.scan, self.temporal
        lidar_pts, radar_pts = scan.annotations.num_lidar_pts[rows], scan.annotations.num_radar_pts[rows]
        gt_boxes = self.memo(f"gt_boxes {convention}", lambda: boxes.make(
            temporal.box_centre, scan.annotations.size, temporal.box_yaw, convention))
        return {
            "gt_boxes": gt_boxes[rows],
            "gt_names": np.array(self.names[rows], dtype=str),
            "gt_velocity": temporal.box_velocity[rows],
            "num_lidar_pts": lidar_pts,
            "num_radar_pts": radar_pts,
            "valid_flag": (lidar_pts + radar_pts) > 0,
        }
