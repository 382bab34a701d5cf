"""`bevformer`: the temporal infos of BEVFormer's `tools/create_data.py` (OccNet's flavour, with
`scene_name`), as /docs infos-format describes them. Read by BEVFormer, OccNet, the Occ3D baselines
and their forks. Legacy box convention.
"""

from __future__ import annotations

from occprep.infos import InfoParts
from occprep.targets import Build, BuildOptions, Target, legacy_pickle


def info(parts: InfoParts, s: int, build: Build, root: str, max_sweeps: int) -> dict:
    """The temporal info of keyframe `s`."""
    keyframes = parts.scan.keyframes
    paths = parts.paths(root)
    info = {
        "lidar_path": parts.lidar_path(s, root),
        "token": keyframes.token[s],
        "prev": keyframes.prev[s],
        "next": keyframes.next[s],
        "can_bus": parts.can_bus[s],
        "frame_idx": int(keyframes.frame_idx[s]),
        "sweeps": parts.sweeps(s, max_sweeps, paths),
        "cams": parts.cams(s, paths),
        **parts.scene(s),
        **parts.poses(s),
    }
    if build.annotations:
        info.update(parts.annotations(s, TARGET.box_convention))
    return info


def build(parts: InfoParts, build: Build, options: BuildOptions) -> dict:
    """`{'infos': [...], 'metadata': {'version': ...}}`."""
    return legacy_pickle(TARGET, info, parts, build, options)


TARGET = Target(
    name="bevformer",
    file_pattern="{tag}_infos_temporal_{split}.pkl",
    readers="BEVFormer, OccNet, the Occ3D challenge baseline, SurroundOcc, VAD/UniAD bases",
    box_convention="legacy",
    build=build,
)
