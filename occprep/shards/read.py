"""A shard folder's scene groups (the map tasks' descriptors) and a group's tables and CAN bus files.

Needs pyarrow (`pip install 'occprep[shards]'`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

import msgspec
import numpy as np

from occprep.errors import OccprepError
from occprep.fileio import read_json
from occprep.shards.files import (GLOBAL_TABLES, MARKER, ROUTED_TABLES, ROW, Manifest, index_path, marker_path,
                                  part_path, version_dir)
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

    def describe(self) -> str:
        """The shard and its scenes, for errors."""
        names = ", ".join(self.scenes[:3]) + (f" and {len(self.scenes) - 3} more" if len(self.scenes) > 3 else "")
        return f"shard bucket {self.bucket} of {version_dir(Path(self.shards), self.version)} (scenes {names})"


def open_shards(shards: Path, version: str) -> Manifest:
    """The manifest of a finished shard folder. Raises OccprepError when the version folder is missing or
    unfinished (no `_complete.json`: an interrupted `occprep shard`)."""
    folder = version_dir(shards, version)
    if not folder.is_dir():
        present = sorted(p.name for p in Path(shards).iterdir() if p.is_dir()) if Path(shards).is_dir() else []
        hint = f" (present: {', '.join(present)})" if present else ""
        raise OccprepError(f"--shards {shards}: no folder {folder}{hint}; run occprep shard --version {version} "
                           f"--out {shards} first")
    if not marker_path(shards, version).is_file():
        raise OccprepError(f"{folder}: not a finished shard folder (no {MARKER}: the shard run was interrupted); "
                           "run occprep shard again")
    return read_json(marker_path(shards, version), Manifest)


def scene_groups(shards: Path, version: str) -> List[SceneGroup]:
    """One group per bucket, in scene-table order. Raises OccprepError for an unfinished or unreadable folder."""
    open_shards(shards, version)
    path = index_path(shards, version)
    try:
        index = _pyarrow().read_table(path, columns=["scene_row", "name", "bucket", "row_group"]).to_pydict()
    except (OSError, ValueError) as exc:
        raise OccprepError(f"{path}: unreadable shard index ({exc}); run occprep shard again") from None
    members: Dict[int, List[Tuple[int, int, str]]] = {}
    for scene_row, name, bucket, row_group in zip(index["scene_row"], index["name"], index["bucket"],
                                                  index["row_group"]):
        members.setdefault(bucket, []).append((row_group, scene_row, name))
    return [SceneGroup(str(shards), version, bucket, *map(tuple, zip(*members[bucket]))) for bucket in sorted(members)]


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


def read_group(group: SceneGroup, types: Mapping[str, type] = {}) -> GroupTables:  # noqa: B006 - read only
    """The tables of `group`; routed table records decode as `types[table]` (a `field_subset` of the table's
    record type; default the whole record). Raises OccprepError naming the shard file and its scenes when
    a file is missing or unreadable."""
    shards, version = Path(group.shards), group.version
    tables = {name: read_table(version_dir(shards, version) / "tables", name) for name in GLOBAL_TABLES}
    tables["scene"] = [tables["scene"][row] for row in group.scene_rows]
    rows = {}
    for name in ROUTED_TABLES:
        type_ = types.get(name, TABLE_TYPES[name])
        columns = _read_rows(group, name, [*type_.__struct_fields__, ROW])
        rows[name] = np.asarray(columns.pop(ROW), dtype=np.int64)
        try:
            tables[name] = msgspec.convert([dict(zip(columns, values)) for values in zip(*columns.values())],
                                           List[type_])
        except msgspec.ValidationError as exc:
            raise OccprepError(f"{part_path(shards, version, name, group.bucket)}: unexpected content ({exc}); "
                               f"{group.describe()}: run occprep shard again") from None
    can_bus = _read_rows(group, "can_bus", ["scene_name", "kind", "content"])
    files = {f"{scene}_{kind}.json": content
             for scene, kind, content in zip(can_bus["scene_name"], can_bus["kind"], can_bus["content"])}
    return GroupTables(Tables(**tables), rows, files, str(part_path(shards, version, "can_bus", group.bucket)))


def _read_rows(group: SceneGroup, table: str, columns: List[str]) -> Dict[str, list]:
    """Column -> values of the group's row groups of one bucket file."""
    path = part_path(Path(group.shards), group.version, table, group.bucket)
    try:
        return _pyarrow().ParquetFile(path).read_row_groups(list(group.row_groups), columns=columns).to_pydict()
    except FileNotFoundError:
        raise OccprepError(f"{path}: missing; {group.describe()}: run occprep shard again") from None
    except (OSError, ValueError, KeyError) as exc:
        raise OccprepError(f"{path}: unreadable shard ({exc}); {group.describe()}: run occprep shard again") from None
