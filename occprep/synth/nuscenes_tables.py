"""The 13 nuScenes tables of a synthetic scene, built from its world, and a streaming table writer.

Timing follows the real recordings: LIDAR_TOP sweeps at 20 Hz define the samples (every tenth
sweep is a keyframe, 2 Hz, and the sample takes its timestamp); every other sensor runs at its own
rate, its keyframe for a sample is its reading nearest to the sample time plus the sensor's offset,
its chain runs from its first keyframe to its last, and a non-keyframe reading belongs to the next
sample in time.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Sequence

import msgspec
import numpy as np

from occprep.fileio import atomic_write
from occprep.synth.scenes import LogPlan, ScenePlan, tokens
from occprep.synth.spec import Rig, SensorSpec, SynthSpec
from occprep.synth.world import Agents, EgoTrack
from occprep.tables import (Attribute, CalibratedSensor, Category, EgoPose, Instance, Log, Map, Sample,
                            SampleAnnotation, SampleData, Scene, Sensor, Visibility)

KEYFRAME_HZ = 2.0
EXTENSIONS = {"camera": "jpg", "lidar": "pcd.bin", "radar": "pcd"}
"""File name extension by modality (fileformat is 'jpg' or 'pcd')."""


@dataclass(frozen=True)
class SensorTimeline:
    """The readings of one sensor in one scene, in time order."""

    sensor: SensorSpec
    time_us: np.ndarray
    """(m,) int64 timestamps, µs."""
    sample_index: np.ndarray
    """(m,) the sample each reading belongs to (its own, or the next one for non-keyframes)."""
    is_key: np.ndarray
    """(m,) bool."""


def lidar_times(rng: np.random.Generator, rig: Rig, lidar_channel: str, start_us: int, n_samples: int) -> np.ndarray:
    """LIDAR_TOP sweep timestamps (µs): 20 Hz with ±0.3 ms jitter, `n_samples` keyframes long."""
    sweeps_per_sample = round(rig.sensor(lidar_channel).rate_hz / KEYFRAME_HZ)
    period = 1e6 / rig.sensor(lidar_channel).rate_hz
    steps = np.round(period + rng.uniform(-300, 300, size=sweeps_per_sample * (n_samples - 1))).astype(np.int64)
    return start_us + np.concatenate([[0], np.cumsum(steps)])


def sensor_timeline(rng: np.random.Generator, sensor: SensorSpec, sample_us: np.ndarray) -> SensorTimeline:
    """Readings of `sensor` at its own rate (±0.2 ms jitter), keyframes nearest to sample time + offset."""
    period = 1e6 / sensor.rate_hz
    targets = sample_us + sensor.keyframe_offset_us
    first = targets[0] - period * rng.uniform(0.0, 1.0)
    count = int(np.ceil((targets[-1] - first) / period)) + 2
    time_us = np.round(first + period * np.arange(count) + rng.uniform(-200, 200, size=count)).astype(np.int64)
    nearest = np.clip(np.searchsorted(time_us, targets), 1, count - 1)
    nearest -= ((targets - time_us[nearest - 1]) < (time_us[nearest] - targets)).astype(nearest.dtype)
    time_us = time_us[nearest[0]: nearest[-1] + 1]
    key_index = nearest - nearest[0]
    is_key = np.zeros(len(time_us), dtype=bool)
    is_key[key_index] = True
    sample_index = np.searchsorted(key_index, np.arange(len(time_us)), side="left")
    return SensorTimeline(sensor, time_us, sample_index, is_key)


def lidar_timeline(sensor: SensorSpec, sweep_us: np.ndarray) -> SensorTimeline:
    """The LIDAR_TOP readings: every `sweeps_per_sample`-th sweep is a keyframe."""
    per = round(sensor.rate_hz / KEYFRAME_HZ)
    index = np.arange(len(sweep_us))
    return SensorTimeline(sensor, sweep_us, -(-index // per), index % per == 0)


def yaw_quaternion(yaw: np.ndarray) -> np.ndarray:
    """(n, 4) quaternions (w, x, y, z) of rotations by `yaw` about z."""
    yaw = np.asarray(yaw, dtype=np.float64)
    zeros = np.zeros_like(yaw)
    return np.stack([np.cos(yaw / 2), zeros, zeros, np.sin(yaw / 2)], axis=-1)


def _chain(token: List[str]) -> tuple:
    """prev and next token lists of a chain in order ('' at the ends)."""
    return [""] + token[:-1], token[1:] + [""]


@dataclass(frozen=True)
class Keyframe:
    """What the occupancy and CAN bus writers need of one sample."""

    token: str
    index: int
    """0-based position in the scene."""
    timestamp: int
    ego_xy: np.ndarray
    """(2,) ego position at the LIDAR_TOP keyframe, m, global frame."""
    ego_yaw: float
    """rad."""
    boxes: "Boxes"
    scene_token: str
    lidar_token: str
    """The keyframe's LIDAR_TOP `sample_data` token."""
    lidar_filename: str
    """Its `sample_data.filename` (`samples/LIDAR_TOP/<log>__LIDAR_TOP__<µs>.pcd.bin`)."""


