"""`streampetr`: `{tag}2d_temporal_infos_{split}.pkl` as StreamPETR's `tools/create_data_nusc.py` writes it
(its `nuscenes2d_temporal_infos_*`): the mmdetection3d 1.0 info (rc boxes, 10 LiDAR sweeps) with
`prev`, `next`, `frame_idx`, `scene_token`, and for train/val seven per-camera lists (cameras in the
`cams` order) of the boxes each camera sees:

| key | per camera |
|---|---|
| `bboxes2d` | float32 (n, 4) [x1, y1, x2, y2], px: the convex hull of the projected corners clipped to the image |
| `bboxes3d_cams` | float32 (n, 7) camera-frame [x, y, z, l, h, w, -yaw] |
| `labels2d` | int64 (n,) in mmdetection3d's label order |
| `centers2d` | float32 (n, 2) projected box centre, px |
| `depths` | float32 (n,) camera z of the centre, m |
| `bboxes_ignore` | float32 (0,): nuScenes has no crowd boxes |
| `visibilities` | list of the boxes' `visibility_token` strings |

Kept are the boxes of the 10 classes with a 2-D box of at least 1 px by 1 px inside the image and
the centre in front of the camera; an empty list is a (0,) array, as the reference's `np.array([])`.
The reference opens every image to read its size; this takes `sample_data` width/height (equal for
nuScenes). Where the clipped hull is a line or point the reference crashes; such a box has no 2-D box.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from occprep.infos import GT_KEYS, InfoParts
from occprep.targets import Build, BuildOptions, Target, legacy_pickle, mmdet3d

CAMERA_KEYS = ("bboxes2d", "bboxes3d_cams", "labels2d", "centers2d", "depths", "bboxes_ignore", "visibilities")
KEYS = ("lidar_path", "token", "prev", "next", "sweeps", "frame_idx", "cams", "scene_token", "lidar2ego_translation",
        "lidar2ego_rotation", "ego2global_translation", "ego2global_rotation", "timestamp", *GT_KEYS)


class _CameraLists:
    """The per-camera boxes of every keyframe of one `InfoParts`, as columns by keyframe, camera, box."""

    def __init__(self, parts: InfoParts) -> None:
        scan = parts.scan
        seen = parts.camera_boxes()
        labels = parts.labels("mmdet3d")[seen.box]
        center_2d, depth = parts.camera_box_centres(np.float32)
        x1, y1, x2, y2 = seen.bbox.T
        width, height = x2 - x1, y2 - y1
        image = scan.keyframes.cameras[seen.sample, seen.camera]
        inside_w = np.maximum(0, np.minimum(x1 + width, scan.readings.width[image]) - np.maximum(x1, 0))
        inside_h = np.maximum(0, np.minimum(y1 + height, scan.readings.height[image]) - np.maximum(y1, 0))
        kept = np.flatnonzero((labels >= 0) & (depth > 0) & (inside_w * inside_h != 0) & (width * height > 0)
                              & (width >= 1) & (height >= 1))
        box = seen.box[kept]
        length, box_width, box_height = (scan.annotations.size[box][:, i] for i in (1, 0, 2))
        self.bboxes2d = np.column_stack([x1, y1, x1 + width, y1 + height])[kept].astype(np.float32)
        self.bboxes3d = np.column_stack([seen.centre[kept], length, box_height, box_width,
                                         -seen.yaw[kept]]).astype(np.float32)
        self.labels = labels[kept]
        self.centers2d, self.depths = center_2d[kept], depth[kept]
        self.visibility = np.array(scan.annotations.visibility, dtype=object)[box]
        self.cameras = len(parts.config.camera_channels)
        self.offsets = np.searchsorted(seen.sample[kept] * self.cameras + seen.camera[kept],
                                       np.arange(len(scan.keyframes.token) * self.cameras + 1)).tolist()
        """Keyframe s's boxes in camera c are rows `offsets[s * cameras + c]` to the next (`camera_boxes`
        orders them by keyframe, camera, box)."""


def _array(values: np.ndarray) -> np.ndarray:
    """A camera's column; empty ones as the reference's `np.array([], dtype)`, shape (0,)."""
    return values.copy() if len(values) else np.zeros(0, dtype=values.dtype)


def cameras_2d(parts: InfoParts, s: int, options: BuildOptions) -> Dict[str, list]:
    """The seven per-camera lists of keyframe `s` (see the module docstring)."""
    lists = parts.memo("streampetr cameras", lambda: _CameraLists(parts))
    found: Dict[str, list] = {key: [] for key in CAMERA_KEYS}
    bounds = lists.offsets[s * lists.cameras:(s + 1) * lists.cameras + 1]
    for start, end in zip(bounds, bounds[1:]):
        rows = slice(start, end)
        found["bboxes2d"].append(_array(lists.bboxes2d[rows]))
        found["bboxes3d_cams"].append(_array(lists.bboxes3d[rows]))
        found["labels2d"].append(lists.labels[rows].copy())
        found["centers2d"].append(_array(lists.centers2d[rows]))
        found["depths"].append(lists.depths[rows].copy())
        found["bboxes_ignore"].append(np.zeros(0, dtype=np.float32))
        found["visibilities"].append(lists.visibility[rows].tolist())
    return found


def assemble(neutral: List[dict], build: Build, options: BuildOptions) -> dict:
    """`{'infos': [...], 'metadata': {'version': ...}}`."""
    infos = []
    for n in neutral:
        info = {key: n[key] for key in KEYS[:13]}
        if build.annotations:
            info.update(mmdet3d.annotations(n))
            info.update(n["cameras_2d"])
        infos.append(info)
    return legacy_pickle(infos, build)


def neutral(data: object) -> List[dict]:
    """Its infos with legacy boxes, the per-camera lists under `cameras_2d`."""
    infos = mmdet3d.neutral(data)
    for info in infos:
        if all(key in info for key in CAMERA_KEYS):
            info["cameras_2d"] = {key: info.pop(key) for key in CAMERA_KEYS}
    return infos


TARGET = Target(
    name="streampetr",
    file_pattern="{tag}2d_temporal_infos_{split}.pkl",
    readers="StreamPETR and the projects on its script (MV2DFusion, RCTrans, MDHA, SuperOcc, ...)",
    box_convention="rc",
    needs=(*KEYS, "cameras_2d"),
    writes=(*KEYS, *CAMERA_KEYS),
    assemble=assemble,
    neutral=neutral,
    extras={"cameras_2d": cameras_2d},
    details=True,
    camera_boxes=True,
)
