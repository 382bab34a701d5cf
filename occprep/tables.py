"""The 13 nuScenes tables as typed records, with their official field names and order.

Records encode back to JSON in the official key order, so the same types serve reading a
dataset, synthesising one and exporting simulator output as nuScenes tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import msgspec
import numpy as np

from occprep.errors import OccprepError
from occprep.fileio import atomic_write, iter_list_chunks, read_json, read_raw_records


class Attribute(msgspec.Struct, gc=False):
    token: str
    name: str
    description: str


class CalibratedSensor(msgspec.Struct, gc=False):
    """Sensor frame -> ego frame: translation, m; rotation, quaternion (w, x, y, z)."""

    token: str
    sensor_token: str
    translation: List[float]
    rotation: List[float]
    camera_intrinsic: List[List[float]]
    """3x3 pixel camera matrix; empty for non-camera sensors."""


class Category(msgspec.Struct, gc=False):
    token: str
    name: str
    description: str


class EgoPose(msgspec.Struct, gc=False):
    """Ego frame -> global frame at `timestamp` (µs): translation, m; rotation (w, x, y, z)."""

    token: str
    timestamp: int
    rotation: List[float]
    translation: List[float]


class Instance(msgspec.Struct, gc=False):
    token: str
    category_token: str
    nbr_annotations: int
    first_annotation_token: str
    last_annotation_token: str


class Log(msgspec.Struct, gc=False):
    token: str
    logfile: str
    vehicle: str
    date_captured: str
    location: str


class Map(msgspec.Struct, gc=False):
    category: str
    token: str
    filename: str
    log_tokens: List[str]


class Sample(msgspec.Struct, gc=False):
    """A keyframe; `timestamp` in µs; `prev`/`next` are '' at the scene's ends."""

    token: str
    timestamp: int
    prev: str
    next: str
    scene_token: str


class SampleAnnotation(msgspec.Struct, gc=False):
    """A 3D box in the global frame: centre, m; size (w, l, h), m; rotation (w, x, y, z)."""

    token: str
    sample_token: str
    instance_token: str
    visibility_token: str
    attribute_tokens: List[str]
    translation: List[float]
    size: List[float]
    rotation: List[float]
    prev: str
    next: str
    num_lidar_pts: int
    num_radar_pts: int


class SampleData(msgspec.Struct, gc=False):
    """One sensor reading; `filename` is relative to the dataset root; `timestamp` in µs."""

    token: str
    sample_token: str
    ego_pose_token: str
    calibrated_sensor_token: str
    timestamp: int
    fileformat: str
    is_key_frame: bool
    height: int
    width: int
    filename: str
    prev: str
    next: str


class Scene(msgspec.Struct, gc=False):
    token: str
    log_token: str
    nbr_samples: int
    first_sample_token: str
    last_sample_token: str
    name: str
    description: str


class Sensor(msgspec.Struct, gc=False):
    token: str
    channel: str
    modality: str


class Visibility(msgspec.Struct, gc=False):
    description: str
    token: str
    level: str


TABLE_TYPES = {
    "attribute": Attribute,
    "calibrated_sensor": CalibratedSensor,
    "category": Category,
    "ego_pose": EgoPose,
    "instance": Instance,
    "log": Log,
    "map": Map,
    "sample": Sample,
    "sample_annotation": SampleAnnotation,
    "sample_data": SampleData,
    "scene": Scene,
    "sensor": Sensor,
    "visibility": Visibility,
}
"""Table name -> record type, for all 13 tables of a nuScenes version folder."""


def read_table(version_dir: Path, name: str) -> list:
    """All records of table `name` (`<version_dir>/<name>.json`)."""
    return read_json(Path(version_dir) / f"{name}.json", List[TABLE_TYPES[name]])


def field_subset(struct: type, names: str) -> type:
    """A Struct with only the fields `names` (space-separated) of table record `struct`, same types:
    decoding into it skips the other fields."""
    types = {field.name: field.type for field in msgspec.structs.fields(struct)}
    return msgspec.defstruct(f"{struct.__name__}Subset", [(name, types[name]) for name in names.split()], gc=False)


SPLIT_DECODE_BYTES = 256 << 20
"""Files at least this big are decoded in batches (far less memory)."""
DECODE_BYTES = 32 << 20
"""Bytes per batch of such a split decode."""
DECODE_BATCH = 65536
"""Records per batch where a big file is read from its raw records (`read_at`, and after a run of bytes
that does not decode)."""


def _is_big(path: Path) -> bool:
    return path.is_file() and path.stat().st_size >= SPLIT_DECODE_BYTES


def _raw_batches(path: Path, first: int = 0) -> Iterator[Tuple[int, List[msgspec.Raw]]]:
    """(index of the first record, raw records) of the JSON list in `path` from record `first` on,
    `DECODE_BATCH` at a time; the file's pages before a batch leave the resident memory once the caller asks
    for the next one."""
    raws, release = read_raw_records(path)
    for start in range(first, len(raws), DECODE_BATCH):
        yield start, raws[start:start + DECODE_BATCH]
        release(start + DECODE_BATCH)


