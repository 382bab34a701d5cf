"""create-infos over shards: a map of `scan_group` over scene groups, then one `Scan` gathered from the parts.

Each task reads one scene group (`occprep.shards.read`), runs `scan` on it and reads its CAN bus files;
it returns a `ScanPart`: that scan, in the group's own rows, with the global row of every keyframe,
reading and instance. `gather_scan` joins the parts into the `Scan` the whole tables give, row for
row; from there the single-machine stages run unchanged (temporal, targets, writer), so the pickles
are byte-identical to `create_infos`'. Strings that the single-machine scan shares between records
(category, attribute and location names, calibration lists) are taken from this process's own copy
of the small tables, so the pickles' references between equal objects are the same too.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import msgspec
import numpy as np

from occprep.canbus import can_bus_of_contents, merged_can_bus
from occprep.config import dataset_config
from occprep.create import (ALL_VERSIONS, CreateOptions, VersionInfos, check_config_names, empty_splits,
                            infos_from_scan, output_dirs, summarize, write_outputs)
from occprep.errors import OccprepError
from occprep.fileio import Staging, replace_folder
from occprep.records import (Annotations, CanBus, Keyframes, Readings, Scan, Scenes, Transforms, inverse_permutation,
                             native, remap_rows)
from occprep.reporting import Reporter
from occprep.scan import (AnnotationFields, DetailedAnnotationFields, DetailedSampleDataFields, EgoPoseFields,
                          ReadingFilter, SampleDataFields, scan, scene_locations, transforms)
from occprep.shards.files import marker_path, version_dir
from occprep.shards.read import SceneGroup, open_shards, read_group, scene_groups
from occprep.splits import SplitPlan, official_plan, plan_from_file
from occprep.tables import read_table
from occprep.workers import gc_paused


@dataclass(frozen=True)
class ScanTask:
    """One map task: a scene group and what the chosen targets need read (`read_scan_tables`' flags)."""

    group: SceneGroup
    config_name: str
    camera_sweeps: bool
    details: bool
    steering: bool


@dataclass(frozen=True)
class ScanPart:
    """A scene group's `Scan` in its own rows (but instances by their row in instance.json, as the boxes' UniAD
    `gt_inds`; `instance_tokens` is then a dict of those rows), the global rows of its rows, and its CAN bus
    messages."""

    scan: Scan
    sample_rows: np.ndarray
    """(S,) int64: each keyframe's position in sample.json."""
    reading_rows: np.ndarray
    """(R,) int64: each reading's position in sample_data.json."""
    scene_rows: np.ndarray
    """(N,) int64: each scene's position in scene.json."""
    can_bus: CanBus


def scan_group(task: ScanTask) -> ScanPart:
    """Read and scan one scene group (runs in a worker): its `Scan` in the group's own rows (S keyframes,
    R readings, A boxes; units and frames as in `occprep.records`), the positions of its keyframes (S,) and
    readings (R,) in their table files, and its CAN bus messages. Raises OccprepError naming the shard and
    its scenes for a missing or corrupt shard, and as `scan` does for inconsistent tables (a token of the
    group that resolves to no record of it)."""
    config = dataset_config(task.config_name)
    types = {"sample_data": DetailedSampleDataFields if task.details else SampleDataFields,
             "sample_annotation": DetailedAnnotationFields if task.details else AnnotationFields,
             "ego_pose": EgoPoseFields}
    with gc_paused():
        group = read_group(task.group, types,
                           lambda calibrated_sensor, sensor: ReadingFilter.of(calibrated_sensor, sensor, config,
                                                                              task.camera_sweeps))
        scanned = scan(group.tables, config, task.camera_sweeps)
    reading_row = dict(zip((r.token for r in group.tables.sample_data), group.rows["sample_data"].tolist()))
    can_bus = can_bus_of_contents(group.can_bus, group.can_bus_source, scanned.scenes.name, config,
                                  Reporter("create-infos", quiet=True), task.steering)
    instance_rows = group.rows["instance"]
    scanned = replace(scanned, annotations=replace(scanned.annotations,
                                                   instance=instance_rows[scanned.annotations.instance]),
                      instance_tokens=dict(zip(instance_rows.tolist(), scanned.instance_tokens)))
    return ScanPart(scan=scanned, sample_rows=group.rows["sample"],
                    reading_rows=np.array([reading_row[token] for token in scanned.readings.token], dtype=np.int64),
                    scene_rows=np.array(task.group.scene_rows, dtype=np.int64), can_bus=can_bus)


@dataclass(frozen=True)
class GlobalTables:
    """The small tables, read once by the process that gathers (see the module docstring)."""

    scene: list
    log: list
    calibrated_sensor: list
    category: list
    attribute: list
    sensor: list
    instances: int
    """Records of instance.json."""

    @classmethod
    def of(cls, shards: Path, version: str, instances: int) -> "GlobalTables":
        folder = version_dir(shards, version) / "tables"
        return cls(*(read_table(folder, name) for name in ("scene", "log", "calibrated_sensor", "category",
                                                            "attribute", "sensor")), instances)


def _offsets(sizes: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])


