"""Unity `Capture` records → the 13 nuScenes tables and per-scene CAN bus pose messages.

sequence → scene, step → sample (every step is a keyframe), camera capture → camera
sample_data + calibrated_sensor, 3D box → sample_annotation in the global frame (prev/next link
the same instance across steps, so the shared velocity code estimates its velocity), label →
category through the Unity config. Unity has no LiDAR: every sample gets a virtual LIDAR_TOP
sample_data at the ego with identity calibration and a placeholder file name. Without a real
ego (SOLO, legacy 0.0.2) the ego is put at the first camera of each step, facing where it looks.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, List, Tuple

import numpy as np

from occprep.errors import OccprepError
from occprep.records import CanBusPoses
from occprep.tables import (CalibratedSensor, Category, EgoPose, Instance, Log, Map, Sample, SampleAnnotation,
                            SampleData, Scene, Sensor, Tables, Visibility)
from occprep.unity import convert
from occprep.unity.mapping import UnityConfig
from occprep.unity.records import Capture
from occprep.unity.visibility import VISIBILITY_LEVELS, visibility_token, visible_fraction

EPOCH_US = 1_600_000_000_000_000
"""Timestamp of the first scene's start, µs (Unity times are relative to each sequence)."""
SCENE_GAP_US = 3_600_000_000
"""Gap between consecutive scenes on the shared time line, µs."""
GRAVITY = np.array([0.0, 0.0, 9.81])
"""Added to CAN bus `accel`, like the real IMU messages (specific force, ego frame)."""
UNIT_TOLERANCE = 1e-3


def token(*parts: object) -> str:
    """Deterministic 32-hex token of a record named by `parts`."""
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


@dataclass(frozen=True)
class UnityTables:
    """A Unity dataset as nuScenes tables, with CAN bus poses by scene name and a summary."""

    tables: Tables
    can_bus: Dict[str, CanBusPoses]
    camera_channels: Tuple[str, ...]
    summary: Dict[str, int]
    labels: FrozenSet[str] = frozenset()
    """Unity label names of the boxes read."""
    sensor_ids: FrozenSet[str] = frozenset()
    """Unity ids of the camera sensors read."""


def pose_messages(utime: np.ndarray, ego_translation: np.ndarray, ego_rotation: np.ndarray) -> CanBusPoses:
    """CAN bus pose messages, one per ego pose (global, nuScenes axes) at `utime` (µs, increasing).

    vel and rotation_rate are finite differences of the poses, in the ego frame; accel is the
    finite difference of the velocity plus gravity, as the real IMU messages report it.
    """
    t = utime / 1e6
    n = len(t)
    if n < 2:
        zeros = np.zeros((n, 3))
        return CanBusPoses(utime, ego_translation, ego_rotation, zeros + GRAVITY, zeros, zeros)
    velocity = np.gradient(ego_translation, t, axis=0)
    acceleration = np.gradient(velocity, t, axis=0)
    ego_from_global = convert.conjugate_wxyz(ego_rotation)
    step_rotation = convert.quat_multiply_wxyz(ego_from_global[:-1], ego_rotation[1:])
    interval_rate = convert.rotation_vector_wxyz(step_rotation) / np.diff(t)[:, None]
    rate = np.concatenate([interval_rate[:1], (interval_rate[:-1] + interval_rate[1:]) / 2, interval_rate[-1:]])
    return CanBusPoses(utime, ego_translation, ego_rotation,
                        accel=convert.rotate_wxyz(ego_from_global, acceleration) + GRAVITY,
                        rotation_rate=rate, vel=convert.rotate_wxyz(ego_from_global, velocity))


def _unit(q: np.ndarray, sources: List[str], what: str) -> np.ndarray:
    """Normalise (N, 4) quaternions, refusing any whose length is not 1 (± UNIT_TOLERANCE)."""
    norm = np.linalg.norm(q, axis=-1)
    bad = np.flatnonzero(np.abs(norm - 1) > UNIT_TOLERANCE)
    if bad.size:
        i = bad[0]
        raise OccprepError(f"{sources[i]}: {what} {q[i].tolist()} is not a unit quaternion (length "
                           f"{norm[i]:.4g}); run `occprep check` on the dataset for every such record")
    return q / norm[:, None]