@dataclass(frozen=True)
class Boxes:
    """Annotated boxes of one sample, rows parallel, global frame."""

    centre: np.ndarray
    """(n, 3) m."""
    size: np.ndarray
    """(n, 3) width, length, height, m."""
    yaw: np.ndarray
    """(n,) rad."""
    velocity: np.ndarray
    """(n, 2) m/s."""
    category: np.ndarray
    """(n,) index into SynthSpec.categories."""


@dataclass
class SceneTables:
    """The records one scene contributes to each table, plus its keyframes."""

    scene: Scene
    calibrated_sensor: List[CalibratedSensor]
    sample: List[Sample]
    sample_data: List[SampleData]
    ego_pose: List[EgoPose]
    instance: List[Instance]
    sample_annotation: List[SampleAnnotation]
    keyframes: List[Keyframe]


class StaticTables(msgspec.Struct):
    """The tables shared by all scenes: vocabularies, sensors, logs and maps."""

    attribute: List[Attribute]
    category: List[Category]
    visibility: List[Visibility]
    sensor: List[Sensor]
    log: List[Log]
    map: List[Map]


def static_tables(spec: SynthSpec, rig: Rig, logs: Sequence[LogPlan], log_tokens: Sequence[str],
                  seed: int) -> StaticTables:
    """Vocabulary tables with seed-derived tokens, the rig's sensors, the logs and one map per location."""
    rng = np.random.default_rng([seed, 0])
    attribute = [Attribute(t, a.name, a.description) for t, a in zip(tokens(rng, len(spec.attributes)), spec.attributes)]
    category = [Category(t, c.name, f"Synthetic {c.name} objects.")
                for t, c in zip(tokens(rng, len(spec.categories)), spec.categories)]
    visibility = [Visibility(v.description, v.token, v.level) for v in spec.visibility]
    sensor = [Sensor(s.sensor_token, s.channel, s.modality) for s in rig.sensors]
    log = [Log(t, p.logfile, p.location.vehicle, p.date_captured, p.location.name) for t, p in zip(log_tokens, logs)]
    maps = []
    for token, location in zip(tokens(rng, len(spec.locations)), spec.locations):
        members = [t for t, p in zip(log_tokens, logs) if p.location.name == location.name]
        maps.append(Map("semantic_prior", token, f"maps/{token}.png", members))
    return StaticTables(attribute, category, visibility, sensor, log, maps)


def scene_tables(rng: np.random.Generator, plan: ScenePlan, log: LogPlan, log_token: str, spec: SynthSpec,
                 rig: Rig, static: StaticTables, timelines: Sequence[SensorTimeline], sample_us: np.ndarray,
                 ego: EgoTrack, agents: Agents) -> SceneTables:
    """All records of one scene; `timelines` in rig order, `sample_us` the keyframe times."""
    scene_token, *sample_token = tokens(rng, 1 + len(sample_us))
    sample_prev, sample_next = _chain(sample_token)
    samples = [Sample(t, int(ts), p, n, scene_token)
               for t, ts, p, n in zip(sample_token, sample_us, sample_prev, sample_next)]

    calibrated = [CalibratedSensor(t, s.sensor_token, list(s.translation), list(s.rotation), s.camera_intrinsic)
                  for t, s in zip(tokens(rng, len(rig.sensors)), rig.sensors)]
    sample_data: List[SampleData] = []
    ego_pose: List[EgoPose] = []
    for timeline, cs in zip(timelines, calibrated):
        sensor = timeline.sensor
        sd_token = tokens(rng, len(timeline.time_us))
        prev, nxt = _chain(sd_token)
        xy, yaw = ego.pose_at(timeline.time_us)
        rotation = yaw_quaternion(yaw).tolist()
        folder = np.where(timeline.is_key, "samples", "sweeps")
        ext = EXTENSIONS[sensor.modality]
        for i, (token, ts, key, k) in enumerate(zip(sd_token, timeline.time_us.tolist(), timeline.is_key.tolist(),
                                                     timeline.sample_index.tolist())):
            filename = f"{folder[i]}/{sensor.channel}/{log.logfile}__{sensor.channel}__{ts}.{ext}"
            sample_data.append(SampleData(token, sample_token[k], token, cs.token, ts, sensor.fileformat, key,
                                          sensor.height, sensor.width, filename, prev[i], nxt[i]))
            ego_pose.append(EgoPose(token, ts, rotation[i], [float(xy[i, 0]), float(xy[i, 1]), 0.0]))

    instance, annotations, boxes = _annotations(rng, spec, static, agents, sample_token, sample_us, ego)
    lidar_index = next(i for i, tl in enumerate(timelines) if tl.sensor.modality == "lidar")
    lidar = timelines[lidar_index]
    key_xy, key_yaw = ego.pose_at(lidar.time_us[lidar.is_key])
    lidar_readings = {r.sample_token: r for r in sample_data
                      if r.is_key_frame and r.calibrated_sensor_token == calibrated[lidar_index].token}
    keyframes = [Keyframe(t, k, int(ts), key_xy[k], float(key_yaw[k]), boxes[k], scene_token, lidar_readings[t].token,
                          lidar_readings[t].filename)
                 for k, (t, ts) in enumerate(zip(sample_token, sample_us))]
    description = (f"Synthetic {log.location.name}, {len(agents)} tracked objects, "
                   f"ego {np.mean(ego.speed):.1f} m/s")
    scene = Scene(scene_token, log_token, len(samples), sample_token[0], sample_token[-1], plan.name, description)
    return SceneTables(scene, calibrated, samples, sample_data, ego_pose, instance, annotations, keyframes)


