"""`vad`: `vad_{tag}_infos_temporal_{split}.pkl` as VAD's `tools/data_converter/vad_nuscenes_converter.py`
(hustvl/VAD 1688c4b) writes it: the BEVFormer info without `scene_name`, plus `fut_valid_flag` (6 later
samples exist) and `map_location` (the log's location) on every split, and on train/val ten float32
arrays in the keyframe LIDAR_TOP frame (6 future steps of 0.5 s, 2 past):

| key | shape | content |
|---|---|---|
| `gt_agent_fut_trajs` | (N, 12) | per-step xy offsets of each box's next 6 annotations, zero after its track ends |
| `gt_agent_fut_masks` | (N, 6) | 1 where that step exists |
| `gt_agent_lcf_feat` | (N, 9) | x, y, yaw, vx, vy, w, l, h, position of the raw category in category.json (-1: absent) |
| `gt_agent_fut_yaw` | (N, 6) | per-step yaw change (not wrapped) |
| `gt_agent_fut_goal` | (N,) | heading bin of the displacement, (atan2 + π) // (π/4); 9 = static |
| `gt_ego_his_trajs` | (2, 2) | the LiDAR's past per-step offsets (extrapolated before the scene's first sample) |
| `gt_ego_fut_trajs` | (6, 2) | its future per-step offsets (the last position repeated after the scene's end) |
| `gt_ego_fut_masks` | (6,) | 1 where that future sample exists |
| `gt_ego_fut_cmd` | (3,) | one-hot right, left, straight: final x offset ≥ 2 m, ≤ −2 m, else |
| `gt_ego_lcf_feat` | (9,) | vx, vy, ax, ay (can_bus[7:9]), yaw rate, length 4.084, width 1.85, v0, curvature |

v0 is the CAN bus `pose` message nearest the sample (`vel[0]`) and the curvature 2·steering/2.588 of
the nearest `steeranglefeedback` message, negated in Singapore; a scene without both files gets v0
from the ego track and curvature 0, as the reference, and is named in the summary.

Reference faults reproduced by default (models were trained on them), each with its fix
(`BuildOptions.fixes`): the ego yaw read from a (w, x, y, z) quaternion as (x, y, z, w) (VAD issue
#105), which makes the yaw rate and vx/vy wrong (`vad-ego-yaw`); the static-goal test on the largest
signed coordinate of the displacement between the first and last future step rather than the
distance from the box (`vad-goal`); the per-step yaw change not wrapped to (−π, π] (`vad-fut-yaw`); a
missing steering file also dropping the pose speed (`vad-speed`).
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from occprep import boxes
from occprep.canbus import nearest_message
from occprep.futures import follow
from occprep.geometry import arctan2, quaternion_product
from occprep.infos import GT_KEYS, SAMPLE_KEYS, InfoParts
from occprep.targets import BuildOptions, box_column, key_selecting_target, keyframe_column
from occprep.temporal import orientation_from_global

FIXES = {
    "ego-yaw": "read the ego yaw with the right quaternion order (it sets the yaw rate and vx, vy of gt_ego_lcf_feat)",
    "goal": "call an agent static (goal 9) when its final future position is under 1 m from it, and take the "
            "goal direction from there",
    "fut-yaw": "wrap gt_agent_fut_yaw to (-pi, pi]",
    "speed": "keep the pose speed (v0) of a scene whose steering file is missing",
}
"""The reference faults `--fix-vad-<name>` mends (see the module docstring)."""
FUTURE_STEPS, PAST_STEPS = 6, 2
EGO_LENGTH, EGO_WIDTH = 4.084, 1.85
WHEELBASE = 2.588
"""m, the constant of VAD's curvature 2·steering/2.588."""
STEP_SECONDS = 0.5
"""The time VAD assumes between samples."""
SCENE_KEYS = ("fut_valid_flag", "map_location")
AGENT_KEYS = ("gt_agent_fut_trajs", "gt_agent_fut_masks", "gt_agent_lcf_feat", "gt_agent_fut_yaw", "gt_agent_fut_goal")
EGO_KEYS = ("gt_ego_his_trajs", "gt_ego_fut_trajs", "gt_ego_fut_masks", "gt_ego_fut_cmd", "gt_ego_lcf_feat")
KEYS = (*SAMPLE_KEYS, *SCENE_KEYS, *GT_KEYS, *AGENT_KEYS, *EGO_KEYS)


