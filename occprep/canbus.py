"""Stage 2: CAN bus pose messages (nuScenes CAN bus expansion) -> the 18 `can_bus` slots of each info.

The reader reads each scene's `can_bus/{scene}_pose.json` once (and `_steeranglefeedback.json` for
the targets that use steering); a scene without usable data gets zeros and a reason the summary names. The slot rule is the reference converter's, see
`can_bus_slots`.
"""

from __future__ import annotations

import os
import re
from operator import attrgetter
from pathlib import Path
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

import msgspec
import numpy as np

from occprep.config import DatasetConfig
from occprep.errors import OccprepError
from occprep.fileio import decode_json, read_json
from occprep.records import CanBus, CanBusPoses, CanBusSteering, vector_fields
from occprep.reporting import Reporter

CAN_BUS_MODES = ("reference", "nearest-before")
SLOTS = 18

_Vec3 = Tuple[float, float, float]


class _PoseMessage(msgspec.Struct, gc=False):
    """One message of `{scene}_pose.json` (keys matched by name)."""

    utime: int
    pos: _Vec3
    orientation: Tuple[float, float, float, float]
    accel: _Vec3
    rotation_rate: _Vec3
    vel: _Vec3


_POSE_VECTORS = {"pos": 3, "orientation": 4, "accel": 3, "rotation_rate": 3, "vel": 3}
"""The vector fields of a pose message and their widths, in `CanBusPoses` order."""


def poses_from_messages(messages: list) -> CanBusPoses:
    """Columns of a list of pose messages (objects with the pose-message fields)."""
    pos, orientation, accel, rotation_rate, vel = vector_fields(messages, _POSE_VECTORS)
    return CanBusPoses(utime=np.fromiter(map(attrgetter("utime"), messages), dtype=np.int64, count=len(messages)),
                       pos=pos, orientation=orientation, accel=accel, rotation_rate=rotation_rate, vel=vel)


def scene_number(name: str) -> Optional[int]:
    """The number of a scene named `scene-NNNN` (the CAN bus blacklist's key), else None."""
    match = re.fullmatch(r"scene-(\d{4})", name)
    return int(match.group(1)) if match else None


class _SteeringMessage(msgspec.Struct, gc=False):
    """One message of `{scene}_steeranglefeedback.json`."""

    utime: int
    value: float