def iter_record_batches(version_dir: Path, name: str, type_: type) -> Iterator[list]:
    """Records of table `name` decoded as `type_` (see `field_subset`): big files about `DECODE_BYTES` at a
    time (`_record_batches`), so that a caller reducing each batch never holds all records; smaller files
    whole."""
    path = Path(version_dir) / f"{name}.json"
    if not _is_big(path):
        yield read_json(path, List[type_])
        return
    for _, records in _record_batches(path, type_):
        yield records


def _record_batches(path: Path, type_: type) -> Iterator[Tuple[int, list]]:
    """(index of the first record, records decoded as `type_`) of big file `path`, about `DECODE_BYTES` at a
    time (`iter_list_chunks`, one pass over the bytes). Where a run does not decode, the rest of the file is
    read from its raw records, which also names a fault exactly."""
    decoder, done = msgspec.json.Decoder(List[type_]), 0
    try:
        for start, records in iter_list_chunks(path, decoder, DECODE_BYTES):
            yield start, records
            done = start + len(records)
        return
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    for start, parts in _raw_batches(path, done):
        yield start, _decode_raw(decoder, parts, path, start)


def read_records(version_dir: Path, name: str, type_: type, keep: Optional[Callable[[list], List[bool]]] = None
                 ) -> list:
    """Records of table `name` decoded as `type_`, a Struct with a subset of the table's fields.

    `keep` (records -> one bool each) saves memory on big files: they are decoded a batch at a time
    (`iter_record_batches`) and only the records `keep` flags are kept. Smaller files are decoded whole and
    returned whole (callers filter as they need anyway).
    """
    return read_selected(version_dir, name, type_, keep)[0]


def read_selected(version_dir: Path, name: str, type_: type, keep: Optional[Callable[[list], List[bool]]] = None
                  ) -> Tuple[list, Optional[np.ndarray]]:
    """`read_records` and, for a big file read with `keep`, the (K,) int64 positions in the file of the
    records it returns (else None: every record is returned)."""
    path = Path(version_dir) / f"{name}.json"
    if keep is None or not _is_big(path):
        return read_json(path, List[type_]), None
    kept, positions = [], []
    for start, records in _record_batches(path, type_):
        chosen = np.flatnonzero(keep(records))
        kept.extend([records[i] for i in chosen.tolist()])
        positions.append(start + chosen)
    return kept, np.concatenate(positions) if positions else np.empty(0, dtype=np.int64)


def read_at(version_dir: Path, name: str, type_: type, positions: np.ndarray) -> Optional[list]:
    """The records at `positions` (ascending) of table `name`, decoded as `type_`; None when the file holds
    fewer records."""
    path = Path(version_dir) / f"{name}.json"
    raws, release = read_raw_records(path)
    if len(positions) and positions[-1] >= len(raws):
        return None
    decoder = msgspec.json.Decoder(List[type_])
    records = []
    for start in range(0, len(positions), DECODE_BATCH):
        batch = positions[start:start + DECODE_BATCH]
        records.extend(_decode_raw(decoder, [raws[i] for i in batch.tolist()], path, int(batch[0])))
        release(int(batch[-1]) + 1)
    return records


def _decode_raw(decoder: msgspec.json.Decoder, raws: List[msgspec.Raw], path: Path, start: int) -> list:
    """Decode raw JSON records as one list (errors name the file and the batch's first record)."""
    parts = list(raws)
    parts[0] = b"[" + bytes(parts[0])
    parts[-1] = bytes(parts[-1]) + b"]"
    try:
        return decoder.decode(b",".join(parts))
    except msgspec.ValidationError as exc:
        raise OccprepError(f"{path}: unexpected content in the records from number {start}: {exc}") from None


def write_table(version_dir: Path, name: str, records: list) -> None:
    """Write `records` as `<version_dir>/<name>.json`, atomically, in the official key order."""
    with atomic_write(Path(version_dir) / f"{name}.json") as handle:
        handle.write(msgspec.json.encode(records))


class Tables(msgspec.Struct):
    """All 13 tables of one nuScenes version, as lists of records in file order."""

    attribute: List[Attribute]
    calibrated_sensor: List[CalibratedSensor]
    category: List[Category]
    ego_pose: List[EgoPose]
    instance: List[Instance]
    log: List[Log]
    map: List[Map]
    sample: List[Sample]
    sample_annotation: List[SampleAnnotation]
    sample_data: List[SampleData]
    scene: List[Scene]
    sensor: List[Sensor]
    visibility: List[Visibility]


def read_tables(version_dir: Path) -> Tables:
    """Read the 13 tables of `version_dir` (e.g. `data/nuscenes/v1.0-trainval`)."""
    return Tables(**{name: read_table(version_dir, name) for name in TABLE_TYPES})


def write_tables(version_dir: Path, tables: Tables) -> None:
    """Write the 13 tables of `tables` into `version_dir`."""
    for name in TABLE_TYPES:
        write_table(version_dir, name, getattr(tables, name))
