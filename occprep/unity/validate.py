"""`occprep check` for Unity datasets: the synthetic schema's contract, as `check.Finding` records.

Checked, file by file (streaming, one file decoded at a time): one `version` across all legacy
files; every annotation/metric definition id, sensor id, ego id and metric capture id resolves;
steps (and their timestamps) increase within a sequence; quaternions have unit length; camera
projections are perspective. Each violation names the file and record; a systematic fault is
listed `MAX_LISTED` times per check, then counted. Faults that break the conversion are errors,
other contract violations warnings (`CONVERSION_CHECKS`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import msgspec
import numpy as np

from occprep.check import STATUSES, Finding
from occprep.errors import OccprepError
from occprep.fileio import read_json
from occprep.unity import perception, solo
from occprep.unity.totables import UNIT_TOLERANCE

MAX_LISTED = 20
CHECKS = {
    "version": "one version across all files",
    "definitions": "annotation and metric definition ids resolve",
    "ids": "sensor, ego and capture ids resolve",
    "steps": "steps increase within each sequence",
    "quaternions": "quaternions have unit length",
    "projection": "camera projections are perspective",
    "files": "files decode",
}
CONVERSION_CHECKS = {"steps", "quaternions", "projection", "files"}
"""Violations of these are errors (create-infos would fail or be wrong); the others are contract
warnings: the converter finds boxes, metrics and cameras without the definition files."""


class _Findings:
    """Collects violations per check (the first MAX_LISTED listed), and an ok line for clean checks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.listed: List[Finding] = []
        self.counts: Counter = Counter()

    def item(self, path: Path, record: str = "") -> Tuple[str, ...]:
        rel = str(path.relative_to(self.root)) if path != self.root else "."
        return (str(self.root), rel) + ((record,) if record else ())

    def add(self, check: str, path: Path, record: str, message: str, fix: str, status: str = "") -> None:
        status = status or ("error" if check in CONVERSION_CHECKS else "warn")
        self.counts[(check, status)] += 1
        if self.counts[(check, status)] <= MAX_LISTED:
            self.listed.append(Finding(self.item(path, record), status, message, fix))

    def read(self, path: Path, type_: type, table: str) -> list:
        """The records of `table` in a JSON file; [] and a 'files' error when it does not decode."""
        try:
            return getattr(read_json(path, type_), table)
        except OccprepError as exc:
            self.add("files", path, "", str(exc).split(": ", 1)[-1], "fix or regenerate the file")
            return []

    def finish(self, checked: Dict[str, str]) -> List[Finding]:
        status = max((s for _, s in self.counts), key=STATUSES.index, default="ok")
        out = [Finding((str(self.root),), status, f"Unity {checked.pop('format')} dataset")]
        for check, title in CHECKS.items():
            statuses = {s: n for (c, s), n in self.counts.items() if c == check}
            if check not in checked and not statuses:
                continue
            for status, n in statuses.items():
                if n > MAX_LISTED:
                    out.append(Finding((str(self.root), f"[{check}]"), status,
                                       f"{n - MAX_LISTED} more {status}(s) of this kind not listed"))
            if not statuses:
                out.append(Finding((str(self.root), f"[{check}]"), "ok", f"{title}: {checked[check]}"))
        return out + self.listed


def _unit_problem(q: List[float]) -> Optional[str]:
    if len(q) != 4:
        return f"has {len(q)} components, not 4 (x, y, z, w)"
    norm = float(np.linalg.norm(q))
    return None if abs(norm - 1) <= UNIT_TOLERANCE else f"{q} has length {norm:.4g}, not 1"


def _perspective_problem(matrix: np.ndarray, projection: str) -> Optional[str]:
    """Why a stored 3×3 projection (column-major) is not a perspective camera, or None."""
    if projection.lower() != "perspective":
        return f"projection {projection!r} is not perspective: nuScenes cameras need a pixel camera matrix"
    if matrix.size != 9:
        return f"projection matrix has {matrix.size} values, not 9"
    p = matrix.reshape(3, 3).T
    off = {"skew P01": p[0, 1], "P10": p[1, 0], "P20": p[2, 0], "P21": p[2, 1]}
    bad = {k: v for k, v in off.items() if abs(v) > 1e-9}
    if bad or p[0, 0] <= 0 or p[1, 1] <= 0:
        return (f"matrix {p.round(6).tolist()} is not a perspective projection (needs P00, P11 > 0 and zero "
                f"{', '.join(bad) or 'off-diagonal terms'})")
    return None