def gather_scan(parts: List[ScanPart], tables: GlobalTables) -> Scan:
    """The `Scan` of the whole tables from the `ScanPart`s of all scene groups of one shard folder (any
    order), row for row what `scan` gives on the whole tables: keyframes in sample-table order, readings
    in sample_data order, ego poses in order of first use, boxes by keyframe. Raises OccprepError when the
    parts do not hold every scene of `tables` exactly once."""
    scans = [part.scan for part in parts]
    start_s = _offsets([len(s.keyframes.token) for s in scans])
    start_r = _offsets([len(s.readings.token) for s in scans])
    start_e = _offsets([len(s.ego_poses.translation) for s in scans])
    start_a = _offsets([len(s.annotations.instance) for s in scans])

    def joined(values: List[np.ndarray], starts: Optional[np.ndarray] = None) -> np.ndarray:
        """Concatenated part arrays; with `starts`, part-local rows made rows of the concatenation."""
        if starts is not None:
            values = [np.where(v >= 0, v + start, -1) for v, start in zip(values, starts)]
        return np.concatenate(values)

    scene_row = joined([part.scene_rows for part in parts])
    scene_of = [part.scene_rows for part in parts]
    keyframe_order = np.argsort(joined([part.sample_rows for part in parts]), kind="stable")
    keyframe_rank = inverse_permutation(keyframe_order)
    reading_order = np.argsort(joined([part.reading_rows for part in parts]), kind="stable")
    reading_rank = inverse_permutation(reading_order)
    pose_of_reading = joined([s.readings.ego_pose for s in scans], start_e)[reading_order]
    firsts = np.unique(pose_of_reading, return_index=True)
    pose_order = firsts[0][np.argsort(firsts[1], kind="stable")]
    pose_rank = inverse_permutation(pose_order)

    def keyframe_column(name: str, starts: Optional[np.ndarray] = None) -> np.ndarray:
        return joined([getattr(s.keyframes, name) for s in scans], starts)[keyframe_order]

    def reading_column(name: str) -> Optional[np.ndarray]:
        values = [getattr(s.readings, name) for s in scans]
        return None if values[0] is None else joined(values)[reading_order]

    box_counts = np.concatenate([np.diff(s.keyframes.annotations) for s in scans])[keyframe_order]
    box_starts = np.concatenate([s.keyframes.annotations[:-1] + start for s, start in zip(scans, start_a)])
    offsets = _offsets(box_counts)
    box_order = (np.repeat(box_starts[keyframe_order] - offsets[:-1], box_counts) + np.arange(offsets[-1]))
    box_rank = inverse_permutation(box_order)

    def box_strings(name: str, canonical: Dict[str, str]) -> Optional[List[str]]:
        values = [getattr(s.annotations, name) for s in scans]
        if values[0] is None:
            return None
        flat = [value for part in values for value in part]
        return [canonical[flat[i]] for i in box_order.tolist()]

    def flat(lists: List[list], order: np.ndarray) -> list:
        values = [value for part in lists for value in part]
        return [values[i] for i in order.tolist()]

    keyframes = Keyframes(
        token=flat([s.keyframes.token for s in scans], keyframe_order),
        prev=flat([s.keyframes.prev for s in scans], keyframe_order),
        next=flat([s.keyframes.next for s in scans], keyframe_order),
        scene=joined([part.scene_rows[part.scan.keyframes.scene] for part in parts])[keyframe_order],
        timestamp=keyframe_column("timestamp"),
        frame_idx=keyframe_column("frame_idx"),
        prev_row=remap_rows(keyframe_column("prev_row", start_s), keyframe_rank),
        next_row=remap_rows(keyframe_column("next_row", start_s), keyframe_rank),
        lidar=remap_rows(keyframe_column("lidar", start_r), reading_rank),
        cameras=remap_rows(keyframe_column("cameras", start_r), reading_rank),
        annotations=offsets,
    )
    readings = Readings(
        token=flat([s.readings.token for s in scans], reading_order),
        filename=flat([s.readings.filename for s in scans], reading_order),
        timestamp=reading_column("timestamp"),
        width=reading_column("width"),
        height=reading_column("height"),
        calibration=reading_column("calibration"),
        ego_pose=pose_rank[pose_of_reading],
        scene=joined([rows[s.readings.scene] for rows, s in zip(scene_of, scans)])[reading_order],
        prev=remap_rows(joined([s.readings.prev for s in scans], start_r)[reading_order], reading_rank),
    )
    boxes = [s.annotations for s in scans]
    annotations = Annotations(
        translation=joined([b.translation for b in boxes])[box_order],
        size=joined([b.size for b in boxes])[box_order],
        rotation=joined([b.rotation for b in boxes])[box_order],
        velocity=joined([b.velocity for b in boxes])[box_order],
        category=box_strings("category", {c.name: c.name for c in tables.category}),
        instance=joined([b.instance for b in boxes])[box_order],
        next=remap_rows(joined([b.next for b in boxes], start_a)[box_order], box_rank),
        attribute=box_strings("attribute", {**{a.name: a.name for a in tables.attribute}, "None": sys.intern("None")}),
        visibility=box_strings("visibility", _Interned()),
        num_lidar_pts=joined([b.num_lidar_pts for b in boxes])[box_order],
        num_radar_pts=joined([b.num_radar_pts for b in boxes])[box_order],
    )
    ego_poses = [s.ego_poses for s in scans]
    instance_tokens = [""] * tables.instances
    for part in parts:
        for row, token in part.scan.instance_tokens.items():
            instance_tokens[row] = token
    scenes = tables.scene
    if sorted(scene_row.tolist()) != list(range(len(scenes))):
        raise OccprepError(f"the scene groups hold {len(scene_row)} scenes for the {len(scenes)} of the tables "
                           "(some twice or none): gather every scene group of one shard folder once")
    gathered = Scan(
        scenes=Scenes(token=[s.token for s in scenes], name=[s.name for s in scenes],
                      location=scene_locations(scenes, tables.log)),
        keyframes=keyframes,
        readings=readings,
        calibrations=transforms(tables.calibrated_sensor),
        intrinsics=[c.camera_intrinsic for c in tables.calibrated_sensor],
        ego_poses=Transforms(
            translation=joined([p.translation for p in ego_poses])[pose_order],
            rotation=joined([p.rotation for p in ego_poses])[pose_order],
            translation_list=flat([p.translation_list for p in ego_poses], pose_order),
            rotation_list=flat([p.rotation_list for p in ego_poses], pose_order)),
        annotations=annotations,
        instance_tokens=instance_tokens,
        category_names=[c.name for c in tables.category],
    )
    return native(gathered)