def _annotations(rng: np.random.Generator, spec: SynthSpec, static: StaticTables, agents: Agents,
                 sample_token: List[str], sample_us: np.ndarray, ego: EgoTrack):
    """instance and sample_annotation records (annotations grouped by sample) and each sample's Boxes."""
    span = agents.last - agents.first + 1
    inst = np.repeat(np.arange(len(agents)), span)
    k = np.concatenate([np.arange(f, l + 1) for f, l in zip(agents.first, agents.last)]) if len(agents) else inst
    ann_token = tokens(rng, len(inst))
    inst_token = tokens(rng, len(agents))
    same_prev = np.concatenate([[False], inst[1:] == inst[:-1]])
    same_next = np.concatenate([inst[:-1] == inst[1:], [False]])

    t_us = sample_us[k]
    centre = np.round(agents.centre_at(inst, t_us), 3)
    ego_xy, _ = ego.pose_at(t_us)
    distance = np.hypot(*(centre[:, :2] - ego_xy).T)
    level = np.clip(4 - (distance // 15).astype(int) - rng.integers(0, 2, size=len(inst)), 1, 4)
    visible_area = agents.size[inst, 1] * agents.size[inst, 2] + agents.size[inst, 0] * agents.size[inst, 2]
    lidar_pts = np.floor(visible_area * 3000.0 / np.maximum(distance, 1.0) ** 2 * rng.uniform(0.5, 1.5, len(inst)))
    lidar_pts = np.where(distance > 50.0, 0, lidar_pts).astype(int)
    radar_pts = np.where(agents.size[inst, 1] > 3.0, np.maximum(0, 6 - distance // 8), 0).astype(int)
    rotation = yaw_quaternion(agents.yaw[inst]).tolist()

    visibility_token = [v.token for v in static.visibility]
    attribute_token = [a.token for a in static.attribute]
    centre_l, size_l = centre.tolist(), agents.size[inst].tolist()
    records = []
    for i in range(len(inst)):
        a = agents.attribute[inst[i]]
        records.append(SampleAnnotation(
            ann_token[i], sample_token[k[i]], inst_token[inst[i]], visibility_token[level[i] - 1],
            [attribute_token[a]] if a >= 0 else [], centre_l[i], size_l[i], rotation[i],
            ann_token[i - 1] if same_prev[i] else "", ann_token[i + 1] if same_next[i] else "",
            int(lidar_pts[i]), int(radar_pts[i])))
    starts = np.concatenate([[0], np.cumsum(span)[:-1]]).astype(int)
    instance = [Instance(inst_token[j], static.category[agents.category[j]].token, int(span[j]),
                         ann_token[starts[j]], ann_token[starts[j] + span[j] - 1]) for j in range(len(agents))]
    by_sample = np.lexsort((inst, k))
    boxes = []
    bounds = np.searchsorted(k[by_sample], np.arange(len(sample_us) + 1))
    for s in range(len(sample_us)):
        rows = by_sample[bounds[s]: bounds[s + 1]]
        ids = inst[rows]
        boxes.append(Boxes(centre[rows], agents.size[ids], agents.yaw[ids], agents.velocity[ids], agents.category[ids]))
    return instance, [records[i] for i in by_sample], boxes


class TableStream:
    """A JSON array written chunk by chunk: `extend(records)` per scene, closed by the context."""

    def __init__(self, handle) -> None:
        self._handle = handle
        self._empty = True
        handle.write(b"[")

    def extend(self, records: list) -> None:
        if not records:
            return
        if not self._empty:
            self._handle.write(b",")
        self._handle.write(msgspec.json.encode(records)[1:-1])
        self._empty = False


@contextlib.contextmanager
def table_stream(path: Path) -> Iterator[TableStream]:
    """Stream a table into `path` atomically: the file appears only when the block succeeds."""
    with atomic_write(path) as handle:
        stream = TableStream(handle)
        yield stream
        handle.write(b"]")