def validate(root: Path) -> List[Finding]:
    """Findings for the Unity dataset at `root` (SOLO or legacy captures)."""
    from occprep.unity.dataset import detect_format

    root = Path(root)
    format_ = detect_format(root)
    if format_ == "solo":
        return _validate_solo(root)
    if format_ == "perception":
        return _validate_legacy(root)
    raise OccprepError(f"{root}: not a Unity dataset")


# ----------------------------------------------------------------------------- SOLO


class _Ids(msgspec.Struct):
    id: str


class _AnnotationDefinitions(msgspec.Struct):
    annotationDefinitions: List[_Ids]


class _MetricDefinitions(msgspec.Struct):
    metricDefinitions: List[_Ids]


def _solo_definitions(run: Path, findings: _Findings) -> Dict[str, Optional[Set[str]]]:
    """Defined ids by kind; None when the definition file is absent (interrupted run)."""
    out: Dict[str, Optional[Set[str]]] = {}
    for kind, name, type_, table in (("annotation", "annotation_definitions.json", _AnnotationDefinitions,
                                      "annotationDefinitions"),
                                     ("metric", "metric_definitions.json", _MetricDefinitions, "metricDefinitions"),
                                     ("sensor", "sensor_definitions.json", solo.SensorDefinitions, "sensorDefinitions")):
        path = run / name
        if not path.is_file():
            findings.add("definitions", path, "", f"{name} is missing, so {kind} ids cannot be resolved",
                         "an interrupted run lacks the definition files; rerun to completion", status="warn")
            out[kind] = None
            continue
        try:
            out[kind] = {d.id for d in getattr(read_json(path, type_), table)}
        except OccprepError as exc:
            findings.add("files", path, "", str(exc), "fix or regenerate the file")
            out[kind] = None
    return out


def _validate_solo(root: Path) -> List[Finding]:
    findings = _Findings(root)
    frames = 0
    for run in solo.find_runs(root):
        defined = _solo_definitions(run, findings)
        for number, folder in solo.sequence_dirs(run):
            previous_time = None
            for step, path in solo.frame_files(folder):
                frames += 1
                try:
                    frame = solo.decode_frame(path)
                except OccprepError as exc:
                    findings.add("files", path, "", str(exc).split(": ", 1)[-1], "fix or regenerate the frame file")
                    continue
                _check_solo_frame(findings, path, frame, number, step, defined)
                if frame.timestamp is not None:
                    if previous_time is not None and frame.timestamp <= previous_time:
                        findings.add("steps", path, "timestamp", f"timestamp {frame.timestamp} is not later than "
                                     f"the previous step's {previous_time}", "timestamps must increase with the step")
                    previous_time = frame.timestamp
    if not frames:
        findings.add("files", root, "", "no frame file (sequence.<N>/step<S>.frame_data.json) in any sequence",
                     "the run holds no frames: point --root-path at a run that captured some")
    return findings.finish({"format": "SOLO", "version": "SOLO files carry no version key",
                            "definitions": f"{frames} frame file(s)", "ids": f"{frames} frame file(s)",
                            "steps": f"{frames} frame file(s)", "quaternions": "cameras and 3D boxes",
                            "projection": "every camera capture", "files": f"{frames} frame file(s)"})


def _check_solo_frame(findings: _Findings, path: Path, frame: solo.Frame, number: int, step: int,
                      defined: Dict[str, Optional[Set[str]]]) -> None:
    if frame.step != step:
        findings.add("steps", path, "step", f"step field {frame.step} disagrees with the file name (step {step})",
                     "rename the file or fix its step")
    if frame.sequence != number:
        findings.add("steps", path, "sequence", f"sequence field {frame.sequence} disagrees with the folder "
                     f"sequence.{number}; the folder is used", "", status="warn")
    for k, metric in enumerate(frame.metrics):
        _check_defined(findings, path, f"metrics[{k}]", "metric", metric.id, defined)
    for c, capture in enumerate(frame.captures):
        where = f"captures[{c}]"
        if defined["sensor"] is not None and capture.id not in defined["sensor"]:
            findings.add("ids", path, where, f"sensor id {capture.id!r} is not in sensor_definitions.json",
                         "add the sensor definition or regenerate the dataset")
        problem = _unit_problem(capture.rotation)
        if problem:
            findings.add("quaternions", path, where, f"rotation {problem}", "store unit quaternions (x, y, z, w)")
        if solo.is_camera(capture.type):
            problem = _perspective_problem(np.asarray(capture.matrix, float), capture.projection)
            if problem:
                findings.add("projection", path, where, problem, "use a perspective camera")
        for a, annotation in enumerate(capture.annotations):
            _check_defined(findings, path, f"{where}.annotations[{a}]", "annotation", annotation.id, defined)
            if annotation.type.endswith("BoundingBox3DAnnotation"):
                _check_boxes(findings, path, f"{where}.annotations[{a}]",
                             lambda: solo._boxes_decoder.decode(annotation.values) or [], lambda b: b.rotation)


