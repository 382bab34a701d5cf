"""`mmdet3d`: the info pickle of mmdetection3d v1.0.0rc6's `create_data.py nuscenes` converter
(`tools/data_converter/nuscenes_converter.py`, byte-identical in FlashOcc). The base input of
StreamPETR, SparseBEV/SparseOcc, Sparse4D and BEVDet. It equals the BEVFormer info without `prev`,
`next`, `can_bus`, `frame_idx`, `scene_token`, `scene_name`, and with rc-convention boxes.
"""

from __future__ import annotations

from typing import List

from occprep import boxes
from occprep.infos import GT_KEYS
from occprep.targets import Build, BuildOptions, Target, legacy_infos, legacy_pickle

KEYS = ("lidar_path", "token", "sweeps", "cams", "lidar2ego_translation", "lidar2ego_rotation",
        "ego2global_translation", "ego2global_rotation", "timestamp", *GT_KEYS)


def annotations(neutral: dict) -> dict:
    """The gt_* keys of one neutral info with rc boxes."""
    gt = {key: neutral[key] for key in GT_KEYS}
    gt["gt_boxes"] = boxes.convert(neutral["gt_boxes"], "legacy", "rc")
    return gt


def info(neutral: dict, annotated: bool) -> dict:
    """The rc6 info of one neutral info (test sets: the first 9 keys only)."""
    info = {key: neutral[key] for key in KEYS[:9]}
    if annotated:
        info.update(annotations(neutral))
    return info


def assemble(neutral: List[dict], build: Build, options: BuildOptions) -> dict:
    """`{'infos': [...], 'metadata': {'version': ...}}`."""
    return legacy_pickle([info(n, build.annotations) for n in neutral], build)


def neutral(data: object) -> List[dict]:
    """Its infos with legacy boxes."""
    return [{**info, "gt_boxes": boxes.convert(info["gt_boxes"], "rc", "legacy")} if "gt_boxes" in info else dict(info)
            for info in legacy_infos(data)]


TARGET = Target(
    name="mmdet3d",
    file_pattern="{tag}_infos_{split}.pkl",
    readers="mmdetection3d 1.0.x; the base pickle of StreamPETR, SparseBEV/SparseOcc, Sparse4D, PETR",
    box_convention="rc",
    needs=KEYS,
    writes=KEYS,
    assemble=assemble,
    neutral=neutral,
)
