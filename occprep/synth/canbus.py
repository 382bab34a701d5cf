"""CAN bus expansion files of a synthetic scene: `<scene>_pose.json` at 50 Hz,
`<scene>_steeranglefeedback.json` at 100 Hz and `<scene>_meta.json`.

Pose messages follow the real files: keys `accel, orientation, pos, rotation_rate, utime, vel` in
that order; `pos`/`orientation` are the ego pose (global frame, z = 0), `vel` and `accel` are in the
ego frame (forward speed; longitudinal and centripetal acceleration plus gravity on z),
`rotation_rate` is the yaw rate about the ego z axis. Steering messages (`utime, value`) hold the
steering-wheel angle, rad, positive to the left as in the real files: a bicycle model of the same
track, wheel angle atan(wheelbase · yaw rate / speed) times a steering ratio.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import msgspec
import numpy as np

from occprep.fileio import atomic_write
from occprep.synth.nuscenes_tables import yaw_quaternion
from occprep.synth.world import EgoTrack

POSE_HZ = 50.0
STEERING_HZ = 100.0
GRAVITY = 9.81
WHEELBASE = 2.588
"""m, the Renault Zoe's (the constant VAD's curvature uses)."""
STEERING_RATIO = 17.0
"""Steering-wheel angle per wheel angle, as fitted on the real scene-0103 file."""


class PoseMessage(msgspec.Struct, gc=False):
    accel: List[float]
    orientation: List[float]
    pos: List[float]
    rotation_rate: List[float]
    utime: int
    vel: List[float]


def pose_messages(ego: EgoTrack, start_us: int, end_us: int) -> List[PoseMessage]:
    """Messages every 20 ms from `start_us` up to `end_us`, values interpolated from the ego track."""
    utime = np.arange(start_us, end_us + 1, int(1e6 / POSE_HZ), dtype=np.int64)
    xy, yaw = ego.pose_at(utime)
    speed, yaw_rate, accel = (np.interp(utime, ego.time_us, a) for a in (ego.speed, ego.yaw_rate, ego.accel))
    zeros = np.zeros_like(speed)
    accel_ego = np.column_stack([accel, speed * yaw_rate, np.full_like(speed, GRAVITY)]).tolist()
    orientation = yaw_quaternion(yaw).tolist()
    pos = np.column_stack([xy, zeros]).tolist()
    rotation_rate = np.column_stack([zeros, zeros, yaw_rate]).tolist()
    vel = np.column_stack([speed, zeros, zeros]).tolist()
    return [PoseMessage(*row) for row in zip(accel_ego, orientation, pos, rotation_rate, utime.tolist(), vel)]


class SteeringMessage(msgspec.Struct, gc=False):
    utime: int
    value: float


def steering_messages(ego: EgoTrack, start_us: int, end_us: int) -> List[SteeringMessage]:
    """Messages every 10 ms from `start_us` up to `end_us`: the steering-wheel angle of the ego track."""
    utime = np.arange(start_us, end_us + 1, int(1e6 / STEERING_HZ), dtype=np.int64)
    speed, yaw_rate = (np.interp(utime, ego.time_us, a) for a in (ego.speed, ego.yaw_rate))
    wheel = np.arctan2(WHEELBASE * yaw_rate, np.maximum(speed, 1e-3))
    return [SteeringMessage(*row) for row in zip(utime.tolist(), (STEERING_RATIO * wheel).tolist())]


def _stats(values: np.ndarray) -> dict:
    """The real meta files' statistics of a message field: over all values and their differences."""
    flat = values.ravel().astype(np.float64)
    diff = np.diff(flat) if flat.size > 1 else np.zeros(1)
    out = {}
    for suffix, v in (("", flat), ("_diff", diff)):
        out.update({f"max{suffix}": float(v.max()), f"mean{suffix}": float(v.mean()), f"min{suffix}": float(v.min()),
                    f"std{suffix}": float(v.std())})
    return dict(sorted(out.items()))


def _meta(messages: list) -> dict:
    """The real meta files' entry of one message type: count, frequency, timespan, statistics per field."""
    utime = np.array([m.utime for m in messages])
    fields = {name: np.array([getattr(m, name) for m in messages]) for name in type(messages[0]).__struct_fields__}
    timespan = (utime[-1] - utime[0]) * 1e-6
    return {"message_count": len(messages),
            "message_freq": float((len(messages) - 1) / timespan) if timespan > 0 else 0.0,
            "timespan": float(timespan),
            "var_stats": {name: _stats(v) for name, v in fields.items()}}


def write_can_bus(can_dir: Path, scene_name: str, poses: List[PoseMessage], steering: List[SteeringMessage]) -> None:
    """`<scene>_pose.json`, `<scene>_steeranglefeedback.json` and `<scene>_meta.json` (their statistics)
    in `can_dir`."""
    for message, messages in (("pose", poses), ("steeranglefeedback", steering)):
        with atomic_write(can_dir / f"{scene_name}_{message}.json") as handle:
            handle.write(msgspec.json.encode(messages))
    meta = {"POSE": _meta(poses), "SteerAngleFeedback": _meta(steering)}
    with atomic_write(can_dir / f"{scene_name}_meta.json") as handle:
        handle.write(msgspec.json.encode(meta))
