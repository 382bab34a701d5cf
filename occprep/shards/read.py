"""A shard folder's scene groups (the map tasks' descriptors) and a group's tables and CAN bus files.

Needs pyarrow (`pip install 'occprep[shards]'`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import functools
import itertools
import os
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from occprep.errors import OccprepError
from occprep.fileio import read_json
from occprep.names import closest
from occprep.shards.files import (FORMAT, GLOBAL_TABLES, ID_KEY, MARKER, ROUTED_TABLES, ROW, Manifest, global_table_path,
                                  index_path, marker_path, part_path, version_dir)
from occprep.scan import ReadingFilter
from occprep.tables import TABLE_TYPES, Tables, read_table


def _pyarrow():
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise OccprepError("reading shards needs the shards extra: pip install 'occprep[shards]'") from None
    return parquet


@dataclass(frozen=True)
class SceneGroup:
    """One map task: scenes of one bucket of a shard folder, by path and position, never the data."""

    shards: str
    version: str
    bucket: int
    row_groups: Tuple[int, ...]
    """The scenes' row groups in every file of the bucket."""
    scene_rows: Tuple[int, ...]
    """The scenes' positions in scene.json."""
    scenes: Tuple[str, ...]
    """The scenes' names."""
    shard_id: str
    """The shard run's `Manifest.id`, which every file read must carry."""

    def describe(self) -> str:
        """The shard and its scenes, for errors."""
        names = ", ".join(self.scenes[:3]) + (f" and {len(self.scenes) - 3} more" if len(self.scenes) > 3 else "")
        return f"shard bucket {self.bucket} of {version_dir(Path(self.shards), self.version)} (scenes {names})"


def open_shards(shards: Path, version: str) -> Manifest:
    """The manifest of a finished shard folder. Raises OccprepError when the version folder is missing or
    unfinished (no `_complete.json`: an interrupted `occprep shard`), naming the fix."""
    folder = version_dir(shards, version)
    if not folder.is_dir():
        if (Path(shards) / MARKER).is_file():
            raise OccprepError(f"--shards {shards} is a version folder of shards; use --shards {Path(shards).parent} "
                               f"--version {Path(shards).name}")
        present = sorted(p.name for p in Path(shards).iterdir() if (p / MARKER).is_file()) \
            if Path(shards).is_dir() else []
        if present:
            meant = closest(version, present)
            hint = f"use --version {meant[0]}" if meant else "use one of them as --version"
            raise OccprepError(f"--shards {shards}: no shards of {version} (present: {', '.join(present)}); {hint}")
        raise OccprepError(f"--shards {shards}: no shards of {version} there; make them first with occprep shard "
                           f"--root-path ROOT --version {version} --canbus DIR --out {shards}")
    if not marker_path(shards, version).is_file():
        raise OccprepError(f"{folder}: not a finished shard folder (no {MARKER}: the shard run was interrupted or "
                           "damaged); run occprep shard again")
    marker = marker_path(shards, version)
    try:
        manifest = read_json(marker, Manifest)
    except OccprepError:
        manifest = None
    if manifest is None or manifest.format != FORMAT:
        raise OccprepError(f"{marker}: not shards of this occprep (format {FORMAT}): made by another version, or "
                           "damaged; run occprep shard --force")
    return manifest


def scene_groups(shards: Path, version: str) -> List[SceneGroup]:
    """One group per bucket, in scene-table order. Raises OccprepError for an unfinished or unreadable folder."""
    manifest = open_shards(shards, version)
    shards = Path(os.path.abspath(shards))  # the same folder from workers in other working directories
    path = index_path(shards, version)
    try:
        table = _pyarrow().read_table(path, columns=["scene_row", "name", "bucket", "row_group"])
    except (OSError, ValueError) as exc:
        raise OccprepError(f"{path}: unreadable shard index ({exc}); run occprep shard again") from None
    _check_id(table.schema, manifest.id, path, "run occprep shard again")
    index = table.to_pydict()
    members: Dict[int, List[Tuple[int, int, str]]] = {}
    for scene_row, name, bucket, row_group in zip(index["scene_row"], index["name"], index["bucket"],
                                                  index["row_group"]):
        members.setdefault(bucket, []).append((row_group, scene_row, name))
    return [SceneGroup(str(shards), version, bucket, *map(tuple, zip(*members[bucket])), manifest.id)
            for bucket in sorted(members)]


def _check_id(schema, shard_id: str, path: Path, fix: str) -> None:
    """Raise OccprepError unless the Parquet `schema` carries the shard run's id."""
    found = (schema.metadata or {}).get(ID_KEY, b"").decode()
    if found != shard_id:
        raise OccprepError(f"{path}: from another shard run than the folder's {MARKER}; {fix}")


