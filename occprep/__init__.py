"""occprep: nuScenes-format datasets to temporal info pickles, plus occupancy/flow ground truth.

The Python API, for notebooks and other pipelines (imported on first use, so `import occprep` stays
cheap):

- `create_infos`, `CreateOptions`: the `create-infos` command on a dataset root.
- `shard_version`: `occprep shard`, one version's tables and CAN bus cut into per-scene Parquet shards.
- `scene_groups`, `SceneGroup`, `read_group`: a shard folder's map tasks and a task's tables.
- `ScanTask`, `scan_group`, `gather_scan`, `gather_can_bus`, `InfoTask`, `write_group`: what the engine
  runs on each scene group, and the gather.
- `create_infos_from_shards`: `create-infos --shards`, on any engine.
- `LocalEngine`, `DaskEngine`, `make_engine`: where the map runs.
- `load_pickle`, `load_infos`: read an info pickle (or a `--sharded-output` index) without running code.
"""

import importlib

__version__ = "0.1.0"

_API = {
    "create_infos": "occprep.create", "CreateOptions": "occprep.create",
    "shard_version": "occprep.shards.write",
    "scene_groups": "occprep.shards.read", "SceneGroup": "occprep.shards.read", "read_group": "occprep.shards.read",
    "ScanTask": "occprep.sharded", "scan_group": "occprep.sharded", "gather_scan": "occprep.sharded",
    "gather_can_bus": "occprep.sharded", "InfoTask": "occprep.sharded", "write_group": "occprep.sharded",
    "create_infos_from_shards": "occprep.sharded",
    "LocalEngine": "occprep.engines", "DaskEngine": "occprep.engines", "make_engine": "occprep.engines",
    "load_pickle": "occprep.pickles", "load_infos": "occprep.inspection",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'occprep' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)
