"""Legacy captures reader (Unity Perception ≤ 0.9 "0.0.1" and 1.0 "0.0.2").

A run is a `Dataset*` folder of `captures_NNN.json`, `metrics_NNN.json` and definition files
(`egos.json` only in 0.0.1). Files are decoded one at a time (typed, unknown keys skipped);
captures come back sorted by (run, sequence, step) whatever order the files hold them in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple, Union

import msgspec
import numpy as np

from occprep.errors import OccprepError
from occprep.fileio import read_json
from occprep.unity.convert import quat_multiply_xyzw
from occprep.unity.images import image_size
from occprep.unity.records import CameraBoxes, Capture

Id = Union[int, str]
BOX_3D_IDS = {"0bfbe00d-00fa-4555-88d1-471b58449f5c", "bounding box 3D"}
BOX_3D_NAMES = {"bounding box 3d", "3d bounding box"}
RENDERED_INFO_IDS = {"RenderedObjectInfo", "5ba92024-b3b7-41a7-9d3f-c03a6a8ddd01"}
RENDERED_INFO_NAMES = {"rendered object info", "renderedobjectinfo"}
NUMBERED = re.compile(r"(captures|metrics)_(\d+)\.json$")


class XYZW(msgspec.Struct):
    x: float
    y: float
    z: float
    w: Optional[float] = None

    def as_list(self) -> List[float]:
        return [self.x, self.y, self.z] + ([] if self.w is None else [self.w])


Vector = Union[List[float], XYZW]
"""Legacy files store vectors either as arrays or as {x, y, z[, w]} objects."""


def as_list(vector: Vector) -> List[float]:
    return vector.as_list() if isinstance(vector, XYZW) else list(vector)


class SensorPose(msgspec.Struct):
    sensor_id: Id
    translation: Vector
    rotation: Vector
    ego_id: Optional[Id] = None
    modality: str = ""
    camera_intrinsic: Optional[List[List[float]]] = None
    projection: str = "perspective"


class EgoPose(msgspec.Struct):
    translation: Vector
    rotation: Vector
    ego_id: Optional[Id] = None


class Annotation(msgspec.Struct):
    annotation_definition: Id
    id: Optional[Id] = None
    filename: Optional[str] = None
    values: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


class LegacyCapture(msgspec.Struct):
    id: Id
    sequence_id: Id
    step: int
    timestamp: float
    sensor: SensorPose
    ego: EgoPose
    filename: str
    annotations: Optional[List[Annotation]] = None


class CapturesFile(msgspec.Struct):
    captures: List[LegacyCapture]
    version: str = ""


class Metric(msgspec.Struct):
    metric_definition: Id
    capture_id: Optional[Id] = None
    values: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


class MetricsFile(msgspec.Struct):
    metrics: List[Metric]
    version: str = ""


class Definition(msgspec.Struct):
    id: Id
    name: str = ""


class AnnotationDefinitions(msgspec.Struct):
    annotation_definitions: List[Definition]


class MetricDefinitions(msgspec.Struct):
    metric_definitions: List[Definition]


class Box3D(msgspec.Struct):
    instance_id: Id
    translation: Vector
    size: Vector
    rotation: Vector
    label_name: str = ""
    label_id: Optional[Id] = None


class RenderedObject(msgspec.Struct):
    instance_id: Id
    visible_pixels: int = 0


def find_runs(root: Path) -> List[Path]:
    """Legacy run folders: `root` itself when it holds captures files, else its `Dataset*` folders."""
    if any(NUMBERED.match(p.name) for p in root.glob("captures_*.json")):
        return [root]
    return sorted(p for p in root.glob("**/Dataset*") if p.is_dir() and any(p.glob("captures_*.json")))


def numbered_files(run: Path, kind: str) -> List[Path]:
    """`captures_NNN.json` or `metrics_NNN.json` of a run, by number."""
    found = ((NUMBERED.match(p.name), p) for p in run.glob(f"{kind}_*.json"))
    return [p for m, p in sorted(((m, p) for m, p in found if m), key=lambda mp: int(mp[0].group(2)))]


def _definition_ids(path: Path, type_: type, table: str, known_ids: set, known_names: set) -> set:
    """Ids (as str) of the definitions matching `known_ids`/`known_names`, plus `known_ids`."""
    ids = set(known_ids)
    if path.is_file():
        for definition in getattr(read_json(path, type_), table):
            if definition.name.lower() in known_names:
                ids.add(str(definition.id))
    return ids


def _rendered_pixels(run: Path) -> Dict[str, Dict[str, int]]:
    """Capture id → instance id → visible pixels, from every metrics file of a run."""
    metric_ids = _definition_ids(run / "metric_definitions.json", MetricDefinitions, "metric_definitions",
                                 RENDERED_INFO_IDS, RENDERED_INFO_NAMES)
    decoder = msgspec.json.Decoder(Optional[List[RenderedObject]])
    out: Dict[str, Dict[str, int]] = {}
    for path in numbered_files(run, "metrics"):
        for index, metric in enumerate(read_json(path, MetricsFile).metrics):
            if str(metric.metric_definition) in metric_ids:
                try:
                    objects = decoder.decode(metric.values) or []
                except msgspec.ValidationError as exc:
                    raise OccprepError(f"{path} metrics[{index}]: {exc}") from None
                out.setdefault(str(metric.capture_id), {}).update(
                    {str(o.instance_id): o.visible_pixels for o in objects})
    return out


def _boxes(capture: LegacyCapture, box_ids: set, visible: Optional[Dict[str, int]], where: str) -> CameraBoxes:
    decoder = msgspec.json.Decoder(Optional[List[Box3D]])
    boxes: List[Box3D] = []
    for annotation in capture.annotations or []:
        if str(annotation.annotation_definition) in box_ids:
            try:
                boxes.extend(decoder.decode(annotation.values) or [])
            except msgspec.ValidationError as exc:
                raise OccprepError(f"{where} annotation {annotation.id!r}: {exc}") from None
    return CameraBoxes.from_rows([str(b.instance_id) for b in boxes], [b.label_name or str(b.label_id) for b in boxes],
                                 [as_list(b.translation) + as_list(b.size) + as_list(b.rotation) for b in boxes],
                                 visible, where)


def read_run(run: Path, root: Path) -> List[Capture]:
    """The camera captures of one run, sorted by (sequence, step, sensor)."""
    run_name = "" if run == root else str(run.relative_to(root))
    has_ego = (run / "egos.json").is_file()
    box_ids = _definition_ids(run / "annotation_definitions.json", AnnotationDefinitions,
                              "annotation_definitions", BOX_3D_IDS, BOX_3D_NAMES)
    rendered = _rendered_pixels(run)
    sizes: Dict[str, Tuple[int, int]] = {}
    captures = []
    for path in numbered_files(run, "captures"):
        for index, capture in enumerate(read_json(path, CapturesFile).captures):
            sensor = capture.sensor
            if sensor.camera_intrinsic is None:
                continue
            where = f"{path} captures[{index}]"
            sensor_id = str(sensor.sensor_id)
            if sensor_id not in sizes:
                sizes[sensor_id] = image_size(root / capture.filename)
            ego_t, ego_q = np.array(as_list(capture.ego.translation)), np.array(as_list(capture.ego.rotation))
            sensor_t, sensor_q = np.array(as_list(sensor.translation)), np.array(as_list(sensor.rotation))
            if ego_t.shape != (3,) or sensor_t.shape != (3,) or ego_q.shape != (4,) or sensor_q.shape != (4,):
                raise OccprepError(f"{where}: sensor and ego need translation[3] and rotation[4]")
            intrinsic = np.asarray(sensor.camera_intrinsic, float)
            if intrinsic.shape != (3, 3):
                raise OccprepError(f"{where}: camera_intrinsic must be 3×3")
            captures.append(Capture(
                source=where, run=run_name, sequence=str(capture.sequence_id), step=capture.step,
                timestamp=float(capture.timestamp), sensor_id=sensor_id, filename=capture.filename,
                width=sizes[sensor_id][0], height=sizes[sensor_id][1],
                camera_position=tuple(ego_t + sensor_t), camera_rotation=tuple(quat_multiply_xyzw(sensor_q, ego_q)),
                ego_position=tuple(ego_t) if has_ego else None, ego_rotation=tuple(ego_q) if has_ego else None,
                projection=sensor.projection, matrix=tuple(intrinsic.ravel()),
                boxes=_boxes(capture, box_ids, rendered.get(str(capture.id), {}) if rendered else None, where)))
    return sorted(captures, key=lambda c: (c.sequence, c.step, c.sensor_id))


class _LabelSpec(msgspec.Struct):
    label_name: str = ""


class _LabelledDefinition(msgspec.Struct):
    spec: List[_LabelSpec] = []


class _Labels(msgspec.Struct):
    annotation_definitions: List[_LabelledDefinition] = []


class _Sensor(msgspec.Struct):
    id: Id


class _Sensors(msgspec.Struct):
    sensors: List[_Sensor] = []


def defined_names(root: Path) -> Tuple[Set[str], Set[str]]:
    """(label names, sensor ids) that `annotation_definitions.json` and `sensors.json` of every
    legacy run under `root` declare."""
    labels: Set[str] = set()
    sensors: Set[str] = set()
    for run in find_runs(Path(root)):
        if (run / "annotation_definitions.json").is_file():
            definitions = read_json(run / "annotation_definitions.json", _Labels).annotation_definitions
            labels.update(spec.label_name for d in definitions for spec in d.spec if spec.label_name)
        if (run / "sensors.json").is_file():
            sensors.update(str(sensor.id) for sensor in read_json(run / "sensors.json", _Sensors).sensors)
    return labels, sensors


def read_captures(root: Path) -> Iterator[Capture]:
    """Every camera capture of every legacy run under `root`, run by run, sorted within a run."""
    root = Path(root)
    for run in find_runs(root):
        yield from read_run(run, root)
