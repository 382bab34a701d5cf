"""`mmdet3d`: the info pickle of mmdetection3d v1.0.0rc6's `create_data.py nuscenes` converter
(`tools/data_converter/nuscenes_converter.py`, byte-identical in FlashOcc). The base input of
StreamPETR, SparseBEV/SparseOcc, Sparse4D and BEVDet. It equals the BEVFormer info without `prev`,
`next`, `can_bus`, `frame_idx`, `scene_token`, `scene_name`, and with rc-convention boxes.
"""

from __future__ import annotations

from occprep.infos import InfoParts
from occprep.targets import Build, BuildOptions, Target, legacy_pickle


def info(parts: InfoParts, s: int, build: Build, root: str, max_sweeps: int) -> dict:
    """The rc6 info of keyframe `s` (test sets: the first 9 keys only)."""
    paths = parts.paths(root)
    info = {
        "lidar_path": parts.lidar_path(s, root),
        "token": parts.scan.keyframes.token[s],
        "sweeps": parts.sweeps(s, max_sweeps, paths),
        "cams": parts.cams(s, paths),
        **parts.poses(s),
    }
    if build.annotations:
        info.update(parts.annotations(s, TARGET.box_convention))
    return info


def build(parts: InfoParts, build: Build, options: BuildOptions) -> dict:
    """`{'infos': [...], 'metadata': {'version': ...}}`."""
    return legacy_pickle(TARGET, info, parts, build, options)


TARGET = Target(
    name="mmdet3d",
    file_pattern="{tag}_infos_{split}.pkl",
    readers="mmdetection3d 1.0.x; the base pickle of StreamPETR, SparseBEV/SparseOcc, Sparse4D, PETR",
    box_convention="rc",
    build=build,
)
