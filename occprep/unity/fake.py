"""Generated Unity datasets (SOLO and legacy 0.0.1/0.0.2) with known ground truth, for tests and benchmarks.

`FakeWorld` is a deterministic scene in Unity's world frame (left-handed, y up, quaternions
x, y, z, w): an ego driving straight at a fixed heading, cameras on it pitched down, and boxes
moving at constant velocities. Each box's rendered pixels are counted by casting a ray through
every pixel centre, then scaled by a fixed visible share per object (`VISIBLE_SHARES`) that stands
in for occlusion by other objects. The writers store it the way each generation does (boxes in the
camera frame, legacy sensors relative to the ego or in the world, images as blank PNGs).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import msgspec
import numpy as np

from occprep.unity.convert import pixel_intrinsic, quat_multiply_xyzw, rotate_xyzw
from occprep.unity.images import blank_png

PROJECTION = (1.299259, 0.0, 0.0, 0.0, 1.73234534, 0.0, 0.0, 0.0, -1.0006001)
"""A perspective projection as Unity stores it (column-major 3×3)."""
BOX_3D_LEGACY_ID = "0bfbe00d-00fa-4555-88d1-471b58449f5c"
VISIBLE_SHARES = (1.0, 0.5, 0.7)
"""Share of its rendered pixels object k keeps visible (cycling); the last object is always hidden (0)."""


def yaw_xyzw(angle: float) -> np.ndarray:
    """Unity rotation by `angle` rad about +y (up), (x, y, z, w)."""
    return np.array([0.0, np.sin(angle / 2), 0.0, np.cos(angle / 2)])


def pitch_xyzw(angle: float) -> np.ndarray:
    """Unity rotation by `angle` rad about +x (right), (x, y, z, w); positive looks down."""
    return np.array([np.sin(angle / 2), 0.0, 0.0, np.cos(angle / 2)])


def inverse_xyzw(q: np.ndarray) -> np.ndarray:
    return np.asarray(q, float) * np.array([-1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class FakeWorld:
    """Poses at each step of one sequence; every quantity in the Unity world frame."""

    seed: int = 0
    n_objects: int = 4
    dt: float = 0.05
    """Seconds between steps."""
    cameras: Tuple[Tuple[str, float], ...] = (("camera", 0.0),)
    """(sensor id, yaw relative to the ego, rad)."""
    width: int = 160
    height: int = 120
    ego_speed: float = 8.0
    heading: float = 0.3
    """Ego heading (yaw about +y), rad; sequence N adds 0.1·N."""

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def ego(self, step: int) -> Tuple[np.ndarray, np.ndarray]:
        """Ego (position, rotation) at `step`."""
        q = yaw_xyzw(self.heading + 0.1 * self.seed)
        forward = rotate_xyzw(q, np.array([0.0, 0.0, 1.0]))
        return np.array([float(self.seed), 0.0, 0.0]) + forward * self.ego_speed * step * self.dt, q

    def camera(self, step: int, yaw: float) -> Tuple[np.ndarray, np.ndarray]:
        """Camera (position, rotation) at `step`: 1.5 m up, 0.5 m ahead, pitched down 0.1 rad."""
        p, q = self.ego(step)
        q_cam = quat_multiply_xyzw(q, quat_multiply_xyzw(yaw_xyzw(yaw), pitch_xyzw(0.1)))
        return p + rotate_xyzw(q, np.array([0.0, 1.5, 0.5])), q_cam

    def objects(self, step: int):
        """(instance ids, labels, positions (N,3), rotations (N,4), sizes (N,3), velocities (N,3), visible shares)."""
        rng = self._rng()
        n = self.n_objects
        p0, q0 = self.ego(0)
        offsets = np.stack([rng.uniform(-6, 6, n), np.full(n, 0.8), rng.uniform(8, 40, n)], axis=1)
        start = p0 + rotate_xyzw(np.broadcast_to(q0, (n, 4)), offsets)
        velocity = np.stack([rng.uniform(-2, 2, n), np.zeros(n), rng.uniform(0, 10, n)], axis=1)
        yaw = rng.uniform(-np.pi, np.pi, n)
        sizes = np.stack([rng.uniform(0.5, 2.5, n), rng.uniform(1.0, 2.0, n), rng.uniform(0.5, 5.0, n)], axis=1)
        labels = [("Car", "Pedestrian", "Crate")[k % 3] for k in range(n)]
        shares = [0.0 if k == n - 1 else VISIBLE_SHARES[k % len(VISIBLE_SHARES)] for k in range(n)]
        rotations = np.stack([yaw_xyzw(a) for a in yaw])
        return ([str(1000 * self.seed + k) for k in range(n)], labels, start + velocity * step * self.dt,
                rotations, sizes, velocity, shares)

    def camera_boxes(self, step: int, yaw: float) -> Tuple[List[str], List[str], np.ndarray, np.ndarray, np.ndarray, list]:
        """The objects as stored for one camera: translation and rotation in its frame, visible pixels."""
        ids, labels, position, rotation, size, _, shares = self.objects(step)
        p_cam, q_cam = self.camera(step, yaw)
        to_cam = np.broadcast_to(inverse_xyzw(q_cam), rotation.shape)
        translation, rotation = rotate_xyzw(to_cam, position - p_cam), quat_multiply_xyzw(to_cam, rotation)
        rendered = self.rendered_pixels(translation, rotation, size)
        return ids, labels, translation, rotation, size, [round(s * r) for s, r in zip(shares, rendered.tolist())]

    def rendered_pixels(self, translation: np.ndarray, rotation: np.ndarray, size: np.ndarray,
                        margin: int = 0) -> np.ndarray:
        """(N,) pixel centres of the image whose ray hits each box (camera frame, Unity axes), each
        box alone: a ray-box slab test, independent of the converter's projection code. `margin`
        widens the image by that many image widths (heights) on every side, same camera matrix."""
        k = pixel_intrinsic(PROJECTION, self.width, self.height)
        u, v = np.meshgrid(np.arange(-margin * self.width, (1 + margin) * self.width) + 0.5,
                           np.arange(-margin * self.height, (1 + margin) * self.height) + 0.5)
        rays = np.stack([(u - k[0, 2]) / k[0, 0], (k[1, 2] - v) / k[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
        to_box = inverse_xyzw(rotation)[:, None]
        origin = rotate_xyzw(to_box, -translation[:, None])
        direction = rotate_xyzw(to_box, rays[None])
        with np.errstate(divide="ignore", invalid="ignore"):
            low, high = (-size[:, None] / 2 - origin) / direction, (size[:, None] / 2 - origin) / direction
        enter, leave = np.minimum(low, high).max(axis=-1), np.maximum(low, high).min(axis=-1)
        return np.count_nonzero(leave >= np.maximum(enter, 0.0), axis=1)


def _encode(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.encode(obj))


def solo_frame(world: FakeWorld, sequence: int, step: int, with_timestamp: bool = True) -> dict:
    """One SOLO frame document."""
    captures, metrics = [], []
    for sensor_id, yaw in world.cameras:
        p, q = world.camera(step, yaw)
        ids, labels, t, r, s, pixels = world.camera_boxes(step, yaw)
        values = [{"instanceId": int(i), "labelId": 1, "labelName": lbl, "translation": t[k].tolist(),
                   "size": s[k].tolist(), "rotation": r[k].tolist(), "velocity": [0.0] * 3, "acceleration": [0.0] * 3}
                  for k, (i, lbl) in enumerate(zip(ids, labels))]
        captures.append({
            "@type": "type.unity.com/unity.solo.RGBCamera", "id": sensor_id, "description": "generated",
            "position": p.tolist(), "rotation": q.tolist(), "velocity": [0.0] * 3, "acceleration": [0.0] * 3,
            "filename": f"step{step}.{sensor_id}.png", "imageFormat": "Png",
            "dimension": [float(world.width), float(world.height)], "projection": "Perspective",
            "matrix": list(PROJECTION),
            "annotations": [{"@type": "type.unity.com/unity.solo.BoundingBox3DAnnotation", "id": "bounding box 3D",
                             "sensorId": sensor_id, "description": "generated", "values": values}]})
        metrics.append({"@type": "type.unity.com/unity.solo.RenderedObjectInfoMetric", "id": "RenderedObjectInfo",
                        "sensorId": sensor_id, "annotationId": "", "description": "generated",
                        "values": [{"labelId": 1, "instanceId": int(i), "color": [0, 0, 0, 255],
                                    "visiblePixels": px} for i, px in zip(ids, pixels)]})
    frame = {"frame": step, "sequence": sequence, "step": step}
    if with_timestamp:
        frame["timestamp"] = step * world.dt
    return {**frame, "captures": captures, "metrics": metrics}


def write_solo(root: Path, n_sequences: int = 2, n_steps: int = 4, *, definitions: bool = True,
               timestamps: bool = True, images: bool = False, **world_options) -> List[FakeWorld]:
    """A SOLO dataset under `root`; sequence N uses `FakeWorld(seed=N)`. Returns the worlds."""
    root = Path(root)
    worlds = [FakeWorld(seed=n, **world_options) for n in range(n_sequences)]
    for n, world in enumerate(worlds):
        for step in range(n_steps):
            _encode(root / f"sequence.{n}" / f"step{step}.frame_data.json", solo_frame(world, n, step, timestamps))
            if images:
                for sensor_id, _ in world.cameras:
                    (root / f"sequence.{n}" / f"step{step}.{sensor_id}.png").write_bytes(
                        blank_png(world.width, world.height))
    if definitions:
        world = worlds[0]
        _encode(root / "metadata.json", {"perceptionVersion": "1.0.0", "totalFrames": n_sequences * n_steps,
                                         "totalSequences": n_sequences, "sensors": [c for c, _ in world.cameras]})
        _encode(root / "sensor_definitions.json", {"sensorDefinitions": [
            {"@type": "type.unity.com/unity.solo.RGBCamera", "id": c, "modality": "camera",
             "simulationDeltaTime": world.dt} for c, _ in world.cameras]})
        _encode(root / "annotation_definitions.json", {"annotationDefinitions": [
            {"@type": "type.unity.com/unity.solo.BoundingBox3DAnnotation", "id": "bounding box 3D",
             "description": "generated"}]})
        _encode(root / "metric_definitions.json", {"metricDefinitions": [
            {"@type": "type.unity.com/unity.solo.RenderedObjectInfoMetric", "id": "RenderedObjectInfo",
             "description": "generated"}]})
    return worlds


def write_legacy(root: Path, version: str = "0.0.1", n_sequences: int = 2, n_steps: int = 4, *,
                 runs: int = 1, captures_per_file: int = 3, seed: int = 0, **world_options) -> Dict[str, List[FakeWorld]]:
    """Legacy captures under `root/Dataset<guid>` (one per run), files in shuffled order.

    "0.0.1" writes `egos.json`, the real ego pose and sensors relative to it; "0.0.2" the dummy
    ego at the origin and sensors in the world. Returns run folder name → worlds by sequence.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    out: Dict[str, List[FakeWorld]] = {}
    for run in range(runs):
        guid = uuid.UUID(int=int(rng.integers(2**62))).hex
        run_dir, rgb = root / f"Dataset{guid}", f"RGB{guid}"
        worlds = [FakeWorld(seed=100 * run + n, **world_options) for n in range(n_sequences)]
        ids = {"box": BOX_3D_LEGACY_ID if version == "0.0.1" else "bounding box 3D",
               "info": "5ba92024-b3b7-41a7-9d3f-c03a6a8ddd01" if version == "0.0.1" else "RenderedObjectInfo"}
        captures, metrics = [], []
        for world in worlds:
            sequence_id = uuid.UUID(int=int(rng.integers(2**62))).hex
            for step in range(n_steps):
                ego_p, ego_q = world.ego(step)
                for sensor_id, yaw in world.cameras:
                    cam_p, cam_q = world.camera(step, yaw)
                    if version == "0.0.1":
                        sensor_t, sensor_q = cam_p - ego_p, quat_multiply_xyzw(cam_q, inverse_xyzw(ego_q))
                        ego = {"ego_id": "ego-1", "translation": ego_p.tolist(), "rotation": ego_q.tolist(),
                               "velocity": None, "acceleration": None}
                    else:
                        sensor_t, sensor_q = cam_p, cam_q
                        ego = {"ego_id": "ego", "translation": [0.0] * 3, "rotation": [0.0, 0.0, 0.0, 1.0],
                               "velocity": None, "acceleration": None}
                    box_ids, labels, t, r, s, pixels = world.camera_boxes(step, yaw)
                    capture_id = uuid.UUID(int=int(rng.integers(2**62))).hex
                    filename = f"{rgb}/rgb_{len(captures)}.png"
                    (root / rgb).mkdir(parents=True, exist_ok=True)
                    (root / filename).write_bytes(blank_png(world.width, world.height))
                    values = [{"label_id": 1, "label_name": lbl, "instance_id": int(i),
                               "translation": dict(zip("xyz", t[k].tolist())), "size": dict(zip("xyz", s[k].tolist())),
                               "rotation": dict(zip("xyzw", r[k].tolist())), "velocity": {"x": 0, "y": 0, "z": 0},
                               "acceleration": {"x": 0, "y": 0, "z": 0}} for k, (i, lbl) in enumerate(zip(box_ids, labels))]
                    captures.append({
                        "id": capture_id, "sequence_id": sequence_id, "step": step, "timestamp": step * world.dt,
                        "sensor": {"sensor_id": sensor_id, "ego_id": "ego-1" if version == "0.0.1" else "ego",
                                   "modality": "camera", "translation": sensor_t.tolist(),
                                   "rotation": sensor_q.tolist(),
                                   "camera_intrinsic": np.reshape(PROJECTION, (3, 3)).tolist(),
                                   "projection": "perspective"},
                        "ego": ego, "filename": filename, "format": "PNG",
                        "annotations": [{"id": uuid.UUID(int=int(rng.integers(2**62))).hex,
                                         "annotation_definition": ids["box"], "filename": None, "values": values}]})
                    metrics.append({"capture_id": capture_id, "annotation_id": None, "sequence_id": sequence_id,
                                    "step": step, "metric_definition": ids["info"],
                                    "values": [{"label_id": 1, "instance_id": int(i), "visible_pixels": px}
                                               for i, px in zip(box_ids, pixels)]})
        order = rng.permutation(len(captures))
        for f, start in enumerate(range(0, len(captures), captures_per_file)):
            _encode(run_dir / f"captures_{f:03d}.json",
                    {"version": version, "captures": [captures[i] for i in order[start:start + captures_per_file]]})
        _encode(run_dir / "metrics_000.json", {"version": version, "metrics": metrics})
        _encode(run_dir / "annotation_definitions.json", {"version": version, "annotation_definitions": [
            {"id": ids["box"], "name": "bounding box 3D", "description": "generated", "format": "JSON",
             "spec": [{"label_id": 1, "label_name": "Car"}]}]})
        _encode(run_dir / "metric_definitions.json", {"version": version, "metric_definitions": [
            {"id": ids["info"], "name": "rendered object info", "description": "generated"}]})
        _encode(run_dir / "sensors.json", {"version": version, "sensors": [
            {"id": c, "ego_id": "ego-1" if version == "0.0.1" else "ego", "modality": "camera"}
            for c, _ in worlds[0].cameras]})
        if version == "0.0.1":
            _encode(run_dir / "egos.json", {"version": version, "egos": [{"id": "ego-1", "description": "generated"}]})
        out[run_dir.name] = worlds
    return out
