"""SOLO reader (Unity Perception ≥ 1.0): `sequence.<N>/step<S>.frame_data.json`, one frame per file.

Streams: one frame file is decoded at a time (typed, unknown keys skipped) and reduced to
compact `Capture` records. The definition files are optional (an interrupted run lacks them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple, Union

import msgspec

from occprep.errors import OccprepError
from occprep.fileio import read_json
from occprep.unity.records import CameraBoxes, Capture

STEP_FILE = re.compile(r"step(\d+)\.frame_data\.json$")
SEQUENCE_DIR = re.compile(r"sequence\.(\d+)$")

Id = Union[int, str]


class Values(msgspec.Struct):
    """An annotation of a capture or a metric of a frame: typed, its values left raw until needed."""

    type: str = msgspec.field(name="@type", default="")
    id: str = ""
    sensorId: str = ""
    values: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


class SoloCapture(msgspec.Struct):
    type: str = msgspec.field(name="@type", default="")
    id: str = ""
    position: List[float] = []
    rotation: List[float] = []
    filename: str = ""
    dimension: List[float] = []
    projection: str = "Perspective"
    matrix: List[float] = []
    annotations: List[Values] = []


class Frame(msgspec.Struct):
    sequence: int
    step: int
    frame: int = 0
    timestamp: Optional[float] = None
    captures: List[SoloCapture] = []
    metrics: List[Values] = []


class Box3D(msgspec.Struct):
    instanceId: Id
    translation: List[float]
    size: List[float]
    rotation: List[float]
    labelName: str = ""
    labelId: int = 0


class RenderedObject(msgspec.Struct):
    instanceId: Id
    visiblePixels: int = 0


class SensorDefinition(msgspec.Struct):
    id: str
    modality: str = ""
    simulationDeltaTime: Optional[float] = None


class SensorDefinitions(msgspec.Struct):
    sensorDefinitions: List[SensorDefinition] = []


_frame_decoder = msgspec.json.Decoder(Frame)
_boxes_decoder = msgspec.json.Decoder(Optional[List[Box3D]])
_rendered_decoder = msgspec.json.Decoder(Optional[List[RenderedObject]])


def is_camera(capture_type: str) -> bool:
    """True for SOLO camera captures (`type.unity.com/unity.solo.RGBCamera` and kin)."""
    return "camera" in capture_type.lower()


def find_runs(root: Path) -> List[Path]:
    """SOLO run folders under `root`: `root` itself or its children holding `sequence.<N>/` folders."""
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [d for d in candidates if any(SEQUENCE_DIR.match(p.name) and p.is_dir() for p in d.iterdir())]


def sequence_dirs(run: Path) -> List[Tuple[int, Path]]:
    """(N, folder) of every `sequence.<N>` in `run`, by N."""
    found = ((SEQUENCE_DIR.match(p.name), p) for p in run.iterdir() if p.is_dir())
    return sorted((int(m.group(1)), p) for m, p in found if m)


def frame_files(sequence_dir: Path) -> List[Tuple[int, Path]]:
    """(S, file) of every `step<S>.frame_data.json` in a sequence folder, by S."""
    found = ((STEP_FILE.match(p.name), p) for p in sequence_dir.iterdir())
    return sorted((int(m.group(1)), p) for m, p in found if m)


def decode_frame(path: Path) -> Frame:
    """Decode one frame file, naming the file and position on malformed content."""
    try:
        return _frame_decoder.decode(path.read_bytes())
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise OccprepError(f"{path}: not a SOLO frame file: {exc}") from None


def step_seconds(run: Path) -> Dict[str, float]:
    """Sensor id → `simulationDeltaTime` from `sensor_definitions.json` ({} when absent)."""
    path = run / "sensor_definitions.json"
    if not path.is_file():
        return {}
    return {d.id: d.simulationDeltaTime for d in read_json(path, SensorDefinitions).sensorDefinitions
            if d.simulationDeltaTime is not None}


def _visible_pixels(frame: Frame, path: Path) -> Dict[str, Dict[str, int]]:
    """Sensor id → instance id → rendered pixels, from the frame's RenderedObjectInfo metrics."""
    out: Dict[str, Dict[str, int]] = {}
    for metric in frame.metrics:
        if metric.type.endswith("RenderedObjectInfoMetric"):
            try:
                objects = _rendered_decoder.decode(metric.values) or []
            except msgspec.ValidationError as exc:
                raise OccprepError(f"{path}: metric {metric.id!r}: {exc}") from None
            out.setdefault(metric.sensorId, {}).update({str(o.instanceId): o.visiblePixels for o in objects})
    return out


