"""CAN bus expansion files of a synthetic scene: `<scene>_pose.json` at 50 Hz and `<scene>_meta.json`.

Pose messages follow the real files: keys `accel, orientation, pos, rotation_rate, utime, vel` in
that order; `pos`/`orientation` are the ego pose (global frame, z = 0), `vel` and `accel` are in the
ego frame (forward speed; longitudinal and centripetal acceleration plus gravity on z),
`rotation_rate` is the yaw rate about the ego z axis.
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
GRAVITY = 9.81


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


def _stats(values: np.ndarray) -> dict:
    """The real meta files' statistics of a message field: over all values and their differences."""
    flat = values.ravel().astype(np.float64)
    diff = np.diff(flat) if flat.size > 1 else np.zeros(1)
    out = {}
    for suffix, v in (("", flat), ("_diff", diff)):
        out.update({f"max{suffix}": float(v.max()), f"mean{suffix}": float(v.mean()), f"min{suffix}": float(v.min()),
                    f"std{suffix}": float(v.std())})
    return dict(sorted(out.items()))


def write_can_bus(can_dir: Path, scene_name: str, messages: List[PoseMessage]) -> None:
    """`<scene>_pose.json` and `<scene>_meta.json` (POSE statistics only) in `can_dir`."""
    with atomic_write(can_dir / f"{scene_name}_pose.json") as handle:
        handle.write(msgspec.json.encode(messages))
    utime = np.array([m.utime for m in messages])
    fields = {name: np.array([getattr(m, name) for m in messages]) for name in PoseMessage.__struct_fields__}
    timespan = (utime[-1] - utime[0]) * 1e-6
    meta = {"POSE": {"message_count": len(messages),
                     "message_freq": float((len(messages) - 1) / timespan) if timespan > 0 else 0.0,
                     "timespan": float(timespan),
                     "var_stats": {name: _stats(v) for name, v in fields.items()}}}
    with atomic_write(can_dir / f"{scene_name}_meta.json") as handle:
        handle.write(msgspec.json.encode(meta))