class _Folder:
    """The can_bus/ folder of the CAN bus expansion."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.present = set(os.listdir(folder))

    def decode(self, file_name: str, kind: type) -> list:
        return read_json(self.folder / file_name, List[kind])


class _Contents:
    """CAN bus files held as bytes (a shard's `can_bus` rows), by file name; `where` names their source."""

    def __init__(self, contents: Mapping[str, bytes], where: str) -> None:
        self.contents, self.where = contents, where
        self.present = set(contents)

    def decode(self, file_name: str, kind: type) -> list:
        return decode_json(self.contents[file_name], List[kind], f"{self.where}: can_bus/{file_name}")


def _read_messages(source, name: str, message: str, kind: type, blacklisted: bool):
    """(messages, None) of `{name}_{message}.json`, or (None, why there are none)."""
    file_name = f"{name}_{message}.json"
    if blacklisted:
        return None, "no CAN bus data for this scene (dataset blacklist)"
    if file_name not in source.present:
        return None, f"no file can_bus/{file_name}"
    try:
        messages = source.decode(file_name, kind)
    except OccprepError as exc:
        return None, f"unreadable: {exc}"
    return (messages, None) if messages else (None, f"can_bus/{file_name} has no messages")


def read_can_bus(canbus_root: Path, scene_names: Iterable[str], config: DatasetConfig,
                 reporter: Reporter, steering: bool = False) -> CanBus:
    """Pose messages of each scene from `<canbus_root>/can_bus/` (`--canbus`); with `steering`, also its
    `steeranglefeedback` messages (VAD's curvature)."""
    folder = Path(canbus_root) / "can_bus"
    if not folder.is_dir():
        raise OccprepError(f"{folder}: CAN bus folder not found; pass --canbus DIR where DIR contains can_bus/ "
                           "(the nuScenes CAN bus expansion)")
    return _read_can_bus(_Folder(folder), scene_names, config, reporter, steering)


def can_bus_of_contents(contents: Mapping[str, bytes], where: str, scene_names: Iterable[str],
                        config: DatasetConfig, reporter: Reporter, steering: bool = False) -> CanBus:
    """`read_can_bus` over CAN bus files given as bytes by file name (`<scene>_<kind>.json`); `where` (e.g. a
    shard file) is named in the reasons a scene has none."""
    return _read_can_bus(_Contents(contents, where), scene_names, config, reporter, steering)


def merged_can_bus(parts: Sequence[CanBus]) -> CanBus:
    """One `CanBus` from parts read for disjoint scenes, by scene name as `read_can_bus` gives it."""
    fields = {name: {} for name in ("poses", "missing", "steering", "steering_missing")}
    for part in parts:
        for name, values in fields.items():
            values.update(getattr(part, name))
    return CanBus(**{name: dict(sorted(values.items())) for name, values in fields.items()})


def _read_can_bus(source, scene_names: Iterable[str], config: DatasetConfig, reporter: Reporter,
                  steering: bool) -> CanBus:
    blacklist = set(config.can_bus_blacklist)
    can_bus = CanBus(poses={}, missing={})
    with reporter.progress(sorted(set(scene_names)), desc="CAN bus", unit="scene") as names:
        for name in names:
            blacklisted = scene_number(name) in blacklist
            messages, why = _read_messages(source, name, "pose", _PoseMessage, blacklisted)
            if messages is None:
                can_bus.missing[name] = why
            else:
                can_bus.poses[name] = poses_from_messages(messages)
            if steering:
                messages, why = _read_messages(source, name, "steeranglefeedback", _SteeringMessage, blacklisted)
                if messages is None:
                    can_bus.steering_missing[name] = why
                else:
                    can_bus.steering[name] = CanBusSteering(
                        utime=np.fromiter((m.utime for m in messages), dtype=np.int64, count=len(messages)),
                        value=np.fromiter((m.value for m in messages), dtype=np.float64, count=len(messages)))
    return can_bus


def nearest_message(utime: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Index of the message nearest to each `timestamp` in `utime` (sorted, µs); a tie goes to the later
    one, as VAD's `locate_message`."""
    later = np.searchsorted(utime, timestamp)
    earlier = np.maximum(later - 1, 0)
    at_end = later == len(utime)
    closer_before = (later > 0) & (timestamp - utime[earlier] < utime[np.minimum(later, len(utime) - 1)] - timestamp)
    return np.where(at_end | closer_before, later - 1, later)


def can_bus_slots(timestamp: np.ndarray, scene_name: list, can_bus: CanBus, mode: str = "reference") -> np.ndarray:
    """(S, 18) float64 `can_bus` of samples at `timestamp` (µs) in scenes `scene_name`.

    `before` is the message preceding the first one with utime > timestamp in file order (the
    first message if that is the first; the last if there is none); `after` is that first later
    message (the last if none). Slots: 0-2 before.pos, 3-6 before.orientation, 7-9 accel,
    10-12 rotation_rate, 13-15 vel, 16-17 zero. In `reference` mode 7-15 come from `after` (the
    reference converter's quirk, which trained models saw); in `nearest-before` from `before`.
    Scenes without poses get zeros.
    """
    if mode not in CAN_BUS_MODES:
        raise OccprepError(f"--can-bus-mode {mode!r}: use one of {', '.join(CAN_BUS_MODES)}")
    slots = np.zeros((len(timestamp), SLOTS), dtype=np.float64)
    rows_of_scene = {}
    for row, name in enumerate(scene_name):
        rows_of_scene.setdefault(name, []).append(row)
    for name, rows in rows_of_scene.items():
        poses = can_bus.poses.get(name)
        if poses is None:
            continue
        later = poses.utime[None, :] > timestamp[rows][:, None]
        has_later = later.any(axis=1)
        first_later = later.argmax(axis=1)
        last = len(poses.utime) - 1
        after = np.where(has_later, first_later, last)
        before = np.where(has_later, np.maximum(first_later - 1, 0), last)
        dynamics = after if mode == "reference" else before
        slots[rows, 0:3] = poses.pos[before]
        slots[rows, 3:7] = poses.orientation[before]
        slots[rows, 7:10] = poses.accel[dynamics]
        slots[rows, 10:13] = poses.rotation_rate[dynamics]
        slots[rows, 13:16] = poses.vel[dynamics]
    return slots
