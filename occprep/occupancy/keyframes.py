"""The LiDAR keyframe reading of every sample of a nuScenes version, read from its tables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

import msgspec

from occprep.errors import OccprepError
from occprep.fileio import read_json
from occprep.layout import check_root_path, version_folders
from occprep.names import closest
from occprep.occupancy.gt import LidarKeyframe
from occprep.tables import TABLE_TYPES, field_subset, read_records


class _Lidarseg(msgspec.Struct, gc=False):
    """A record of the nuScenes-lidarseg table (`lidarseg.json`, not one of the 13)."""

    sample_data_token: str
    filename: str


def lidar_keyframes(root_path: str, version: str, lidar_channel: str) -> Dict[str, LidarKeyframe]:
    """Sample token -> its `lidar_channel` keyframe reading, from `<root_path>/<version>/`.

    `lidarseg` is the lidarseg record's file joined onto `root_path` as typed, when `lidarseg.json` is
    in the version folder. Raises OccprepError for a root one level off, a missing version folder, or
    tables without that channel.
    """
    version_dir = check_root_path(root_path, version_flag=False) / version
    if not (version_dir / "sample.json").is_file():
        present = version_folders(Path(root_path))
        suggestion = closest(version, present)
        raise OccprepError(f"--root-path {root_path}: no {version}/ tables in it (it holds "
                           f"{', '.join(present) or 'no version folder'}); "
                           + (f"pass --version {suggestion[0]}, or " if suggestion else "")
                           + f"give the nuScenes folder that holds {version}/")
    sensors = read_records(version_dir, "sensor", field_subset(TABLE_TYPES["sensor"], "token channel"))
    lidar_sensors = {s.token for s in sensors if s.channel == lidar_channel}
    calibrations = read_records(version_dir, "calibrated_sensor",
                                field_subset(TABLE_TYPES["calibrated_sensor"], "token sensor_token"))
    lidar_calibrations = {c.token for c in calibrations if c.sensor_token in lidar_sensors}
    if not lidar_calibrations:
        raise OccprepError(f"{version_dir}: no {lidar_channel} sensor in sensor.json / calibrated_sensor.json")
    readings = read_records(version_dir, "sample_data",
                            field_subset(TABLE_TYPES["sample_data"], "token sample_token calibrated_sensor_token "
                                                                     "is_key_frame filename"),
                            lambda batch: [r.is_key_frame and r.calibrated_sensor_token in lidar_calibrations
                                           for r in batch])
    scenes = {s.token: s.name for s in read_records(version_dir, "scene", field_subset(TABLE_TYPES["scene"], "token name"))}
    scene_of = {s.token: s.scene_token
                for s in read_records(version_dir, "sample", field_subset(TABLE_TYPES["sample"], "token scene_token"))}
    lidarseg_path = version_dir / "lidarseg.json"
    lidarseg = ({r.sample_data_token: os.path.join(root_path, r.filename)
                 for r in read_json(lidarseg_path, List[_Lidarseg])} if lidarseg_path.is_file() else {})
    keyframes = {}
    for r in readings:
        if r.is_key_frame and r.calibrated_sensor_token in lidar_calibrations and r.sample_token in scene_of:
            scene = scene_of[r.sample_token]
            keyframes[r.sample_token] = LidarKeyframe(r.sample_token, scene, scenes.get(scene, ""), r.token,
                                                      Path(r.filename).name, lidarseg.get(r.token))
    return keyframes