class _Interned(dict):
    """str -> the interned str (as `scan` shares visibility tokens)."""

    def __missing__(self, key: str) -> str:
        return sys.intern(key)


def gather_can_bus(parts: List[ScanPart]) -> CanBus:
    """One `CanBus` from the parts' (their scenes are disjoint), by scene name as `read_can_bus` gives it."""
    return merged_can_bus([part.can_bus for part in parts])


def scan_tasks(groups: List[SceneGroup], config_name: str, chosen) -> List[ScanTask]:
    """The map tasks for `groups`, reading what the `chosen` targets need."""
    return [ScanTask(group, config_name, any(t.camera_sweeps for t in chosen), any(t.details for t in chosen),
                     any(t.steering for t in chosen)) for group in groups]


def create_infos_from_shards(shards: Path, root_path: str, out_dir: Path, extra_tag: str, version: str, engine,
                             config_name: str = "nuscenes", splits_file: Optional[Path] = None,
                             options: CreateOptions = CreateOptions(), reporter: Optional[Reporter] = None,
                             sharded_output: bool = False) -> Tuple[dict, List[str]]:
    """create-infos from the shards of `version` in `shards` (`occprep shard`), its scene groups run by
    `engine` (`occprep.engines`). By default the groups are scanned in the map and gathered here: the same
    pickles, byte for byte, as `create_infos` on the tables the shards were made from. `sharded_output`: each
    task also builds and writes its group's infos, one pickle per shard, and this process writes an index
    per output (`ShardedInfos`); nothing here grows with the number of scenes. `root_path` prefixes the
    infos' paths and is where the keyframe file check looks. Returns the summary (JSON-ready) and its text
    lines. Raises OccprepError for an unfinished or corrupt shard folder (naming the shard and its scenes)
    and for everything `create_infos` refuses; nothing is written then."""
    reporter = reporter or Reporter("create-infos", quiet=True)
    options = replace(options, cwd=options.cwd or os.getcwd())  # tasks may run in other working directories
    versions, skipped = _versions(Path(shards), version)
    for line in skipped:
        reporter.info(line)
    out_dirs, notes = output_dirs(options.chosen_targets(), Path(out_dir), options.out_dir_given)
    with Staging() as staging, gc_paused():
        results = [_version_from_shards(Path(shards), concrete, root_path, out_dirs, extra_tag, engine, config_name,
                                        splits_file, options, reporter, sharded_output, staging)
                   for concrete in versions]
    return summarize(results, skipped, reporter.elapsed, notes)