@dataclass(frozen=True)
class GroupTables:
    """A scene group's tables: its scenes, their routed records, and every record of the small tables."""

    tables: Tables
    rows: Dict[str, np.ndarray]
    """Routed table -> (N,) int64 position of each of its records in the table file."""
    can_bus: Dict[str, bytes]
    """CAN bus file name (`<scene>_<kind>.json`) -> its content."""
    can_bus_source: str
    """The shard file the CAN bus files came from (for the reasons a scene has none)."""


def read_group(group: SceneGroup, types: Mapping[str, type] = {},  # noqa: B006 - read only
               readings: Optional[Callable[[list, list], ReadingFilter]] = None) -> GroupTables:
    """The tables of `group`; routed table records are made as `types[table]` (a `field_subset` of the table's
    record type; default the whole record). `readings`, given the calibrated_sensor and sensor records,
    says which sample_data records to keep; then only the ego poses those name are kept too (as
    `read_scan_tables` does). Raises OccprepError naming the shard file and its scenes when a file is
    missing or unreadable."""
    shards, version = Path(group.shards), group.version
    tables = {name: _global_table(global_table_path(shards, version, name)) for name in GLOBAL_TABLES}
    tables["scene"] = [tables["scene"][row] for row in group.scene_rows]
    keep = {}
    if readings is not None:
        wanted = readings(tables["calibrated_sensor"], tables["sensor"])
        keep["sample_data"] = lambda table: wanted.wanted(table.column("calibrated_sensor_token").to_pylist(),
                                                          table.column("is_key_frame").to_pylist())
    rows = {}
    for name in ROUTED_TABLES:  # ego_pose after sample_data
        if name == "ego_pose" and readings is not None:
            used = {r.ego_pose_token for r in tables["sample_data"]}
            keep["ego_pose"] = lambda table: [token in used for token in table.column("token").to_pylist()]
        type_ = types.get(name, TABLE_TYPES[name])
        table = _read_rows(group, name, [*type_.__struct_fields__, ROW])
        if name in keep:
            table = table.filter(keep[name](table))
        rows[name] = table.column(ROW).to_numpy()
        tables[name] = list(itertools.starmap(type_, zip(*(_values(table.column(field))
                                                           for field in type_.__struct_fields__))))
    can_bus = _read_rows(group, "can_bus", ["scene_name", "kind", "content"]).to_pydict()
    files = {f"{scene}_{kind}.json": content
             for scene, kind, content in zip(can_bus["scene_name"], can_bus["kind"], can_bus["content"])}
    return GroupTables(Tables(**tables), rows, files, str(part_path(shards, version, "can_bus", group.bucket)))


def _global_table(path: Path) -> list:
    """A small table, read once per worker process while the file is unchanged (tasks share the records;
    none changes them)."""
    try:
        stat = path.stat()
    except OSError:
        raise OccprepError(f"{path}: missing; the shard folder is incomplete: run occprep shard again") from None
    return _read_global_table(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=2 * len(GLOBAL_TABLES))
def _read_global_table(path: Path, size: int, mtime_ns: int) -> list:
    return read_table(path.parent, path.stem)


def _values(column) -> list:
    """A Parquet column as Python values; lists of numbers of one length go through numpy (far faster)."""
    import pyarrow as pa

    if pa.types.is_list(column.type) and pa.types.is_floating(column.type.value_type) and len(column):
        column = column.combine_chunks()
        lengths = np.diff(column.offsets.to_numpy())
        if len(lengths) and (lengths == lengths[0]).all() and column.null_count == 0:
            return column.values.to_numpy().reshape(len(column), int(lengths[0])).tolist()
    if pa.types.is_integer(column.type) and column.null_count == 0:
        return column.to_numpy().tolist()
    return column.to_pylist()


def _read_rows(group: SceneGroup, table: str, columns: List[str]):
    """The group's row groups of one bucket file, as a pyarrow Table of `columns`."""
    path = part_path(Path(group.shards), group.version, table, group.bucket)
    try:
        parquet = _pyarrow().ParquetFile(path)
        _check_id(parquet.schema_arrow, group.shard_id, path, f"{group.describe()}: run occprep shard --force")
        return parquet.read_row_groups(list(group.row_groups), columns=columns)
    except FileNotFoundError:
        raise OccprepError(f"{path}: missing; {group.describe()}: run occprep shard again") from None
    except (OSError, ValueError, KeyError) as exc:
        raise OccprepError(f"{path}: unreadable shard ({exc}); {group.describe()}: run occprep shard again") from None
