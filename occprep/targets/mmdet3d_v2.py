"""`mmdet3d-v2`: the mmdetection3d 1.x pickle (`metainfo` / `data_list`), every key, order, type and
value as v1.4.0's `tools/create_data.py nuscenes` writes it (`create_nuscenes_infos`, then
`update_infos_to_v2.update_nuscenes_infos`; `cam_instances` by `convert_utils.get_nuscenes_2d_boxes`).

Conventions of the reference kept here: rc boxes in the LiDAR frame; timestamps in seconds; bare
file names for keyframe LiDAR and camera files, the root-prefixed relative path for sweeps (whose
`num_pts_feats` is None); every 4×4 matrix, `center_2d` and `depth` rounded through float32
(`BuildOptions.float64` keeps float64); `lidar_sweeps` absent at a scene's first sample; test sets with
`instances: []` and no `cam_instances`. Two reference faults are mended (README): an empty split is
written instead of crashing, and `metainfo.categories` lists every unmapped category of the split
(as -1, first seen first), not only those of its last sample. Where the reference stores numpy
scalars (`bbox_3d_isvalid`, `num_*_pts`, the 2-D `bbox`, the camera-frame angle) this writes the
equal Python bool, int and float: the same values, a tenth of the pickling time.
"""

from __future__ import annotations

import os
from typing import Dict, Iterator, List

import numpy as np

from occprep import boxes
from occprep.errors import OccprepError
from occprep.infos import GT_KEYS, InfoParts
from occprep.names import unknown_names
from occprep.se3 import SE3
from occprep.targets import Build, BuildOptions, Target

NUM_PTS_FEATS = 5
INFO_VERSION = "1.1"


class _CameraValues:
    """`cam_instances` of every keyframe of one `InfoParts`, as compact columns: the box/camera pairs
    with a 2-D box, a class of the 10 and the centre in front of the camera, by keyframe, camera, box."""

    def __init__(self, parts: InfoParts, options: BuildOptions) -> None:
        scan = parts.scan
        self.dtype = _dtype(options)
        labels = parts.labels("mmdet3d")
        attributes = parts.config.label_order("mmdet3d-attributes")
        unknown = unknown_names(scan.annotations.attribute, attributes)
        if unknown:
            raise OccprepError(f"attribute(s) {', '.join(unknown)} of sample_annotation.attribute_tokens are not in "
                               f"dataset config {parts.config.name!r}: add them to its "
                               "label_orders[\"mmdet3d-attributes\"]")
        attribute = {name: i for i, name in enumerate(attributes)}
        attribute_ids = np.array([attribute[name] for name in scan.annotations.attribute], dtype=np.int64)
        seen = parts.camera_boxes()
        center_2d, depth = parts.camera_box_centres(self.dtype)
        kept = np.flatnonzero((labels[seen.box] >= 0) & (depth > 0))
        box = seen.box[kept]
        length, width, height = (scan.annotations.size[box][:, i] for i in (1, 0, 2))
        self.camera = seen.camera[kept]
        self.label = labels[box]
        self.attribute = attribute_ids[box]
        self.bbox = seen.bbox[kept]
        self.bbox_3d = np.column_stack([seen.centre[kept], length, height, width, -seen.yaw[kept]])
        self.velocity = seen.velocity[kept][:, [0, 2]]
        self.center_2d, self.depth = center_2d[kept], depth[kept]
        self.offsets = np.searchsorted(seen.sample[kept], np.arange(len(scan.keyframes.token) + 1))


def _dtype(options: BuildOptions) -> type:
    return np.float64 if options.float64 else np.float32


def cam_instances(parts: InfoParts, s: int, options: BuildOptions) -> Dict[str, List[dict]]:
    """`cam_instances` of keyframe `s`: per camera, the boxes of the 10 classes with a 2-D box and a
    centre in front of the camera, in annotation order."""
    values = parts.memo(f"mmdet3d-v2 cameras {options.float64}", lambda: _CameraValues(parts, options))
    channels = parts.config.camera_channels
    found: Dict[str, List[dict]] = {channel: [] for channel in channels}
    block = slice(values.offsets[s], values.offsets[s + 1])
    for camera, label, bbox, bbox_3d, velocity, center_2d, depth, attribute in zip(
            values.camera[block].tolist(), values.label[block].tolist(), values.bbox[block].tolist(),
            values.bbox_3d[block].tolist(), values.velocity[block].tolist(), values.center_2d[block].tolist(),
            values.depth[block].tolist(), values.attribute[block].tolist()):
        found[channels[camera]].append({
            "bbox_label": label,
            "bbox_label_3d": label,
            "bbox": bbox,
            "bbox_3d_isvalid": True,
            "bbox_3d": bbox_3d,
            "velocity": velocity,
            "center_2d": center_2d,
            "depth": depth,
            "attr_label": attribute,
        })
    return found


def _matrices(transforms: SE3, dtype: type) -> Iterator[list]:
    """The transforms as 4×4 nested lists of Python floats holding `dtype` values, one at a time."""
    return iter(transforms.as_matrix().astype(dtype).tolist())


def _poses(rotations: List[list], translations: List[list], dtype: type) -> Iterator[list]:
    """4×4 nested lists of child -> parent transforms given as quaternions and translations."""
    if not rotations:
        return iter(())
    return _matrices(SE3.from_quaternions(np.array(rotations), np.array(translations)), dtype)


