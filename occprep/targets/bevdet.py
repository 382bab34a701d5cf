"""`bevdet`: `bevdetv2-{tag}_infos_{split}.pkl` as FlashOcc's `tools/create_data_bevdet.py` writes it
(commit 4084861, copied into ~70 occupancy projects): the mmdetection3d 1.0 info (`occprep.targets.
mmdet3d`, run with root `data/nuscenes` and no LiDAR sweeps) plus `ann_infos`, `scene_token`,
`scene_name` and `occ_path`.

`ann_infos` is a tuple `(boxes, labels)`: a list of float64 (9,) arrays `[x, y, z, l, w, h, yaw, vx,
vy]` in the ego frame at the CAM_FRONT keyframe's timestamp (the box moved global -> that camera's
ego pose, velocity rotated with its z component, NaN -> 0), and a list of int labels in BEVDet's
label order; only boxes of the 10 detection classes with LiDAR or radar points are kept. The test
split (the reference writes none) has no `ann_infos`.
"""

from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np

from occprep import geometry
from occprep.errors import OccprepError
from occprep.infos import InfoParts
from occprep.targets import Build, BuildOptions, Target, legacy_pickle, mmdet3d
from occprep.temporal import orientation_from_global

FRONT = "CAM_FRONT"
"""The camera whose ego pose BEVDet's boxes are in (its `ego_cam`)."""
OCC_ROOT = "./data/nuscenes"
"""The reference's `occ_path` prefix (it ignores its own root path)."""


def ego_boxes(parts: InfoParts) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every box in the ego frame at its keyframe's CAM_FRONT time: (A, 9) `ann_infos` rows,
    (A,) label ids (-1: not a BEVDet class) and (A,) whether the box is kept."""
    scan, config = parts.scan, parts.config
    keyframes, annotations = scan.keyframes, scan.annotations
    owner = keyframes.of_boxes()
    if FRONT not in config.camera_channels:
        raise OccprepError(f"--target bevdet: its boxes are in the ego frame at {FRONT}'s time, and dataset config "
                           f"{config.name!r} has no {FRONT} camera (cameras: {', '.join(config.camera_channels)})")
    front = keyframes.cameras[:, config.camera_channels.index(FRONT)]
    pose = scan.readings.ego_pose[front][owner]
    ego_from_global = scan.ego_poses.se3[pose].inverse()
    orientation = orientation_from_global(annotations.rotation, scan.ego_poses.rotation[pose])
    velocity = np.where(np.isnan(annotations.velocity).any(axis=1, keepdims=True), 0.0, annotations.velocity)
    rows = np.concatenate([ego_from_global.apply(annotations.translation), annotations.size[:, [1, 0, 2]],
                           geometry.yaw(orientation)[:, None], ego_from_global.rotate(velocity)[:, :2]], axis=1)
    labels = parts.labels("bevdet")
    kept = (labels >= 0) & (annotations.num_lidar_pts + annotations.num_radar_pts > 0)
    return rows, labels, kept


def ann_infos(parts: InfoParts, s: int, options: BuildOptions) -> Tuple[List[np.ndarray], List[int]]:
    """`ann_infos` of keyframe `s`."""
    rows, labels, kept = parts.memo("bevdet ann_infos", lambda: ego_boxes(parts))
    box_rows = parts.box_rows(s)
    chosen = np.flatnonzero(kept[box_rows]) + box_rows.start
    return [rows[i].copy() for i in chosen.tolist()], labels[chosen].tolist()


def assemble(neutral: List[dict], build: Build, options: BuildOptions) -> dict:
    """`{'infos': [...], 'metadata': {'version': ...}}`."""
    occ_root = OCC_ROOT if options.root_path is None else options.root_path
    infos = []
    for n in neutral:
        info = mmdet3d.info(n, build.annotations)
        if build.annotations:
            info["ann_infos"] = n["ann_infos"]
        info["scene_token"], info["scene_name"] = n["scene_token"], n["scene_name"]
        info["occ_path"] = os.path.join(occ_root, "gts", n["scene_name"], n["token"])
        infos.append(info)
    return legacy_pickle(infos, build)


TARGET = Target(
    name="bevdet",
    file_pattern="bevdetv2-{tag}_infos_{split}.pkl",
    readers="BEVDet, FlashOcc and the occupancy projects on its script (FB-BEV, RenderOcc, COTR, ...)",
    box_convention="rc",
    needs=(*mmdet3d.KEYS, "ann_infos", "scene_token", "scene_name"),
    writes=(*mmdet3d.KEYS, "ann_infos", "scene_token", "scene_name", "occ_path"),
    assemble=assemble,
    neutral=mmdet3d.neutral,
    extras={"ann_infos": ann_infos},
    max_sweeps=0,
    root_path="data/nuscenes",
)
