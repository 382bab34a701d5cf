"""`sparsebev`: `{tag}_infos_{split}_sweep.pkl` (`{tag}_infos_{split}_mini_sweep.pkl` for v1.0-mini, the
names its configs read) as SparseBEV's `gen_sweep_info.py` (commit 9b9ffc4) turns the mmdetection3d 1.0
pickle into it, in the same single pass: read by SparseBEV, SparseOcc and their forks.

Each camera of `cams` gains `sensor2global_rotation` (3×3, stored transposed, for row vectors:
`p_global = p @ R + t`) and `sensor2global_translation`, its `data_path` joined onto the data root
(`data/nuscenes` by default, as its `--data-root`), and loses `sample_data_token`, `sensor2ego_*` and
`ego2global_*`. `sweeps` (the LiDAR sweeps) is replaced by up to 5 camera sweeps, each a dict camera ->
{data_path, sensor2global_rotation, sensor2global_translation, cam_intrinsic, timestamp} of the
cameras' earlier readings (FRONT, FRONT_RIGHT, BACK_RIGHT, BACK, BACK_LEFT, FRONT_LEFT), and is empty
at a scene's first sample. Where a camera's chain ends before 5 sweeps the list ends there (the
reference repeats its previous sweep instead, and crashes when there is none).
"""

from __future__ import annotations

from typing import List

import numpy as np

from occprep.infos import InfoParts
from occprep.targets import Build, BuildOptions, Target, legacy_pickle, mmdet3d
from occprep.temporal import global_from_reading

SWEEPS = 5
SWEEP_CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT")
"""The camera order of a sweep entry (the reference's)."""
DATA_ROOT = "data/nuscenes"
"""The reference's `--data-root`, which camera `data_path`s are joined onto."""


def _entries(parts: InfoParts, rows: List[int], paths: List[str]) -> List[dict]:
    """Camera readings' entries: data_path, sensor2global (rotation transposed), intrinsics, timestamp."""
    global_from_sensor = parts.memo("global from reading", lambda: global_from_reading(
        parts.scan, np.arange(len(parts.scan.readings.token))))[np.array(rows, dtype=np.int64)]
    readings = parts.scan.readings
    return [{
        "data_path": paths[row],
        "sensor2global_rotation": rotation,
        "sensor2global_translation": translation,
        "cam_intrinsic": parts.intrinsic(calibration),
        "timestamp": timestamp,
    } for row, rotation, translation, calibration, timestamp in zip(
        rows, global_from_sensor.rotation.transpose(0, 2, 1).copy(), global_from_sensor.translation,
        readings.calibration[rows].tolist(), readings.timestamp[rows].tolist())]


def camera_sweeps(parts: InfoParts, s: int, options: BuildOptions) -> dict:
    """The keyframe cameras' SparseBEV entries and the camera sweeps of keyframe `s`."""
    paths = parts.paths(options.root_path if options.root_path is not None else DATA_ROOT)
    channels = parts.config.camera_channels
    keyframe = {channel: int(parts.scan.keyframes.cameras[s, c]) for c, channel in enumerate(channels)}
    walked: List[List[int]] = []
    if parts.scan.keyframes.prev[s]:
        current = [keyframe[channel] for channel in SWEEP_CAMERAS]
        for _ in range(SWEEPS):
            current = parts.scan.readings.prev[current].tolist()
            if min(current) < 0:
                break
            walked.append(current)
    entries = _entries(parts, [*keyframe.values(), *(row for rows in walked for row in rows)], paths)
    cams = dict(zip(keyframe, entries))
    sweeps = [dict(zip(SWEEP_CAMERAS, entries[len(keyframe) + k * len(SWEEP_CAMERAS):][:len(SWEEP_CAMERAS)]))
              for k in range(len(walked))]
    return {"cams": cams, "sweeps": sweeps}


def info(neutral: dict, annotated: bool) -> dict:
    """The SparseBEV info of one neutral info."""
    info = mmdet3d.info(neutral, annotated)
    extra = neutral["camera_sweeps"]
    cams = {}
    for channel, cam in neutral["cams"].items():
        sparse = extra["cams"][channel]
        cams[channel] = {"data_path": sparse["data_path"], "type": cam["type"], "timestamp": cam["timestamp"],
                         "sensor2lidar_rotation": cam["sensor2lidar_rotation"],
                         "sensor2lidar_translation": cam["sensor2lidar_translation"],
                         "cam_intrinsic": sparse["cam_intrinsic"],
                         "sensor2global_rotation": sparse["sensor2global_rotation"],
                         "sensor2global_translation": sparse["sensor2global_translation"]}
    info["cams"], info["sweeps"] = cams, extra["sweeps"]
    return info


def assemble(neutral: List[dict], build: Build, options: BuildOptions) -> dict:
    """`{'infos': [...], 'metadata': {'version': ...}}`."""
    return legacy_pickle([info(n, build.annotations) for n in neutral], build)


def neutral(data: object) -> List[dict]:
    """Its infos with legacy boxes; the camera entries and sweeps under `camera_sweeps` (its cameras lost
    the sensor2ego and ego2global keys every other target has, so those come from the tables)."""
    infos = mmdet3d.neutral(data)
    for info in infos:
        info["camera_sweeps"] = {"cams": info.pop("cams"), "sweeps": info.pop("sweeps")}
    return infos


TARGET = Target(
    name="sparsebev",
    file_pattern="{tag}_infos_{split}{mini}_sweep.pkl",
    readers="SparseBEV, SparseOcc and the projects on their sweep script (OPUS, ...)",
    box_convention="rc",
    needs=(*mmdet3d.KEYS, "camera_sweeps"),
    writes=mmdet3d.KEYS,
    assemble=assemble,
    neutral=neutral,
    extras={"camera_sweeps": camera_sweeps},
    unannotated_extras=("camera_sweeps",),
    max_sweeps=0,
    camera_sweeps=True,
)
