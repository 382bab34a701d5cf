"""What a shard folder holds (format 2: format 1 with the run's id in every Parquet file). Written only by
`occprep.shards.write`, read by `occprep.shards.read`.

    SHARDS/<version>/
        _complete.json                 the completion marker, written last (`Manifest`)
        index.parquet                  one row per scene, in scene-table order (`INDEX_COLUMNS`)
        tables/<name>.json             the small tables (`GLOBAL_TABLES`), verbatim copies
        <name>/part-<bucket>.parquet   the routed tables (`ROUTED_TABLES`) and `can_bus`

Scenes are cut, in scene-table order, into buckets of `Manifest.scenes_per_bucket`; bucket b holds
scenes b*n ... b*n + n - 1. In every file of bucket b, row group i holds the rows of the bucket's i-th
scene (empty row groups included), in the order of the table file. A routed table's columns are the
record's official fields (`occprep.tables`) and `_row`, the record's position in its table file
(int64): rows of a scene group keep their global order and indices (an instance's row is UniAD's
`gt_inds`). Types: str -> string, int -> int64, bool -> bool, list of float -> list<double>, list of
str -> list<string>. `can_bus` rows are (scene_name, kind, content): the bytes of the file
`can_bus/<scene_name>_<kind>.json` for each kind in `CAN_BUS_KINDS` that exists; a scene the dataset
blacklists has none.

A record reaches its scene: sample by `scene_token`; sample_annotation and sample_data by
`sample_token`; instance by its annotations (an instance no annotation names is left out, and counted
in the manifest); ego_pose by the sample_data that name it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import msgspec

FORMAT = 2
GLOBAL_TABLES = ("attribute", "calibrated_sensor", "category", "log", "map", "scene", "sensor", "visibility")
"""Tables every scene group reads whole (small: sensors, calibrations, categories, logs, scenes)."""
ROUTED_TABLES = ("sample", "sample_annotation", "sample_data", "ego_pose", "instance")
"""Tables cut by scene."""
CAN_BUS_KINDS = ("pose", "steeranglefeedback")
"""The CAN bus message files a shard keeps (the ones create-infos reads)."""
ROW = "_row"
"""Column: the record's position in its table file."""
INDEX_COLUMNS = ("scene_row", "token", "name", "bucket", "row_group")
"""index.parquet: position in scene.json (int64), scene token and name (string), bucket and row group (int32),
then `rows_<table>` (int64) for each routed table and `can_bus`."""
MARKER = "_complete.json"
ID_KEY = b"occprep.shards.id"
"""Schema metadata key of every Parquet file of a shard folder: the run's `Manifest.id`."""
SHARD_NAMES = frozenset({MARKER, "index.parquet", "tables", *ROUTED_TABLES, "can_bus"})
"""Everything a version folder of shards holds: a folder with anything else is not one (never replaced)."""


class Manifest(msgspec.Struct):
    """`_complete.json`: what was sharded, from which inputs; its presence means the version is complete."""

    format: int
    version: str
    scenes: int
    buckets: int
    scenes_per_bucket: int
    rows: Dict[str, int]
    """Table (and 'can_bus') -> rows written."""
    unrouted: Dict[str, int]
    """Table -> records that reach no scene (instances without annotations, unused ego poses)."""
    inputs: Dict[str, Tuple[int, int]]
    """Input file (absolute path) -> (size in bytes, mtime in ns): a re-run with the same inputs skips the version."""
    canbus: Optional[str]
    """The folder holding can_bus/ that was read, or None (no CAN bus given)."""
    id: str
    """sha256 (hex) of FORMAT, version, scenes_per_bucket, canbus and inputs: the same inputs give the same id.
    Every Parquet file of the folder carries it in its schema metadata under `ID_KEY`, so a file from another
    shard run is recognised."""
    outputs: Dict[str, int]
    """Every file written (path relative to the version folder) -> its size in bytes: a re-run skips the
    version only when they are all still there, at these sizes."""


def version_dir(shards: Path, version: str) -> Path:
    return Path(shards) / version


def part_path(shards: Path, version: str, table: str, bucket: int) -> Path:
    """The bucket file of a routed table (or 'can_bus')."""
    return version_dir(shards, version) / table / f"part-{bucket:05d}.parquet"


def global_table_path(shards: Path, version: str, table: str) -> Path:
    return version_dir(shards, version) / "tables" / f"{table}.json"


def index_path(shards: Path, version: str) -> Path:
    return version_dir(shards, version) / "index.parquet"


def marker_path(shards: Path, version: str) -> Path:
    return version_dir(shards, version) / MARKER


def row_count_columns() -> List[str]:
    """index.parquet's per-table row counts, after `INDEX_COLUMNS`."""
    return [f"rows_{table}" for table in (*ROUTED_TABLES, "can_bus")]
