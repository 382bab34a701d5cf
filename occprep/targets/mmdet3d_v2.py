"""`mmdet3d-v2`: the mmdetection3d 1.x pickle (`metainfo` / `data_list`), every key, order, type and
value as v1.4.0's `tools/create_data.py nuscenes` writes it (`create_nuscenes_infos`, then
`update_infos_to_v2.update_nuscenes_infos`; `cam_instances` by `convert_utils.get_nuscenes_2d_boxes`).

Conventions of the reference kept here: rc boxes in the LiDAR frame; timestamps in seconds; bare
file names for keyframe LiDAR and camera files, the root-prefixed relative path for sweeps (whose
`num_pts_feats` is None); every 4×4 matrix, `center_2d` and `depth` rounded through float32
(`BuildOptions.float64` keeps float64); `bbox_3d_isvalid`, `num_*_pts`, the 2-D `bbox` and the
camera-frame angle as numpy scalars; `lidar_sweeps` absent at a scene's first sample; test sets with
`instances: []` and no `cam_instances`. Two reference faults are mended (README): an empty split is
written instead of crashing, and `metainfo.categories` lists every unmapped category of the split
(as -1, first seen first), not only those of its last sample.
"""

from __future__ import annotations

import os
from typing import Dict, List

import numpy as np

from occprep import boxes
from occprep.infos import InfoParts
from occprep.errors import OccprepError
from occprep.names import unknown_names
from occprep.projection import CameraBoxes, camera_boxes
from occprep.se3 import SE3
from occprep.targets import Build, BuildOptions, Target

NUM_PTS_FEATS = 5
INFO_VERSION = "1.1"


class _Values:
    """Per-split lookups of one `InfoParts`: matrices in the output dtype, labels, camera boxes by keyframe."""

    def __init__(self, parts: InfoParts, options: BuildOptions) -> None:
        scan, temporal = parts.scan, parts.temporal
        self.dtype = np.float64 if options.float64 else np.float32
        self.poses = self._matrices(scan.ego_poses.se3)
        self.calibrations = self._matrices(scan.calibrations.se3)
        self.lidar2cam = self._matrices(temporal.lidar_from_camera.inverse())
        self.lidar2sensor = self._matrices(temporal.lidar_from_sweep.inverse())
        self.order = parts.config.label_order("mmdet3d")
        label = {name: i for i, name in enumerate(self.order)}
        self.labels = [label.get(name, -1) for name in parts.names]
        attributes = parts.config.label_order("mmdet3d-attributes")
        unknown = unknown_names(scan.annotations.attribute, attributes)
        if unknown:
            raise OccprepError(f"attribute(s) {', '.join(unknown)} of sample_annotation.attribute_tokens are not in "
                               f"dataset config {parts.config.name!r}: add them to its "
                               "label_orders[\"mmdet3d-attributes\"]")
        attribute = {name: i for i, name in enumerate(attributes)}
        self.attributes = [attribute[name] for name in scan.annotations.attribute]
        self.rc_boxes = boxes.make(temporal.box_centre, scan.annotations.size, temporal.box_yaw, "rc")
        self.seen: CameraBoxes = parts.memo("camera boxes", lambda: camera_boxes(scan))
        self.seen_offsets = np.searchsorted(self.seen.sample, np.arange(len(scan.keyframes.token) + 1))
        self.center_2d, self.depth = self._project(scan)

    def _matrices(self, transforms: SE3) -> np.ndarray:
        return transforms.as_matrix().astype(self.dtype)

    def _project(self, scan):
        """(P, 2) image position and (P,) depth of every seen box centre, computed in the output dtype as
        mmdet3d's `points_cam2img` does (a float32 torch product in the reference)."""
        seen = self.seen
        readings = scan.keyframes.cameras[seen.sample, seen.camera]
        intrinsics = np.zeros((len(readings), 4, 4), dtype=self.dtype)
        intrinsics[:, :3, :3] = [scan.intrinsics[c] for c in scan.readings.calibration[readings].tolist()]
        intrinsics[:, 3, 3] = 1
        points = np.concatenate([seen.centre, np.ones((len(readings), 1))], axis=1).astype(self.dtype)
        projected = np.einsum("pij,pj->pi", intrinsics, points)
        return projected[:, :2] / projected[:, 2:3], projected[:, 2]


def _instances(parts: InfoParts, s: int, values: _Values) -> List[dict]:
    rows = parts.box_rows(s)
    annotations = parts.scan.annotations
    valid = (annotations.num_lidar_pts[rows] + annotations.num_radar_pts[rows]) > 0
    return [{
        "bbox_label": values.labels[a],
        "bbox_3d": values.rc_boxes[a].tolist(),
        "bbox_3d_isvalid": valid[i],
        "bbox_label_3d": values.labels[a],
        "num_lidar_pts": annotations.num_lidar_pts[a],
        "num_radar_pts": annotations.num_radar_pts[a],
        "velocity": parts.temporal.box_velocity[a].tolist(),
    } for i, a in enumerate(range(rows.start, rows.stop))]