class _Builder:
    """Accumulates the table records scene by scene."""

    def __init__(self, config: UnityConfig) -> None:
        self.config = config
        self.channels: Dict[str, str] = {}
        """Camera sensor id → channel, as sensors appear."""
        self.channel_rank = {c: i for i, c in enumerate(config.channel_order(config.cameras.values() or ["CAM_FRONT"]))}
        self.tables = Tables(attribute=[], calibrated_sensor=[], category=[], ego_pose=[], instance=[], log=[],
                             map=[], sample=[], sample_annotation=[], sample_data=[], scene=[], sensor=[],
                             visibility=[Visibility(description=f"visibility of whole object is {lvl}", token=t,
                                                    level=lvl) for t, lvl in VISIBILITY_LEVELS])
        self.can_bus: Dict[str, CanBusPoses] = {}
        self.calibrations: Dict[tuple, str] = {}
        self.categories: Dict[str, str] = {}
        self.labels: set = set()
        self.logs: Dict[str, str] = {}
        self.next_base_us = EPOCH_US
        self.counts = {"captures": 0, "boxes": 0, "boxes_without_visibility": 0, "duplicate_boxes": 0}

    def _calibration(self, channel: str, translation: np.ndarray, rotation: np.ndarray,
                     intrinsic: List[List[float]]) -> str:
        rotation = rotation if rotation[0] >= 0 else -rotation
        key = (channel, *np.round(translation, 6), *np.round(rotation, 8), *np.round(intrinsic, 4).ravel())
        if key not in self.calibrations:
            self.calibrations[key] = token("calibrated_sensor", *key)
            self.tables.calibrated_sensor.append(CalibratedSensor(
                token=self.calibrations[key], sensor_token=token("sensor", channel),
                translation=translation.tolist(), rotation=rotation.tolist(), camera_intrinsic=intrinsic))
        return self.calibrations[key]

    def _category(self, label: str) -> str:
        self.labels.add(label)
        name = self.config.category(label)
        if name not in self.categories:
            self.categories[name] = token("category", name)
            self.tables.category.append(Category(token=self.categories[name], name=name,
                                                 description=f"Unity label {label!r}"))
        return self.categories[name]

    def _log(self, run: str) -> str:
        if run not in self.logs:
            self.logs[run] = token("log", run)
            self.tables.log.append(Log(token=self.logs[run], logfile=run or ".", vehicle="unity-ego",
                                       date_captured="", location="unity"))
        return self.logs[run]

    def add_scene(self, run: str, sequence: str, captures: List[Capture]) -> None:
        """Add one sequence's captures (any order) as a scene."""
        rank = {c.sensor_id: self.channel_rank[self.config.camera_channel(c.sensor_id, self.channels)]
                for c in captures}
        captures = sorted(captures, key=lambda c: (c.step, rank[c.sensor_id]))
        seen = {}
        for c in captures:
            previous = seen.setdefault((c.step, c.sensor_id), c.source)
            if previous is not c.source:
                raise OccprepError(f"{c.source}: sequence {sequence!r} step {c.step} of sensor {c.sensor_id!r} "
                                   f"also appears in {previous}; remove the duplicate capture")
        scene_key = f"{run}/{sequence}"
        scene_name = f"unity-{len(self.tables.scene):04d}"
        sources = [c.source for c in captures]
        steps, step_of = np.unique([c.step for c in captures], return_inverse=True)
        first = np.flatnonzero(np.diff(np.concatenate([[-1], step_of])))  # first capture of each step

        cam_position = convert.position_to_nuscenes(np.array([c.camera_position for c in captures]))
        cam_q_unity = _unit(np.array([c.camera_rotation for c in captures]), sources, "camera rotation")
        cam_rotation = convert.camera_rotation_to_nuscenes(cam_q_unity)
        if all(captures[i].ego_position is not None for i in first):
            ego_q_unity = _unit(np.array([captures[i].ego_rotation for i in first]),
                                [sources[i] for i in first], "ego rotation")
            ego_translation = convert.position_to_nuscenes(np.array([captures[i].ego_position for i in first]))
        else:
            ego_q_unity = cam_q_unity[first]
            ego_translation = cam_position[first]
        ego_rotation = convert.body_rotation_to_nuscenes(ego_q_unity)
        ego_from_global = convert.conjugate_wxyz(ego_rotation)[step_of]
        cam_in_ego = convert.rotate_wxyz(ego_from_global, cam_position - ego_translation[step_of])
        cam_rot_in_ego = convert.quat_multiply_wxyz(ego_from_global, cam_rotation)

        times_us = np.array([round(c.timestamp * 1e6) for c in captures], dtype=np.int64)
        sample_us = self.next_base_us + times_us[first] - times_us[first].min()
        if np.any(np.diff(sample_us) <= 0):
            bad = first[np.flatnonzero(np.diff(sample_us) <= 0)[0] + 1]
            raise OccprepError(f"{sources[bad]}: step {captures[bad].step} is not later than the step before "
                               f"it in sequence {sequence!r}; timestamps must increase with the step")
        capture_us = sample_us[step_of] + times_us - times_us[first][step_of]
        self.next_base_us = int(sample_us[-1]) + SCENE_GAP_US

        scene_token = token("scene", scene_key)
        sample_tokens = [token("sample", scene_key, s) for s in steps]
        for i, s in enumerate(steps):
            self.tables.sample.append(Sample(
                token=sample_tokens[i], timestamp=int(sample_us[i]), scene_token=scene_token,
                prev=sample_tokens[i - 1] if i else "", next=sample_tokens[i + 1] if i + 1 < len(steps) else ""))
        self.tables.scene.append(Scene(
            token=scene_token, log_token=self._log(run), nbr_samples=len(steps), first_sample_token=sample_tokens[0],
            last_sample_token=sample_tokens[-1], name=scene_name, description=f"Unity {scene_key or sequence}"))

        lidar_calibration = self._calibration(self.config.lidar_channel, np.zeros(3), np.array([1.0, 0, 0, 0]), [])
        data_channel = {}
        data = [self._sample_data(data_channel, self.config.lidar_channel, scene_key, s, sample_tokens[i], int(sample_us[i]),
                                  lidar_calibration, ego_translation[i], ego_rotation[i],
                                  f"samples/{self.config.lidar_channel}/{scene_name}_step{s:06d}.pcd.bin", "pcd", 0, 0)
                for i, s in enumerate(steps)]
        intrinsics = np.empty((len(captures), 3, 3))
        for j, c in enumerate(captures):
            channel = self.channels[c.sensor_id]
            try:
                intrinsics[j] = convert.pixel_intrinsic(c.matrix, c.width, c.height, c.projection)
            except OccprepError as exc:
                raise OccprepError(f"{c.source}: {exc}") from None
            calibration = self._calibration(channel, cam_in_ego[j], cam_rot_in_ego[j], intrinsics[j].tolist())
            i = step_of[j]
            data.append(self._sample_data(data_channel, channel, scene_key, c.step, sample_tokens[i], int(capture_us[j]),
                                          calibration, ego_translation[i], ego_rotation[i], c.filename,
                                          c.filename.rsplit(".", 1)[-1].lower(), c.width, c.height))
        _link(data, key=lambda d: data_channel[d.token])
        self.tables.sample_data.extend(data)
        self._add_boxes(scene_key, captures, cam_q_unity, intrinsics, step_of, sample_tokens)
        self.can_bus[scene_name] = pose_messages(sample_us, ego_translation, ego_rotation)
        self.counts["captures"] += len(captures)

    def _sample_data(self, data_channel, channel, scene_key, step, sample_token, timestamp, calibration, ego_t,
                     ego_q, filename, fileformat, width, height) -> SampleData:
        data_token = token("sample_data", scene_key, step, channel)
        data_channel[data_token] = channel
        self.tables.ego_pose.append(EgoPose(token=data_token, timestamp=timestamp, rotation=ego_q.tolist(),
                                            translation=ego_t.tolist()))
        return SampleData(token=data_token, sample_token=sample_token, ego_pose_token=data_token,
                          calibrated_sensor_token=calibration, timestamp=timestamp, fileformat=fileformat,
                          is_key_frame=True, height=height, width=width, filename=filename, prev="", next="")

    def _add_boxes(self, scene_key: str, captures: List[Capture], cam_q: np.ndarray, intrinsics: np.ndarray,
                   step_of: np.ndarray, sample_tokens: List[str]) -> None:
        """Annotations and instances of a scene; `cam_q` holds the captures' unit camera rotations (Unity),
        `intrinsics` their (C, 3, 3) pixel camera matrices.

        A box seen by several cameras at a step keeps the first camera's pose, the sum of the
        cameras' visible pixels (num_lidar_pts) and the best camera's visibility level; the cameras
        with the rendered-object-info metric decide it when there are any (see `visibility`).
        """
        owner = np.repeat(np.arange(len(captures)), [len(c.boxes.instance_ids) for c in captures])
        if owner.size == 0:
            return
        values = np.concatenate([c.boxes.values for c in captures])
        starts = np.concatenate([[0], np.cumsum([len(c.boxes.instance_ids) for c in captures])])
        sources = [f"{captures[o].source} box {b - starts[o]}" for b, o in enumerate(owner)]
        box_q = _unit(values[:, 6:10], sources, "box rotation")
        position, rotation = convert.boxes_to_world(np.array([c.camera_position for c in captures])[owner],
                                                    cam_q[owner], values[:, :3], box_q)
        translation = convert.position_to_nuscenes(position)
        rotation = convert.body_rotation_to_nuscenes(rotation)
        size = convert.box_size_to_nuscenes(values[:, 3:6])
        ids = [i for c in captures for i in c.boxes.instance_ids]
        labels = [lbl for c in captures for lbl in c.boxes.labels]
        pixels = np.concatenate([c.boxes.visible_pixels for c in captures])
        fraction = visible_fraction(np.concatenate([values[:, :6], box_q], axis=1),
                                    intrinsics[owner], np.array([c.width for c in captures], float)[owner],
                                    np.array([c.height for c in captures], float)[owner], pixels)

        kept: Dict[Tuple[int, str], int] = {}
        seen_pixels: Dict[Tuple[int, str], int] = {}
        best: Dict[Tuple[int, str], Tuple[bool, float]] = {}
        for b, instance_id in enumerate(ids):
            key = (int(step_of[owner[b]]), instance_id)
            if key in kept:
                self.counts["duplicate_boxes"] += 1
            else:
                kept[key] = b
            if pixels[b] >= 0:
                seen_pixels[key] = seen_pixels.get(key, 0) + int(pixels[b])
            best[key] = max(best.get(key, (False, 0.0)), (bool(pixels[b] >= 0), float(fraction[b])))
        keys = sorted(kept)
        level = dict(zip(keys, visibility_token(np.array([best[k][1] for k in keys])).tolist()))

        chains: Dict[str, List[SampleAnnotation]] = {}
        labels_of: Dict[str, str] = {}
        for (step_index, instance_id), b in sorted(kept.items()):
            visible = seen_pixels.get((step_index, instance_id))
            self.counts["boxes_without_visibility"] += visible is None
            instance_token = token("instance", scene_key, instance_id)
            labels_of.setdefault(instance_token, labels[b])
            chains.setdefault(instance_token, []).append(SampleAnnotation(
                token=token("sample_annotation", scene_key, step_index, instance_id),
                sample_token=sample_tokens[step_index], instance_token=instance_token,
                visibility_token=level[step_index, instance_id], attribute_tokens=[],
                translation=translation[b].tolist(), size=size[b].tolist(), rotation=rotation[b].tolist(),
                prev="", next="", num_lidar_pts=1 if visible is None else visible, num_radar_pts=0))
        for instance_token, chain in chains.items():
            _link(chain, key=lambda a: a.instance_token)
            self.tables.instance.append(Instance(
                token=instance_token, category_token=self._category(labels_of[instance_token]),
                nbr_annotations=len(chain), first_annotation_token=chain[0].token,
                last_annotation_token=chain[-1].token))
        step_index_of = {t: i for i, t in enumerate(sample_tokens)}
        annotations = sorted((a for chain in chains.values() for a in chain),
                             key=lambda a: step_index_of[a.sample_token])
        self.tables.sample_annotation.extend(annotations)
        self.counts["boxes"] += len(annotations)

    def finish(self) -> UnityTables:
        order = self.config.channel_order(self.channels.values())
        for channel in order + (self.config.lidar_channel,):
            modality = "lidar" if channel == self.config.lidar_channel else "camera"
            self.tables.sensor.append(Sensor(token=token("sensor", channel), channel=channel, modality=modality))
        self.tables.map.append(Map(category="semantic_prior", token=token("map", "unity"),
                                   filename=BLANK_MAP, log_tokens=[log for log in self.logs.values()]))
        summary = {"scenes": len(self.tables.scene), "samples": len(self.tables.sample),
                   "runs": len(self.logs), "cameras": len(order), **self.counts}
        return UnityTables(self.tables, self.can_bus, order, summary, frozenset(self.labels), frozenset(self.channels))


