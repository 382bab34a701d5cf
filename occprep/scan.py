"""Stage 1: the nuScenes tables -> a resolved, indexed `Scan` (no devkit `NuScenes` object).

Every table is walked once; tokens resolve through a `TokenIndex` (sorted 16-byte keys) built once
per table; a token that does not resolve is an error naming the table, field and token. Only the
sample_data an info can name is kept: every reading of the lidar channel (keyframes and sweeps) and
the keyframe camera readings.
`read_scan_tables` (the file edge) reads just what `scan` uses from a version folder.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, FrozenSet, Iterable, List, Optional, Sequence

import numpy as np

from occprep.config import DatasetConfig
from occprep.errors import OccprepError
from occprep.records import (Annotations, Keyframes, Readings, Scan, Scenes, Transforms, inverse_permutation,
                             remap_rows, stack, vector_fields)
from occprep.reporting import Reporter
from occprep.tables import (TABLE_TYPES, EgoPose, SampleAnnotation, SampleData, Tables, field_subset,
                            iter_record_batches, read_at, read_records, read_selected, read_table)
from occprep.tokens import TokenIndex, unresolved

_OTHER = -1
_LIDAR = 0
"""Roles of a sensor channel: other (radar, unused cameras), the lidar, camera c at `1 + c`."""


def transforms(records: Iterable) -> Transforms:
    """The transforms of calibrated_sensor or ego_pose records, with their own lists."""
    records = list(records)
    translations = [r.translation for r in records]
    rotations = [r.rotation for r in records]
    return Transforms(stack(translations, 3), stack(rotations, 4), translations, rotations)


def _frame_indices(tables: Tables, sample_row: TokenIndex, next_row: np.ndarray) -> np.ndarray:
    """Position of every sample on its scene's chain `first_sample_token -> next` (`next_row`: each sample's
    next, resolved)."""
    first = sample_row.rows([scene.first_sample_token for scene in tables.scene],
                            [scene.token for scene in tables.scene], "scene", "first_sample_token").tolist()
    following = next_row.tolist()
    frame_idx = np.full(len(tables.sample), -1, dtype=np.int64)
    for scene, row in zip(tables.scene, first):
        position = 0
        while row >= 0:
            if frame_idx[row] >= 0:
                raise OccprepError(f"sample {tables.sample[row].token!r}: the sample chain of scene {scene.name!r} "
                                   "loops or is shared with another scene; fix sample.next in the tables")
            frame_idx[row] = position
            row, position = following[row], position + 1
    orphans = np.flatnonzero(frame_idx < 0)
    if orphans.size:
        sample = tables.sample[orphans[0]]
        raise OccprepError(f"sample {sample.token!r} is not on the sample chain of its scene "
                           f"{sample.scene_token!r} ({orphans.size} such samples); fix sample.prev/next")
    return frame_idx


def _channel_roles(calibrated_sensor: list, sensor: list, config: DatasetConfig) -> np.ndarray:
    """Role of each calibrated_sensor record (see `_LIDAR`)."""
    channel_of_sensor = {s.token: s.channel for s in sensor}
    role_of_channel = {config.lidar_channel: _LIDAR,
                       **{channel: 1 + c for c, channel in enumerate(config.camera_channels)}}
    roles = np.empty(len(calibrated_sensor), dtype=np.int64)
    for row, calibration in enumerate(calibrated_sensor):
        channel = channel_of_sensor.get(calibration.sensor_token)
        if channel is None:
            raise unresolved("calibrated_sensor", "sensor_token", calibration.sensor_token, calibration.token)
        roles[row] = role_of_channel.get(channel, _OTHER)
    return roles


@dataclass(frozen=True)
class ResolvedAnnotations:
    """The sample_annotation table with its references resolved to rows, N records in file order.

    Built in a worker process on big versions (`read_resolved_annotations`): rows and names travel
    between processes far faster than records, and resolving there takes that work off this process
    (`records.native` gives its arrays numpy's own dtypes back where they arrive).
    """

    sample: np.ndarray
    """(N,) int64, row of the record's sample in the sample table."""
    prev: np.ndarray
    """(N,) int64, row of the instance's previous annotation in this table (-1: none)."""
    next: np.ndarray
    """(N,) int64, row of its next annotation in this table (-1: none)."""
    instance: np.ndarray
    """(N,) int64, row of its instance in the instance table."""
    category: List[str]
    """The category name of each record's instance."""
    translation: np.ndarray
    """(N, 3) float64, m, global frame."""
    size: np.ndarray
    """(N, 3) float64, (w, l, h), m."""
    rotation: np.ndarray
    """(N, 4) float64, (w, x, y, z)."""
    num_lidar_pts: np.ndarray
    """(N,) int64."""
    num_radar_pts: np.ndarray
    """(N,) int64."""
    attribute: Optional[List[str]]
    """Name of each record's first attribute ('None' for none), as mmdet3d's converters take it; None
    unless read (`details`)."""
    visibility: Optional[List[str]]
    """`visibility_token` of each record; None unless read (`details`)."""


@dataclass(frozen=True)
class _AnnotationColumns:
    """sample_annotation records as columns (what `resolve_annotations` reads of them)."""

    token: List[str]
    sample_token: List[str]
    instance_token: List[str]
    prev: List[str]
    next: List[str]
    translation: np.ndarray
    size: np.ndarray
    rotation: np.ndarray
    num_lidar_pts: np.ndarray
    num_radar_pts: np.ndarray
    first_attribute_token: Optional[List[str]]
    """'' where a record has no attribute; None unless read (`details`)."""
    visibility_token: Optional[List[str]]

    @classmethod
    def of(cls, records: list) -> "_AnnotationColumns":
        count = len(records)
        translation, size, rotation = vector_fields(records, {"translation": 3, "size": 3, "rotation": 4})
        return cls(
            token=[a.token for a in records], sample_token=[a.sample_token for a in records],
            instance_token=[a.instance_token for a in records], prev=[a.prev for a in records],
            next=[a.next for a in records], translation=translation, size=size, rotation=rotation,
            num_lidar_pts=np.fromiter((a.num_lidar_pts for a in records), dtype=np.int64, count=count),
            num_radar_pts=np.fromiter((a.num_radar_pts for a in records), dtype=np.int64, count=count),
            first_attribute_token=([a.attribute_tokens[0] if a.attribute_tokens else "" for a in records]
                                   if _has_field(records, "attribute_tokens") else None),
            visibility_token=(_shared([a.visibility_token for a in records])
                              if _has_field(records, "visibility_token") else None))

    @classmethod
    def joined(cls, parts: List["_AnnotationColumns"]) -> "_AnnotationColumns":
        """One table's columns from the columns of its batches, in order."""
        if len(parts) == 1:
            return parts[0]
        values = {}
        for name in cls.__dataclass_fields__:
            first = getattr(parts[0], name)
            if first is None:
                values[name] = None
            elif isinstance(first, np.ndarray):
                values[name] = np.concatenate([getattr(part, name) for part in parts])
            else:
                values[name] = [value for part in parts for value in getattr(part, name)]
        return cls(**values)


def resolve_annotations(records: list, sample_row: TokenIndex, instances: list, categories: list,
                        attributes: list) -> ResolvedAnnotations:
    """sample_annotation `records` (at least `AnnotationFields`; with `Detailed*` ones also their
    attributes and visibility) with every token resolved; an unresolvable one is an error naming it."""
    return _resolved(_AnnotationColumns.of(records), sample_row, instances, categories, attributes)


def _resolved(columns: _AnnotationColumns, sample_row: TokenIndex, instances: list, categories: list,
              attributes: list) -> ResolvedAnnotations:
    category_name = {c.token: c.name for c in categories}
    instance_category = {}
    for instance in instances:
        name = category_name.get(instance.category_token)
        if name is None:
            raise unresolved("instance", "category_token", instance.category_token, instance.token)
        instance_category[instance.token] = name
    owners = columns.token
    ann_row = TokenIndex(owners)
    instance = TokenIndex([i.token for i in instances]).rows(columns.instance_token, owners, "sample_annotation",
                                                             "instance_token")
    return ResolvedAnnotations(
        sample=sample_row.rows(columns.sample_token, owners, "sample_annotation", "sample_token"),
        prev=ann_row.rows(columns.prev, owners, "sample_annotation", "prev"),
        next=ann_row.rows(columns.next, owners, "sample_annotation", "next"),
        instance=instance,
        category=[instance_category[token] for token in columns.instance_token],
        translation=columns.translation, size=columns.size, rotation=columns.rotation,
        num_lidar_pts=columns.num_lidar_pts, num_radar_pts=columns.num_radar_pts,
        attribute=(None if columns.first_attribute_token is None
                   else _attribute_names(columns.first_attribute_token, owners, attributes)),
        visibility=columns.visibility_token)


def read_resolved_annotations(version_dir: Path, details: bool = False) -> ResolvedAnnotations:
    """The sample_annotation table of `version_dir`, resolved against its sample, instance, category and
    attribute tables (`details`: with attributes and visibility). A big file is decoded a batch at a time,
    each batch kept only as columns."""
    fields = DetailedAnnotationFields if details else AnnotationFields
    columns = _AnnotationColumns.joined([_AnnotationColumns.of(batch) for batch in
                                         iter_record_batches(version_dir, "sample_annotation", fields)])
    return _resolved(columns, TokenIndex([s.token for s in read_table(version_dir, "sample")]),
                     read_table(version_dir, "instance"), read_table(version_dir, "category"),
                     read_table(version_dir, "attribute"))


def _annotations(resolved: ResolvedAnnotations, sample_time: np.ndarray, samples: int):
    """Annotations grouped by sample (stable) with devkit `box_velocity`, and per-sample offsets."""
    sample, next_ = resolved.sample, resolved.next
    velocity = _box_velocity(resolved.translation, sample_time[sample], resolved.prev, next_)
    order = np.argsort(sample, kind="stable")
    offsets = np.zeros(samples + 1, dtype=np.int64)
    np.cumsum(np.bincount(sample, minlength=samples), out=offsets[1:])
    rows = order.tolist()
    annotations = Annotations(
        translation=resolved.translation[order],
        size=resolved.size[order],
        rotation=resolved.rotation[order],
        velocity=velocity[order],
        category=[resolved.category[i] for i in rows],
        instance=resolved.instance[order],
        next=remap_rows(next_[order], inverse_permutation(order)),
        attribute=None if resolved.attribute is None else [resolved.attribute[i] for i in rows],
        visibility=None if resolved.visibility is None else [resolved.visibility[i] for i in rows],
        num_lidar_pts=resolved.num_lidar_pts[order],
        num_radar_pts=resolved.num_radar_pts[order],
    )
    return annotations, offsets


def _shared(values: List[str]) -> List[str]:
    """`values` as interned strings, one object per distinct value (across batches too): the decoded records'
    own strings (one per record) would stay scattered over the memory the records held, which then cannot
    go back to the system."""
    return [sys.intern(value) for value in values]


def _has_field(records: list, name: str) -> bool:
    """Whether the (field-subset) records were decoded with field `name` (see `read_scan_tables`); True
    for no records (nothing is missing)."""
    return not records or name in type(records[0]).__struct_fields__


def _attribute_names(first: List[str], owners: List[str], attributes: list) -> List[str]:
    """Name of each annotation's first attribute (`first`: its token, '' for none: 'None'), as mmdet3d's
    converters take it."""
    attribute_name = {a.token: a.name for a in attributes}
    names = [attribute_name.get(token, "None" if not token else None) for token in first]
    if None in names:
        bad = names.index(None)
        raise unresolved("sample_annotation", "attribute_tokens", first[bad], owners[bad])
    return names


def _box_velocity(translation: np.ndarray, time_s: np.ndarray, prev: np.ndarray, next_: np.ndarray,
                  max_time_diff: float = 1.5) -> np.ndarray:
    """nuScenes-devkit `box_velocity` for all boxes: centred difference over the instance's
    neighbouring annotations (one-sided at the track's ends), m/s, global frame; NaN for a
    single-annotation track or a gap longer than `max_time_diff` (doubled when centred)."""
    rows = np.arange(len(translation))
    first = np.where(prev >= 0, prev, rows)
    last = np.where(next_ >= 0, next_, rows)
    time_diff = time_s[last] - time_s[first]
    limit = np.where((prev >= 0) & (next_ >= 0), 2 * max_time_diff, max_time_diff)
    valid = ((prev >= 0) | (next_ >= 0)) & ~(time_diff > limit)
    with np.errstate(divide="ignore", invalid="ignore"):
        velocity = (translation[last] - translation[first]) / time_diff[:, None]
    velocity[~valid] = np.nan
    return velocity


def scan(tables: Tables, config: DatasetConfig, camera_sweeps: bool = False,
         annotations: Optional[Callable[[], ResolvedAnnotations]] = None) -> Scan:
    """Resolve and index `tables` for the channels of `config`; `camera_sweeps` also keeps the cameras'
    non-keyframe readings, linked by `prev` (SparseBEV's camera sweeps). `annotations`: gives the
    sample_annotation table resolved elsewhere (`read_resolved_annotations`; default: from `tables`); it is
    called once the other tables are scanned, so a worker still reading it overlaps that work."""
    sample_tokens = [s.token for s in tables.sample]
    sample_row = TokenIndex(sample_tokens)
    sample_scene = TokenIndex([s.token for s in tables.scene]).rows([s.scene_token for s in tables.sample],
                                                                     sample_tokens, "sample", "scene_token")
    sample_time = np.fromiter((s.timestamp for s in tables.sample), dtype=np.int64, count=len(tables.sample))
    prev_row = sample_row.rows([s.prev for s in tables.sample], sample_tokens, "sample", "prev")
    next_row = sample_row.rows([s.next for s in tables.sample], sample_tokens, "sample", "next")
    frame_idx = _frame_indices(tables, sample_row, next_row)

    calibration_row = {c.token: row for row, c in enumerate(tables.calibrated_sensor)}
    roles = _channel_roles(tables.calibrated_sensor, tables.sensor, config)
    kept: List = []
    kept_calibration: List[int] = []
    for record in tables.sample_data:
        calibration = calibration_row.get(record.calibrated_sensor_token)
        if calibration is None:
            raise unresolved("sample_data", "calibrated_sensor_token", record.calibrated_sensor_token, record.token)
        role = roles[calibration]
        if role == _LIDAR or (role > 0 and (record.is_key_frame or camera_sweeps)):
            kept.append(record)
            kept_calibration.append(calibration)

    count = len(kept)
    kept_tokens = [r.token for r in kept]
    reading_row = TokenIndex(kept_tokens)
    reading_sample = sample_row.rows([r.sample_token for r in kept], kept_tokens, "sample_data", "sample_token")
    linked = (roles[kept_calibration] == _LIDAR) | camera_sweeps
    prev = reading_row.rows([r.prev if link else "" for r, link in zip(kept, linked.tolist())], kept_tokens,
                            "sample_data", "prev")

    # The poses the readings use, in the order of their first use.
    pose_row = TokenIndex([p.token for p in tables.ego_pose]).rows([r.ego_pose_token for r in kept], kept_tokens,
                                                                   "sample_data", "ego_pose_token")
    used, first_use, reading_pose = np.unique(pose_row, return_index=True, return_inverse=True)
    order = np.argsort(first_use)
    pose_records = [tables.ego_pose[row] for row in used[order].tolist()]

    readings = Readings(
        token=kept_tokens,
        filename=[r.filename for r in kept],
        timestamp=np.fromiter((r.timestamp for r in kept), dtype=np.int64, count=count),
        width=np.fromiter((r.width for r in kept), dtype=np.int64, count=count) if _has_field(kept, "width") else None,
        height=np.fromiter((r.height for r in kept), dtype=np.int64, count=count) if _has_field(kept, "height")
        else None,
        calibration=np.array(kept_calibration, dtype=np.int64),
        ego_pose=inverse_permutation(order)[reading_pose.reshape(-1)],
        scene=sample_scene[reading_sample],
        prev=prev,
    )

    # A sample's reading of a channel: its keyframe sample_data (the last one wins, as in the devkit).
    slots = np.full((len(tables.sample), 1 + len(config.camera_channels)), -1, dtype=np.int64)
    key = np.fromiter((r.is_key_frame for r in kept), dtype=bool, count=count)
    key_rows = np.flatnonzero(key)
    slots[reading_sample[key_rows], roles[readings.calibration[key_rows]]] = key_rows
    missing = np.argwhere(slots < 0)
    if missing.size:
        sample, role = missing[0]
        channel = config.lidar_channel if role == _LIDAR else config.camera_channels[role - 1]
        raise OccprepError(f"sample {tables.sample[sample].token!r} has no keyframe {channel} sample_data "
                           f"({len(missing)} such sample/channel pairs); every sample needs the lidar and "
                           f"the {len(config.camera_channels)} cameras of config {config.name!r}")

    resolved = (annotations() if annotations is not None else
                resolve_annotations(tables.sample_annotation, sample_row, tables.instance, tables.category,
                                    tables.attribute))
    annotations, offsets = _annotations(resolved, 1e-6 * sample_time, len(tables.sample))
    return Scan(
        scenes=Scenes(token=[s.token for s in tables.scene], name=[s.name for s in tables.scene],
                      location=scene_locations(tables.scene, tables.log)),
        keyframes=Keyframes(
            token=sample_tokens,
            prev=[s.prev for s in tables.sample],
            next=[s.next for s in tables.sample],
            prev_row=prev_row,
            next_row=next_row,
            scene=sample_scene,
            timestamp=sample_time,
            frame_idx=frame_idx,
            lidar=slots[:, _LIDAR],
            cameras=slots[:, 1:],
            annotations=offsets,
        ),
        readings=readings,
        calibrations=transforms(tables.calibrated_sensor),
        intrinsics=[c.camera_intrinsic for c in tables.calibrated_sensor],
        ego_poses=transforms(pose_records),
        annotations=annotations,
        instance_tokens=[i.token for i in tables.instance],
        category_names=[c.name for c in tables.category],
    )


def scene_locations(scenes: list, logs: list) -> List[str]:
    """`log.location` of every scene record (its `log_token` resolved), the log's own str."""
    location = {log.token: log.location for log in logs}
    missing = next((scene for scene in scenes if scene.log_token not in location), None)
    if missing is not None:
        raise unresolved("scene", "log_token", missing.log_token, missing.token)
    return [location[scene.log_token] for scene in scenes]


SampleDataFields = field_subset(SampleData, "token sample_token ego_pose_token calibrated_sensor_token timestamp "
                                            "is_key_frame filename prev")
EgoPoseFields = field_subset(EgoPose, "token rotation translation")
AnnotationFields = field_subset(SampleAnnotation, "token sample_token instance_token translation size rotation prev "
                                                  "next num_lidar_pts num_radar_pts")
"""The fields of the three big tables that `scan` reads."""
DetailedSampleDataFields = field_subset(SampleData, " ".join(SampleDataFields.__struct_fields__) + " height width")
DetailedAnnotationFields = field_subset(SampleAnnotation, " ".join(AnnotationFields.__struct_fields__)
                                        + " visibility_token attribute_tokens")
"""The same with what the camera-box targets also read: image sizes, visibility and attributes."""


@dataclass(frozen=True)
class ReadingFilter:
    """The sample_data records `scan` can use: the lidar's and the cameras' of a config (and any whose sensor
    does not resolve, so `scan` can name it); a camera's only at keyframes unless `camera_sweeps`."""

    other: FrozenSet[str]
    """calibrated_sensor tokens of the channels the config does not use."""
    camera: FrozenSet[str]
    """calibrated_sensor tokens of its cameras."""
    camera_sweeps: bool

    @classmethod
    def of(cls, calibrated_sensor: list, sensor: list, config: DatasetConfig, camera_sweeps: bool) -> "ReadingFilter":
        roles = _channel_roles(calibrated_sensor, sensor, config).tolist()
        return cls(frozenset(c.token for c, role in zip(calibrated_sensor, roles) if role == _OTHER),
                   frozenset(c.token for c, role in zip(calibrated_sensor, roles) if role > 0), camera_sweeps)

    def wanted(self, sensor_tokens: Sequence[str], key_frames: Sequence[bool]) -> List[bool]:
        """Whether to keep each record, given its `calibrated_sensor_token` and `is_key_frame`."""
        other, camera, sweeps = self.other, self.camera, self.camera_sweeps
        return [token not in other and (key or sweeps or token not in camera)
                for token, key in zip(sensor_tokens, key_frames)]


def _used_poses(version_dir: Path, readings: list, positions: Optional[np.ndarray]) -> list:
    """The ego_pose records `readings` use (all of them unless the readings were selected from a big file,
    at `positions`). nuScenes writes ego_pose.json in sample_data.json's order, one pose per reading: the
    records at the readings' positions are decoded, and kept when they are those poses (a copy of a pose's
    token elsewhere in such a file is not looked for); other tables have the file's records that `readings`
    name looked up by token."""
    if positions is None:
        return read_records(version_dir, "ego_pose", EgoPoseFields)
    poses = read_at(version_dir, "ego_pose", EgoPoseFields, positions)
    if poses is not None and [p.token for p in poses] == [r.ego_pose_token for r in readings]:
        return poses
    used = {r.ego_pose_token for r in readings}
    return read_records(version_dir, "ego_pose", EgoPoseFields, lambda records: [r.token in used for r in records])


def read_scan_tables(version_dir: Path, config: DatasetConfig, reporter: Reporter, camera_sweeps: bool = False,
                     details: bool = False, annotations: bool = True) -> Tables:
    """The tables of `version_dir` as far as `scan` reads them, for speed and memory on big versions.

    Small tables are read whole. Of the three big ones only the fields `scan` reads are decoded
    (`*Fields` records in place of the table records); of big sample_data and ego_pose files only
    the records `scan` can use are kept: the lidar and keyframe camera readings of `config` (and
    any whose sensor does not resolve, so `scan` can name it) and the poses those readings use.
    `camera_sweeps` also keeps the cameras' non-keyframe readings; `details` decodes image sizes,
    visibility and attributes (the `Detailed*Fields`), which only some targets read. Without
    `annotations` the sample_annotation table is left empty (the caller reads it as columns itself).
    """
    big = {"sample_data", "ego_pose", "sample_annotation"}
    with reporter.progress(total=len(TABLE_TYPES), desc=f"tables {Path(version_dir).name}", unit="table") as bar:
        tables = {}
        for name in TABLE_TYPES:
            if name not in big:
                tables[name] = read_records(version_dir, name, TABLE_TYPES[name])
                bar.update()
        readings = ReadingFilter.of(tables["calibrated_sensor"], tables["sensor"], config, camera_sweeps)
        tables["sample_data"], positions = read_selected(
            version_dir, "sample_data", DetailedSampleDataFields if details else SampleDataFields,
            lambda records: readings.wanted([r.calibrated_sensor_token for r in records],
                                            [r.is_key_frame for r in records]))
        bar.update()
        tables["ego_pose"] = _used_poses(version_dir, tables["sample_data"], positions)
        bar.update()
        tables["sample_annotation"] = (read_records(version_dir, "sample_annotation",
                                                    DetailedAnnotationFields if details else AnnotationFields)
                                       if annotations else [])
        bar.update()
    return Tables(**tables)