def _check_defined(findings: _Findings, path: Path, where: str, kind: str, id_: str,
                   defined: Dict[str, Optional[Set[str]]]) -> None:
    """A finding when a SOLO `kind` ('annotation' or 'metric') id is missing from its definition file."""
    if defined[kind] is not None and id_ not in defined[kind]:
        findings.add("definitions", path, where, f"{kind} id {id_!r} is not in {kind}_definitions.json",
                     "add its definition or regenerate the dataset")


def _check_boxes(findings: _Findings, path: Path, where: str, decode, rotation_of) -> None:
    try:
        boxes = decode()
    except msgspec.ValidationError as exc:
        findings.add("files", path, where, f"3D boxes: {exc}", "fix the annotation values")
        return
    for b, box in enumerate(boxes):
        problem = _unit_problem(rotation_of(box))
        if problem:
            findings.add("quaternions", path, f"{where}.values[{b}]", f"box rotation {problem}",
                         "store unit quaternions (x, y, z, w)")


# ----------------------------------------------------------------------------- legacy captures


class _Versioned(msgspec.Struct):
    version: str = ""


class _Listed(msgspec.Struct):
    id: perception.Id


def _legacy_ids(path: Path, table: str, findings: _Findings) -> Optional[Set[str]]:
    if not path.is_file():
        return None
    try:
        records = read_json(path, Dict[str, object]).get(table) or []
        return {str(r["id"]) for r in records if isinstance(r, dict) and "id" in r}
    except OccprepError as exc:
        findings.add("files", path, "", str(exc), "fix or regenerate the file")
        return None


def _validate_legacy(root: Path) -> List[Finding]:
    findings = _Findings(root)
    versions: Dict[str, List[Path]] = defaultdict(list)
    captures_seen = 0
    for run in perception.find_runs(root):
        for path in sorted(run.glob("*.json")):
            try:
                versions[read_json(path, _Versioned).version].append(path)
            except OccprepError as exc:
                findings.add("files", path, "", str(exc), "fix or regenerate the file")
        ids = {"annotation": _legacy_ids(run / "annotation_definitions.json", "annotation_definitions", findings),
               "metric": _legacy_ids(run / "metric_definitions.json", "metric_definitions", findings),
               "sensor": _legacy_ids(run / "sensors.json", "sensors", findings),
               "ego": _legacy_ids(run / "egos.json", "egos", findings), "box": _box_ids(run)}
        capture_ids: Set[str] = set()
        steps: Dict[str, List[Tuple[int, float, str, Path, str]]] = defaultdict(list)
        for path in perception.numbered_files(run, "captures"):
            for k, capture in enumerate(findings.read(path, perception.CapturesFile, "captures")):
                captures_seen += 1
                capture_ids.add(str(capture.id))
                steps[str(capture.sequence_id)].append((capture.step, capture.timestamp,
                                                        str(capture.sensor.sensor_id), path, f"captures[{k}]"))
                _check_legacy_capture(findings, path, f"captures[{k}]", capture, ids)
        _check_legacy_metrics(findings, run, ids, capture_ids)
        _check_legacy_steps(findings, steps)
    if len(versions) > 1:
        for version, paths in sorted(versions.items()):
            findings.add("version", paths[0], "", f"version {version!r} in {len(paths)} file(s) "
                         f"(e.g. {paths[0].name}); the dataset mixes {', '.join(map(repr, sorted(versions)))}",
                         "all files of a dataset must share one version: regenerate the mixed run")
    only = next(iter(versions), "")
    return findings.finish({"format": f"legacy captures {only!r}", "version": f"{only!r}",
                            "definitions": f"{captures_seen} capture(s)", "ids": f"{captures_seen} capture(s)",
                            "steps": f"{len(steps) if captures_seen else 0} sequence(s)",
                            "quaternions": "sensors, egos and 3D boxes", "projection": "every camera capture",
                            "files": "every JSON file"})