def _boxes(capture: SoloCapture, visible: Optional[Dict[str, int]], where: str) -> CameraBoxes:
    boxes: List[Box3D] = []
    for annotation in capture.annotations:
        if annotation.type.endswith("BoundingBox3DAnnotation"):
            try:
                boxes.extend(_boxes_decoder.decode(annotation.values) or [])
            except msgspec.ValidationError as exc:
                raise OccprepError(f"{where} annotation {annotation.id!r}: {exc}") from None
    return CameraBoxes.from_rows([str(b.instanceId) for b in boxes], [b.labelName or str(b.labelId) for b in boxes],
                                 [b.translation + b.size + b.rotation for b in boxes], visible, where)


def read_frame(path: Path, root: Path, run: str, sequence: int, deltas: Dict[str, float]) -> List[Capture]:
    """The camera captures of one frame file of folder `sequence.<sequence>`, as `Capture` records.

    The folder names the sequence (real output can repeat the frame's own `sequence` number across
    folders); paths are relative to `root`.
    """
    frame = decode_frame(path)
    visible = _visible_pixels(frame, path)
    folder = path.parent.relative_to(root)
    captures = []
    for index, capture in enumerate(frame.captures):
        if not is_camera(capture.type):
            continue
        where = f"{path} captures[{index}]"
        timestamp = frame.timestamp
        if timestamp is None:
            if capture.id not in deltas:
                raise OccprepError(f"{where}: the frame has no timestamp and sensor_definitions.json gives no "
                                   f"simulationDeltaTime for sensor {capture.id!r}; restore the definition files")
            timestamp = frame.step * deltas[capture.id]
        if len(capture.position) != 3 or len(capture.rotation) != 4 or len(capture.matrix) != 9 \
                or len(capture.dimension) != 2:
            raise OccprepError(f"{where}: a camera capture needs position[3], rotation[4], matrix[9], dimension[2]")
        captures.append(Capture(
            source=where, run=run, sequence=str(sequence), step=frame.step, timestamp=float(timestamp),
            sensor_id=capture.id, filename=str(folder / capture.filename),
            width=int(capture.dimension[0]), height=int(capture.dimension[1]),
            camera_position=tuple(capture.position), camera_rotation=tuple(capture.rotation),
            ego_position=None, ego_rotation=None, projection=capture.projection, matrix=tuple(capture.matrix),
            boxes=_boxes(capture, visible.get(capture.id, {}) if visible else None, where)))
    return captures


class _LabelSpec(msgspec.Struct):
    label_name: str = ""


class _AnnotationDefinition(msgspec.Struct):
    spec: List[_LabelSpec] = []


class _SensorDefinition(msgspec.Struct):
    id: Id = ""


class _Definitions(msgspec.Struct):
    annotationDefinitions: List[_AnnotationDefinition] = []
    sensorDefinitions: List[_SensorDefinition] = []


def defined_names(root: Path) -> Tuple[Set[str], Set[str]]:
    """(label names, sensor ids) the definition files of every SOLO run under `root` declare
    (empty when a run has none: they are optional)."""
    labels: Set[str] = set()
    sensors: Set[str] = set()
    for run_dir in find_runs(Path(root)):
        for name in ("annotation_definitions.json", "sensor_definitions.json"):
            if (run_dir / name).is_file():
                found = read_json(run_dir / name, _Definitions)
                labels.update(spec.label_name for d in found.annotationDefinitions for spec in d.spec if spec.label_name)
                sensors.update(str(d.id) for d in found.sensorDefinitions)
    return labels, sensors


def read_captures(root: Path) -> Iterator[Capture]:
    """Every camera capture of every SOLO run under `root`, sequence by sequence, step by step."""
    root = Path(root)
    for run_dir in find_runs(root):
        run = "" if run_dir == root else str(run_dir.relative_to(root))
        deltas = step_seconds(run_dir)
        for sequence, sequence_dir in sequence_dirs(run_dir):
            for _, path in frame_files(sequence_dir):
                yield from read_frame(path, root, run, sequence, deltas)