def _cam_instances(parts: InfoParts, s: int, values: _Values) -> Dict[str, List[dict]]:
    seen, channels = values.seen, parts.config.camera_channels
    cam_instances: Dict[str, List[dict]] = {channel: [] for channel in channels}
    for p in range(values.seen_offsets[s], values.seen_offsets[s + 1]):
        box = int(seen.box[p])
        label = values.labels[box]
        if label < 0 or values.depth[p] <= 0:
            continue
        width, length, height = parts.scan.annotations.size[box].tolist()
        cam_instances[channels[seen.camera[p]]].append({
            "bbox_label": label,
            "bbox_label_3d": label,
            "bbox": list(seen.bbox[p]),
            "bbox_3d_isvalid": True,
            "bbox_3d": [*seen.centre[p].tolist(), length, height, width, -seen.yaw[p]],
            "velocity": seen.velocity[p, [0, 2]].tolist(),
            "center_2d": values.center_2d[p].tolist(),
            "depth": float(values.depth[p]),
            "attr_label": values.attributes[box],
        })
    return cam_instances


def data_info(parts: InfoParts, s: int, index: int, build: Build, values: _Values, paths: List[str],
              max_sweeps: int) -> dict:
    """The `data_list` entry of keyframe `s` at position `index` of its split."""
    scan, temporal = parts.scan, parts.temporal
    keyframes, readings = scan.keyframes, scan.readings
    lidar = int(keyframes.lidar[s])
    images = {}
    for c, channel in enumerate(parts.config.camera_channels):
        row = int(keyframes.cameras[s, c])
        images[channel] = {
            "img_path": os.path.basename(readings.filename[row]),
            "cam2img": [list(r) for r in scan.intrinsics[int(readings.calibration[row])]],
            "cam2ego": values.calibrations[readings.calibration[row]].tolist(),
            "sample_data_token": readings.token[row],
            "timestamp": int(readings.timestamp[row]) / 1e6,
            "lidar2cam": values.lidar2cam[s, c].tolist(),
        }
    info = {
        "sample_idx": index,
        "token": keyframes.token[s],
        "timestamp": int(keyframes.timestamp[s]) / 1e6,
        "ego2global": values.poses[readings.ego_pose[lidar]].tolist(),
        "images": images,
        "lidar_points": {"num_pts_feats": NUM_PTS_FEATS, "lidar_path": os.path.basename(readings.filename[lidar]),
                         "lidar2ego": values.calibrations[readings.calibration[lidar]].tolist()},
    }
    sweeps = [{
        "timestamp": int(readings.timestamp[row]) / 1e6,
        "ego2global": values.poses[readings.ego_pose[row]].tolist(),
        "lidar_points": {"num_pts_feats": None, "lidar_path": paths[row],
                         "lidar2ego": values.calibrations[readings.calibration[row]].tolist(),
                         "lidar2sensor": values.lidar2sensor[s, k].tolist()},
        "sample_data_token": readings.token[row],
    } for k, row in enumerate(temporal.sweeps[s, :max_sweeps].tolist()) if row >= 0]
    if sweeps:
        info["lidar_sweeps"] = sweeps
    info["instances"] = _instances(parts, s, values) if build.annotations else []
    if build.annotations:
        info["cam_instances"] = _cam_instances(parts, s, values)
    return info


def build(parts: InfoParts, build: Build, options: BuildOptions) -> dict:
    """`{'metainfo': {...}, 'data_list': [...]}`."""
    values = parts.memo(f"mmdet3d-v2 values {options.float64}", lambda: _Values(parts, options))
    paths = parts.paths(TARGET.root(options, parts.root_path))
    max_sweeps = TARGET.sweeps(options)
    data_list = [data_info(parts, s, i, build, values, paths, max_sweeps) for i, s in enumerate(build.rows)]
    categories = {name: i for i, name in enumerate(values.order)}
    if build.annotations:
        for s in build.rows:
            rows = parts.box_rows(s)
            for name, label in zip(parts.names[rows], values.labels[rows]):
                if label < 0:
                    categories.setdefault(name, -1)
    metainfo = {"categories": categories, "dataset": "nuscenes", "version": build.version,
                "info_version": INFO_VERSION}
    return {"metainfo": metainfo, "data_list": data_list}


TARGET = Target(
    name="mmdet3d-v2",
    file_pattern="{tag}_infos_{split}.pkl",
    readers="mmdetection3d 1.x (v1.1-v1.4) and the projects on its data_list format",
    box_convention="rc",
    build=build,
)