def _check_legacy_capture(findings: _Findings, path: Path, where: str, capture: perception.LegacyCapture,
                          ids: Dict[str, Optional[Set[str]]]) -> None:
    """Ids, quaternions and projection of one capture; `ids` holds the run's defined ids by kind."""
    sensor = capture.sensor
    if ids["sensor"] is not None and str(sensor.sensor_id) not in ids["sensor"]:
        findings.add("ids", path, where, f"sensor_id {sensor.sensor_id!r} is not in sensors.json",
                     "use the id of a sensors.json record (same type: a uuid string)")
    for label, ego_id in (("sensor.ego_id", sensor.ego_id), ("ego.ego_id", capture.ego.ego_id)):
        if ids["ego"] is not None and ego_id is not None and str(ego_id) not in ids["ego"]:
            findings.add("ids", path, where, f"{label} {ego_id!r} is not in egos.json",
                         "use the id of an egos.json record")
    for label, q in (("sensor.rotation", sensor.rotation), ("ego.rotation", capture.ego.rotation)):
        problem = _unit_problem(perception.as_list(q))
        if problem:
            findings.add("quaternions", path, where, f"{label} {problem}", "store unit quaternions (x, y, z, w)")
    if sensor.camera_intrinsic is not None:
        problem = _perspective_problem(np.asarray(sensor.camera_intrinsic, float), sensor.projection)
        if problem:
            findings.add("projection", path, where, f"camera_intrinsic: {problem}",
                         "store Unity's perspective projection (3 columns)")
    decoder = msgspec.json.Decoder(Optional[List[perception.Box3D]])
    for a, annotation in enumerate(capture.annotations or []):
        definition = str(annotation.annotation_definition)
        if ids["annotation"] is not None and definition not in ids["annotation"]:
            findings.add("definitions", path, f"{where}.annotations[{a}]", f"annotation_definition {definition!r} "
                         "is not in annotation_definitions.json", "add its definition or fix the id")
        if definition in ids["box"]:
            _check_boxes(findings, path, f"{where}.annotations[{a}]",
                         lambda: decoder.decode(annotation.values) or [], lambda b: perception.as_list(b.rotation))


def _box_ids(run: Path) -> Set[str]:
    return perception._definition_ids(run / "annotation_definitions.json", perception.AnnotationDefinitions,
                                      "annotation_definitions", perception.BOX_3D_IDS, perception.BOX_3D_NAMES)


def _check_legacy_metrics(findings: _Findings, run: Path, ids: Dict[str, Optional[Set[str]]],
                          capture_ids: Set[str]) -> None:
    for path in perception.numbered_files(run, "metrics"):
        for k, metric in enumerate(findings.read(path, perception.MetricsFile, "metrics")):
            definition = str(metric.metric_definition)
            if ids["metric"] is not None and definition not in ids["metric"]:
                findings.add("definitions", path, f"metrics[{k}]", f"metric_definition {definition!r} is not in "
                             "metric_definitions.json", "add its definition or fix the id")
            if metric.capture_id is not None and str(metric.capture_id) not in capture_ids:
                findings.add("ids", path, f"metrics[{k}]", f"capture_id {metric.capture_id!r} is not a capture "
                             "of this run", "point the metric at an existing capture")


def _check_legacy_steps(findings: _Findings, steps: Dict[str, List[Tuple[int, float, str, Path, str]]]) -> None:
    for sequence, rows in steps.items():
        rows.sort(key=lambda r: (r[0], r[2]))
        for before, after in zip(rows, rows[1:]):
            if (before[0], before[2]) == (after[0], after[2]):
                findings.add("steps", after[3], after[4], f"sequence {sequence!r} step {after[0]} of sensor "
                             f"{after[2]!r} also appears in {before[3].name} {before[4]}", "remove the duplicate")
            elif after[0] > before[0] and after[1] <= before[1]:
                findings.add("steps", after[3], after[4], f"sequence {sequence!r}: step {after[0]} has timestamp "
                             f"{after[1]}, not later than step {before[0]} ({before[1]})",
                             "timestamps must increase with the step")