def rpy_yaw(x: np.ndarray, y: np.ndarray, z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The yaw of VAD's `quart_to_rpy`, which takes a quaternion as (x, y, z, w) and does not normalise it."""
    return arctan2(2 * (w * z + x * y), 1 - 2 * (z * z + y * y))


def _wrapped(angle: np.ndarray) -> np.ndarray:
    """Angles mapped to (−π, π]."""
    return np.pi - np.mod(np.pi - angle, 2 * np.pi)


class _Agents:
    """The five per-box arrays of every box of one `InfoParts` (rows as `Scan.annotations`)."""

    def __init__(self, parts: InfoParts, fixes: frozenset) -> None:
        scan, temporal = parts.scan, parts.temporal
        annotations = scan.annotations
        count = len(annotations.category)
        owner = scan.keyframes.of_boxes()
        lidar = scan.keyframes.lidar
        rotation_from_global = orientation_from_global(np.array([1.0, 0.0, 0.0, 0.0]),
                                                       scan.ego_poses.rotation[scan.readings.ego_pose[lidar]],
                                                       scan.calibrations.rotation[scan.readings.calibration[lidar]])
        lidar_from_global = temporal.lidar_from_global[owner]

        def yaw_in_lidar(rows: np.ndarray) -> np.ndarray:
            orientation = quaternion_product(rotation_from_global[owner], annotations.rotation[rows])
            return rpy_yaw(*orientation[:, [1, 2, 3, 0]].T)

        chain = follow(annotations.next, np.arange(count), FUTURE_STEPS)
        valid = chain >= 0
        steps = np.zeros((count, FUTURE_STEPS, 2))
        fut_yaw = np.zeros((count, FUTURE_STEPS))
        centre, yaw = temporal.box_centre[:, :2], yaw_in_lidar(np.arange(count))
        for k in range(FUTURE_STEPS):
            later = np.maximum(chain[:, k], 0)
            next_centre, next_yaw = lidar_from_global.apply(annotations.translation[later])[:, :2], yaw_in_lidar(later)
            steps[:, k] = np.where(valid[:, k, None], next_centre - centre, 0.0)
            change = next_yaw - yaw
            fut_yaw[:, k] = np.where(valid[:, k], _wrapped(change) if "fut-yaw" in fixes else change, 0.0)
            centre, yaw = next_centre, next_yaw
        self.fut_trajs = steps.reshape(count, -1).astype(np.float32)
        self.fut_masks = valid.astype(np.float32)
        self.fut_yaw = fut_yaw.astype(np.float32)
        self.fut_goal = _goals(np.cumsum(steps, axis=1), "goal" in fixes).astype(np.float32)
        legacy_yaw = boxes.make(temporal.box_centre, annotations.size, temporal.box_yaw, "legacy")[:, 6]
        category = {name: index for index, name in enumerate(scan.category_names)}
        self.lcf_feat = np.column_stack([
            temporal.box_centre[:, :2], -(legacy_yaw + np.pi / 2), temporal.box_velocity, annotations.size,
            [category.get(name, -1) for name in annotations.category]]).astype(np.float32).reshape(count, 9)


def _goals(positions: np.ndarray, fixed: bool) -> np.ndarray:
    """(A,) goal bins of (A, 6, 2) future positions relative to each box (see the module docstring)."""
    if fixed:
        displacement = positions[:, -1]
        static = np.hypot(*displacement.T) < 1.0
    else:
        displacement = positions[:, -1] - positions[:, 0]
        static = displacement.max(axis=1) < 1.0
    bins = (arctan2(displacement[:, 1], displacement[:, 0]) + np.pi) // (np.pi / 4)
    return np.where(static, 9.0, bins)


class _Ego:
    """The per-keyframe ego arrays of one `InfoParts` (rows as `Scan.keyframes`), and the scenes whose
    values are stand-ins, with the reason."""

    def __init__(self, parts: InfoParts, fixes: frozenset) -> None:
        scan, temporal = parts.scan, parts.temporal
        keyframes = scan.keyframes
        count = len(keyframes.token)
        lidar_position = temporal.lidar_from_global.inverse().translation
        rows = np.arange(count)
        earlier = np.column_stack([rows, follow(keyframes.prev_row, rows, PAST_STEPS)])
        later = np.column_stack([rows, follow(keyframes.next_row, rows, FUTURE_STEPS)])
        self.fut_valid = later[:, -1] >= 0

        # Past positions, oldest first; before the scene's first sample, step back by the last known step.
        past = np.zeros((count, PAST_STEPS + 1, 3))
        past_step = np.zeros((count, PAST_STEPS + 1, 3))
        for back in range(PAST_STEPS + 1):
            i, here = PAST_STEPS - back, np.maximum(earlier[:, back], 0)
            following = keyframes.next_row[here]
            step = np.where((following >= 0)[:, None], lidar_position[np.maximum(following, 0)] - lidar_position[here],
                            0.0)
            if back == 0:
                past[:, i], past_step[:, i] = lidar_position[here], step
            else:
                alive = (earlier[:, back] >= 0)[:, None]
                past[:, i] = np.where(alive, lidar_position[here], past[:, i + 1] - past_step[:, i + 1])
                past_step[:, i] = np.where(alive, step, past_step[:, i + 1])

        # Future positions; after the scene's last sample, its position repeated.
        masks = later >= 0
        future = np.zeros((count, FUTURE_STEPS + 1, 3))
        future[:, 0] = lidar_position
        for i in range(1, FUTURE_STEPS + 1):
            future[:, i] = np.where(masks[:, i, None], lidar_position[np.maximum(later[:, i], 0)], future[:, i - 1])

        lidar_from_global = temporal.lidar_from_global[:, None]
        past, future = lidar_from_global.apply(past), lidar_from_global.apply(future)
        final_x = future[:, -1, 0]
        command = np.zeros((count, 3))
        command[np.arange(count), np.where(final_x >= 2, 0, np.where(final_x <= -2, 1, 2))] = 1
        his_trajs, fut_trajs = np.diff(past, axis=1)[..., :2], np.diff(future, axis=1)[..., :2]
        self.gaps: Dict[str, str] = {}
        self.lcf_feat = self._lcf_feat(parts, fixes, his_trajs, fut_trajs).astype(np.float32)
        self.his_trajs, self.fut_trajs = his_trajs.astype(np.float32), fut_trajs.astype(np.float32)
        self.fut_masks = masks[:, 1:].astype(np.float32)
        self.command = command.astype(np.float32)

    def _lcf_feat(self, parts: InfoParts, fixes: frozenset, his_trajs: np.ndarray, fut_trajs: np.ndarray) -> np.ndarray:
        scan, keyframes = parts.scan, parts.scan.keyframes
        count = len(keyframes.token)
        pose = scan.readings.ego_pose[keyframes.lidar]
        rotation, position = scan.ego_poses.rotation[pose], scan.ego_poses.translation[pose]
        order = [1, 2, 3, 0] if "ego-yaw" in fixes else [0, 1, 2, 3]
        yaw = rpy_yaw(*rotation[:, order].T)
        prev, following = keyframes.prev_row, keyframes.next_row
        earlier = np.where(prev >= 0, prev, np.arange(count))
        later = np.where(prev >= 0, np.arange(count), np.maximum(following, 0))
        alone = (prev < 0) & (following < 0)
        yaw_rate = np.where(alone, 0.0, (yaw[later] - yaw[earlier]) / STEP_SECONDS)
        speed = np.where(alone, 0.0, np.linalg.norm(position[later, :2] - position[earlier, :2], axis=1) / STEP_SECONDS)
        delta = his_trajs[:, -1] + fut_trajs[:, 0]
        trajectory_speed = np.sqrt(delta[:, 0] ** 2 + delta[:, 1] ** 2)
        v0, curvature = self._can_bus(parts, trajectory_speed, "speed" in fixes)
        for scene in sorted(set(keyframes.scene[alone].tolist())):
            self.gaps[scan.scenes.name[scene]] = ("one sample only: ego speed and yaw rate 0 (VAD's converter stops "
                                                  "on such a scene)")
        return np.column_stack([speed * np.cos(yaw + np.pi / 2), speed * np.sin(yaw + np.pi / 2), parts.can_bus[:, 7:9],
                                yaw_rate, np.full(count, EGO_LENGTH), np.full(count, EGO_WIDTH), v0, curvature])

    def _can_bus(self, parts: InfoParts, trajectory_speed: np.ndarray, keep_pose_speed: bool):
        """(v0, curvature) of every keyframe from the CAN bus, the stand-ins where a scene lacks it."""
        scan, messages = parts.scan, parts.messages
        keyframes = scan.keyframes
        v0, curvature = trajectory_speed.copy(), np.zeros(len(keyframes.token))
        for scene in sorted(set(keyframes.scene.tolist())):
            name = scan.scenes.name[scene]
            rows = np.flatnonzero(keyframes.scene == scene)
            poses, steering = messages.poses.get(name), messages.steering.get(name)
            if poses is not None and (steering is not None or keep_pose_speed):
                v0[rows] = poses.vel[nearest_message(poses.utime, keyframes.timestamp[rows]), 0]
            if poses is not None and steering is not None:
                value = steering.value[nearest_message(steering.utime, keyframes.timestamp[rows])]
                sign = -1.0 if scan.scenes.location[scene].startswith("singapore") else 1.0
                curvature[rows] = 2 * (sign * value) / WHEELBASE
                continue
            why = (messages.missing.get(name, 'no CAN bus data') if poses is None
                   else messages.steering_missing.get(name, 'no steeranglefeedback messages'))
            kept = "pose speed kept" if poses is not None and keep_pose_speed else "v0 from the ego track"
            self.gaps[name] = f"{why}: {kept}, curvature 0 (as VAD's converter)"
        return v0, curvature


def _agents(parts: InfoParts, options: BuildOptions) -> _Agents:
    fixes = frozenset(options.fixes)
    return parts.memo(f"vad agents {sorted(fixes)}", lambda: _Agents(parts, fixes))


def _ego(parts: InfoParts, options: BuildOptions) -> _Ego:
    fixes = frozenset(options.fixes)
    return parts.memo(f"vad ego {sorted(fixes)}", lambda: _Ego(parts, fixes))


def fut_valid_flag(parts: InfoParts, s: int, options: BuildOptions) -> bool:
    """Whether keyframe `s` has 6 later samples in its scene."""
    return bool(_ego(parts, options).fut_valid[s])


def map_location(parts: InfoParts, s: int, options: BuildOptions) -> str:
    """The location of keyframe `s`'s log."""
    return parts.scan.scenes.location[int(parts.scan.keyframes.scene[s])]


def gaps(parts: InfoParts, rows: Sequence[int], annotations: bool, options: BuildOptions) -> Dict[str, str]:
    """Scene name -> which of its values are stand-ins, for the scenes of keyframe `rows` (see `Target.gaps`);
    none without annotations (the ego arrays are not written)."""
    if not annotations:
        return {}
    used = {parts.scan.scenes.name[i] for i in parts.scan.keyframes.scene[list(rows)].tolist()}
    return {name: why for name, why in _ego(parts, options).gaps.items() if name in used}


EXTRAS = {
    "fut_valid_flag": fut_valid_flag,
    "map_location": map_location,
    "gt_agent_fut_trajs": box_column(_agents, "fut_trajs"),
    "gt_agent_fut_masks": box_column(_agents, "fut_masks"),
    "gt_agent_lcf_feat": box_column(_agents, "lcf_feat"),
    "gt_agent_fut_yaw": box_column(_agents, "fut_yaw"),
    "gt_agent_fut_goal": box_column(_agents, "fut_goal"),
    "gt_ego_his_trajs": keyframe_column(_ego, "his_trajs"),
    "gt_ego_fut_trajs": keyframe_column(_ego, "fut_trajs"),
    "gt_ego_fut_masks": keyframe_column(_ego, "fut_masks"),
    "gt_ego_fut_cmd": keyframe_column(_ego, "command"),
    "gt_ego_lcf_feat": keyframe_column(_ego, "lcf_feat"),
}

TARGET = key_selecting_target(
    "vad", "vad_{tag}_infos_temporal_{split}.pkl", "VAD and the planners on its converter (GenAD, LAW, SSR, ...)", KEYS,
    extras=EXTRAS,
    unannotated_extras=SCENE_KEYS,
    steering=True,
    gaps=gaps,
)