def _versions(shards: Path, version: str) -> Tuple[List[str], List[str]]:
    """The versions to build (an umbrella version's members that were sharded) and the lines about the others."""
    if version not in ALL_VERSIONS:
        return [version], []
    present = [member for member in ALL_VERSIONS[version] if marker_path(shards, member).is_file()]
    if not present:
        raise OccprepError(f"--version {version}: none of {', '.join(ALL_VERSIONS[version])} is sharded in {shards}; "
                           "shard them first (occprep shard --version V)")
    return present, [f"{member}: no shards in {shards}, skipped" for member in ALL_VERSIONS[version]
                     if member not in present]


def _version_from_shards(shards: Path, version: str, root_path: str, out_dirs: Dict[str, Path], extra_tag: str, engine,
                         config_name: str, splits_file: Optional[Path], options: CreateOptions, reporter: Reporter,
                         sharded_output: bool, staging: Staging) -> VersionInfos:
    """One version of `create_infos_from_shards`: its outputs into `staging` (summary only in the result)."""
    chosen = options.chosen_targets()
    manifest = open_shards(shards, version)
    config = dataset_config(config_name)
    tables = GlobalTables.of(shards, version, manifest.rows.get("instance", 0) + manifest.unrouted.get("instance", 0))
    check_config_names(config, tables.sensor, tables.category, config_name)
    plan = official_plan(version) if splits_file is None else plan_from_file(splits_file)
    if splits_file is not None:
        plan.check_scenes([s.name for s in tables.scene], f"the {version} shards")
    tasks = scan_tasks(scene_groups(shards, version), config_name, chosen)
    desc = f"scene groups {version}"
    if sharded_output:
        return _write_sharded(tasks, tables, engine, plan, version, root_path, extra_tag, options, out_dirs, desc,
                              reporter, staging)
    with reporter.stage("scan"):
        parts = list(engine.map(scan_group, tasks, desc))
    with reporter.stage("gather"):
        scanned, can_bus = gather_scan(parts, tables), gather_can_bus(parts)
    del parts
    result = infos_from_scan(scanned, can_bus, config, root_path, plan, version, options, reporter,
                             annotations="test" not in version, engine=engine)
    del scanned, can_bus
    with reporter.stage("write"):
        write_outputs(result, chosen, out_dirs, extra_tag, options.build_options(root_path), staging, reporter)
    return replace(result, parts=None)


@dataclass(frozen=True)
class InfoTask:
    """One map task of `--sharded-output`: scan a group, then write its infos into `folder`/<target>/."""

    scan: ScanTask
    root_path: str
    plan: SplitPlan
    options: CreateOptions
    extra_tag: str
    folder: str


def write_group(task: InfoTask) -> VersionInfos:
    """Scan one scene group and write every chosen target's infos of it (runs in a worker). Returns what the
    summary needs, with each split's samples as positions in sample.json."""
    part = scan_group(task.scan)
    version = task.scan.group.version
    chosen = task.options.chosen_targets()
    quiet = Reporter("create-infos", quiet=True)
    with gc_paused():
        result = infos_from_scan(part.scan, part.can_bus, dataset_config(task.scan.config_name), task.root_path,
                                 task.plan, version, task.options, quiet, annotations="test" not in version,
                                 group=True)
        with Staging() as staging:
            write_outputs(result, chosen, {t.name: Path(task.folder) / t.name for t in chosen}, task.extra_tag,
                          task.options.build_options(task.root_path), staging, quiet)
    return replace(result, parts=None, splits={split: part.sample_rows[rows].tolist()
                                                for split, rows in result.splits.items()})