def _inverses(rotations: List[np.ndarray], translations: List[np.ndarray], dtype: type) -> Iterator[list]:
    """4×4 nested lists of the inverses of sensor2lidar rotations (3×3) and translations."""
    if not rotations:
        return iter(())
    return _matrices(SE3(np.array(rotations), np.array(translations)).inverse(), dtype)


def _instances(neutral: dict, label: Dict[str, int]) -> List[dict]:
    rc = boxes.convert(neutral["gt_boxes"], "legacy", "rc")
    return [{
        "bbox_label": label.get(name, -1),
        "bbox_3d": box,
        "bbox_3d_isvalid": valid,
        "bbox_label_3d": label.get(name, -1),
        "num_lidar_pts": lidar_pts,
        "num_radar_pts": radar_pts,
        "velocity": velocity,
    } for name, box, valid, lidar_pts, radar_pts, velocity in zip(
        neutral["gt_names"].tolist(), rc.tolist(), neutral["valid_flag"].tolist(), neutral["num_lidar_pts"].tolist(),
        neutral["num_radar_pts"].tolist(), neutral["gt_velocity"].tolist())]


def assemble(neutral: List[dict], build: Build, options: BuildOptions) -> dict:
    """`{'metainfo': {...}, 'data_list': [...]}`."""
    dtype = _dtype(options)
    order = build.config.label_order("mmdet3d")
    label = {name: i for i, name in enumerate(order)}
    cams = [cam for n in neutral for cam in n["cams"].values()]
    sweeps = [sweep for n in neutral for sweep in n["sweeps"]]
    ego2global = _poses([n["ego2global_rotation"] for n in neutral], [n["ego2global_translation"] for n in neutral], dtype)
    lidar2ego = _poses([n["lidar2ego_rotation"] for n in neutral], [n["lidar2ego_translation"] for n in neutral], dtype)
    cam2ego = _poses([c["sensor2ego_rotation"] for c in cams], [c["sensor2ego_translation"] for c in cams], dtype)
    lidar2cam = _inverses([c["sensor2lidar_rotation"] for c in cams], [c["sensor2lidar_translation"] for c in cams],
                          dtype)
    sweep_pose = _poses([w["ego2global_rotation"] for w in sweeps], [w["ego2global_translation"] for w in sweeps], dtype)
    sweep2ego = _poses([w["sensor2ego_rotation"] for w in sweeps], [w["sensor2ego_translation"] for w in sweeps], dtype)
    lidar2sweep = _inverses([w["sensor2lidar_rotation"] for w in sweeps],
                            [w["sensor2lidar_translation"] for w in sweeps], dtype)
    data_list = []
    for index, n in enumerate(neutral):
        info = {
            "sample_idx": index,
            "token": n["token"],
            "timestamp": n["timestamp"] / 1e6,
            "ego2global": next(ego2global),
            "images": {channel: {
                "img_path": os.path.basename(cam["data_path"]),
                "cam2img": cam["cam_intrinsic"].tolist(),
                "cam2ego": next(cam2ego),
                "sample_data_token": cam["sample_data_token"],
                "timestamp": cam["timestamp"] / 1e6,
                "lidar2cam": next(lidar2cam),
            } for channel, cam in n["cams"].items()},
            "lidar_points": {"num_pts_feats": NUM_PTS_FEATS, "lidar_path": os.path.basename(n["lidar_path"]),
                             "lidar2ego": next(lidar2ego)},
        }
        if n["sweeps"]:
            info["lidar_sweeps"] = [{
                "timestamp": sweep["timestamp"] / 1e6,
                "ego2global": next(sweep_pose),
                "lidar_points": {"num_pts_feats": None, "lidar_path": sweep["data_path"],
                                 "lidar2ego": next(sweep2ego), "lidar2sensor": next(lidar2sweep)},
                "sample_data_token": sweep["sample_data_token"],
            } for sweep in n["sweeps"]]
        info["instances"] = _instances(n, label) if build.annotations else []
        if build.annotations:
            info["cam_instances"] = n["cam_instances"]
        data_list.append(info)
    categories = {name: i for i, name in enumerate(order)}
    if build.annotations:
        categories.update((name, -1) for n in neutral for name in n["gt_names"].tolist() if name not in label)
    metainfo = {"categories": categories, "dataset": "nuscenes", "version": build.version,
                "info_version": INFO_VERSION}
    return {"metainfo": metainfo, "data_list": data_list}


def neutral(data: object) -> List[dict]:
    """What survives of a neutral info: the token, and `cam_instances` (matrices are float32-rounded,
    paths bare file names and unmapped category names lost, so everything else comes from the tables)."""
    return [{"token": d["token"], **({"cam_instances": d["cam_instances"]} if "cam_instances" in d else {})}
            for d in data["data_list"]]


TARGET = Target(
    name="mmdet3d-v2",
    file_pattern="{tag}_infos_{split}.pkl",
    readers="mmdetection3d 1.x (v1.1-v1.4) and the projects on its data_list format",
    box_convention="rc",
    needs=("lidar_path", "token", "sweeps", "cams", "lidar2ego_translation", "lidar2ego_rotation",
           "ego2global_translation", "ego2global_rotation", "timestamp", *GT_KEYS, "cam_instances"),
    writes=("sample_idx", "token", "timestamp", "ego2global", "images", "lidar_points", "lidar_sweeps", "instances",
            "cam_instances"),
    assemble=assemble,
    neutral=neutral,
    extras={"cam_instances": cam_instances},
    details=True,
    camera_boxes=True,
)