BLANK_MAP = "maps/unity-blank.png"
"""Placeholder map mask every nuScenes reader needs (Unity datasets carry no map)."""


def _link(records: list, key) -> None:
    """Set prev/next along each chain of `records` sharing `key(record)`, in list order."""
    last: Dict[str, object] = {}
    for record in records:
        before = last.get(key(record))
        if before is not None:
            before.next, record.prev = record.token, before.token
        last[key(record)] = record


def build_tables(captures: Iterable[Capture], config: UnityConfig, source: str = "the Unity dataset") -> UnityTables:
    """The nuScenes tables of a stream of captures, one scene per (run, sequence), in stream order.

    Streaming: the captures of one sequence must be contiguous in the stream (both readers yield
    them so); only that sequence's captures are held while its records are built.
    """
    builder = _Builder(config)
    done = set()
    for (run, sequence), group in itertools.groupby(captures, key=lambda c: (c.run, c.sequence)):
        if (run, sequence) in done:
            raise OccprepError(f"sequence {sequence!r} of run {run or '.'!r} is split in the capture stream "
                               "(a bug in the reader: sequences must be contiguous)")
        done.add((run, sequence))
        builder.add_scene(run, sequence, list(group))
    if not done:
        raise OccprepError(f"{source}: no camera captures found: a Unity dataset needs camera captures to become "
                           "samples (`occprep check` lists what its files hold)")
    return builder.finish()