class ShardPart(msgspec.Struct):
    path: str
    """Relative to the index's folder."""
    samples: int


class ShardedInfos(msgspec.Struct):
    """`<file stem>.index.json` of `--sharded-output`: the pickles that together hold one output's infos, in
    scene-group order (each a whole pickle of the target's structure)."""

    format: str
    target: str
    version: str
    split: str
    file_name: str
    """The single pickle these parts stand for."""
    samples: int
    parts: List[ShardPart]


SHARDED_INFOS = "occprep-sharded-infos/1"


def index_name(file_name: str) -> str:
    """`--sharded-output`'s index for the output `file_name` (its parts are in the folder of the stem)."""
    return f"{Path(file_name).stem}.index.json"


def _write_sharded(tasks: List[ScanTask], tables: GlobalTables, engine, plan: SplitPlan, version: str, root_path: str,
                   extra_tag: str, options: CreateOptions, out_dirs: Dict[str, Path], desc: str, reporter: Reporter,
                   staging: Staging) -> VersionInfos:
    """The `--sharded-output` run: groups write their pickles under a temporary folder, then each output's
    parts move into `<stem>/` and its index is written (all only once every group succeeded)."""
    chosen = options.chosen_targets()
    Path(next(iter(out_dirs.values()))).mkdir(parents=True, exist_ok=True)
    scratch = Path(os.path.abspath(tempfile.mkdtemp(prefix=".occprep-shards-", dir=next(iter(out_dirs.values())))))
    try:
        jobs = [InfoTask(task, root_path, plan, options, extra_tag, str(scratch / f"part-{task.group.bucket:05d}"))
                for task in tasks]
        with reporter.stage("groups"):
            results = list(engine.map(write_group, jobs, desc))
        merged = _merged(results, tables, plan, version)
        with reporter.stage("write"):
            for target in chosen:
                for split in plan.outputs:
                    file_name = target.file_name(extra_tag, split, version)
                    folder = out_dirs[target.name] / Path(file_name).stem
                    parts = [(Path(job.folder) / target.name / file_name, f"part-{job.scan.group.bucket:05d}.pkl",
                              len(result.splits[split])) for job, result in zip(jobs, results) if result.splits[split]]
                    if not parts:  # an empty split: one empty pickle of the target's structure, as create-infos
                        parts = [(Path(jobs[0].folder) / target.name / file_name, "part-00000.pkl", 0)]
                    _move_parts(folder, [(path, name) for path, name, _ in parts])
                    index = ShardedInfos(SHARDED_INFOS, target.name, version, split, file_name,
                                         sum(samples for _, _, samples in parts),
                                         [ShardPart(f"{folder.name}/{name}", samples) for _, name, samples in parts])
                    path = out_dirs[target.name] / index_name(file_name)
                    with staging.write(path) as handle:
                        handle.write(msgspec.json.format(msgspec.json.encode(index), indent=2))
                    merged.outputs.append(str(path))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return merged


def _move_parts(folder: Path, parts: List[Tuple[Path, str]]) -> None:
    """Make `folder` hold exactly `parts` ((file, name in folder)): built beside it, then swapped in."""
    building = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    for path, name in parts:
        os.replace(path, building / name)
    replace_folder(building, folder)


def _merged(results: List[VersionInfos], tables: GlobalTables, plan: SplitPlan, version: str) -> VersionInfos:
    """One summary of the groups' results; raises OccprepError for a split every scene of which was left out."""
    left_out = {name: why for r in results for name, why in r.left_out.items()}
    names = [scene.name for scene in tables.scene]
    scene_split, unlisted = plan.assign(names)
    gaps: Dict[str, Dict[str, str]] = {}
    for r in results:
        for target, scenes in r.gaps.items():
            gaps.setdefault(target, {}).update(scenes)
    return VersionInfos(
        version=version, parts=None,
        splits={split: sorted(row for r in results for row in r.splits[split]) for split in plan.outputs},
        annotations=results[0].annotations, scenes=sum(r.scenes for r in results),
        no_can_bus=dict(sorted((name, why) for r in results for name, why in r.no_can_bus.items())),
        left_out=left_out, unlisted=unlisted, unlisted_split=plan.fallback,
        empty=empty_splits(plan, names, scene_split, left_out, version), gaps=gaps)
