"""create-infos for one or more dataset versions: read (edge) -> scan -> CAN bus -> temporal -> targets -> write (edge).

`build_infos` is the in-memory core: it takes `Tables` and a `CanBus` from any source (nuScenes
files, a Unity export, a generator) and returns a `VersionInfos` (the keyframes of each output
split and the `InfoParts` every target is assembled from) without touching the disk (except the
optional keyframe file check); `VersionInfos.build` gives a target's pickled objects in memory.
`create_infos` is the command: it reads nuScenes version folders and CAN bus files and streams every
target's pickles into a `Staging`, renamed into place only once every version succeeded.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from occprep.blobs import missing_files
from occprep.canbus import CAN_BUS_MODES, can_bus_slots, merged_can_bus, read_can_bus
from occprep.config import DatasetConfig, config_problems, dataset_config
from occprep.errors import OccprepError
from occprep.fileio import Staging, Syncs, write_reserved
from occprep.infos import InfoParts
from occprep.layout import check_root_path, fix_canbus, misplaced_sensor_folders, version_folder
from occprep.names import describe_unknown
from occprep.pickles import write_pickle
from occprep.records import CanBus, Scan, native
from occprep.reporting import Reporter
from occprep.scan import ResolvedAnnotations, read_resolved_annotations, read_scan_tables, scan
from occprep.splits import OFFICIAL_VERSIONS, SplitPlan, official_plan, plan_from_file
from occprep.tables import Tables, read_table
from occprep.targets import Build, BuildOptions, Target, parse_targets
from occprep.temporal import temporal
from occprep.workers import (PARALLEL_BYTES, FileResult, SharedJobs, can_fork, cores, fork_call, gc_paused, portions,
                             process_pool)

ALL_VERSIONS = {"v1.0": ("v1.0-trainval", "v1.0-test")}
"""Umbrella versions: run each member whose folder exists (the reference's `--version v1.0`)."""
CAN_BUS_JOBS = 32
"""Portions of the scenes whose CAN bus files the worker reads, so that the main process can take over
those the worker has not started when it would otherwise wait."""


@dataclass(frozen=True)
class CreateOptions:
    """Knobs of create-infos (defaults: the reference converter's behaviour)."""

    max_sweeps: Optional[int] = None
    """LiDAR sweeps per info; None: each target's reference value (10; BEVDet 0)."""
    can_bus_mode: str = "reference"
    """'reference' (slots 7-15 from the next message) or 'nearest-before'; see `canbus.can_bus_slots`."""
    file_check: bool = True
    """Leave out scenes whose keyframe lidar/camera files are missing under the root."""
    strict: bool = False
    """Make a missing keyframe file an error instead."""
    targets: Tuple[str, ...] = ("bevformer",)
    """Output formats (`occprep.targets`), all written from one read of the tables."""
    root_given: bool = True
    """False when the root path is the command's default: targets then write their reference's root."""
    float64: bool = False
    """mmdet3d-v2: keep float64 where the reference rounds through float32."""
    fixes: FrozenSet[str] = frozenset()
    """Reference faults to mend (`BuildOptions.fixes`)."""
    out_dir_given: bool = True
    """False when the output folder is the command's default (see `Target.own_folder`)."""
    cwd: Optional[str] = None
    """The folder a relative root path is taken from (and that `data_path`s are written relative to, as
    the reference does); None: the current one. Set for tasks that run in other working directories."""

    def build_options(self, root_path: str) -> BuildOptions:
        """What every target's writer is told."""
        return BuildOptions(max_sweeps=self.max_sweeps, root_path=root_path if self.root_given else None,
                            float64=self.float64, fixes=self.fixes)

    def chosen_targets(self) -> List[Target]:
        """The requested targets (an unknown name is an error listing the known ones)."""
        return parse_targets(",".join(self.targets))


@dataclass(frozen=True)
class VersionInfos:
    """One dataset version ready to write: the keyframes of each output split, the parts every
    target's infos are made of, and what the summary reports about it."""

    version: str
    parts: InfoParts
    splits: Dict[str, List[int]]
    """Output split -> keyframe rows in sample-table order."""
    annotations: bool
    """False for test sets (no gt_* keys)."""
    scenes: int
    no_can_bus: Dict[str, str]
    """Scene name -> why its can_bus slots are zeros."""
    left_out: Dict[str, str]
    """Scene name -> why its samples are in no output (missing files, no split)."""
    unlisted: List[str]
    """Scenes in no list of the split plan."""
    unlisted_split: Optional[str]
    """Where unlisted scenes went (None: left out)."""
    empty: Dict[str, str] = field(default_factory=dict)
    """Output split -> why it holds no infos (no scene of these tables belongs to it)."""
    outputs: List[str] = field(default_factory=list)
    gaps: Dict[str, Dict[str, str]] = field(default_factory=dict)
    """Target name -> scene name -> which of its values are stand-ins there and why (`Target.gaps`)."""

    def build(self, target: Target, options: BuildOptions) -> Dict[str, object]:
        """Split -> the pickled object of `target` (in memory; `write_outputs` streams them instead)."""
        return {split: self.build_split(target, split, options) for split in self.splits}

    def build_split(self, target: Target, split: str, options: BuildOptions,
                    shared: Optional[List[dict]] = None) -> object:
        """The pickled object of `target` for one output split (`shared`: see `Target.neutral_infos`)."""
        build = Build(self.version, split, self.annotations, self.parts.config)
        neutral = target.neutral_infos(self.parts, self.splits[split], self.annotations, options, shared)
        return target.assemble(neutral, build, options)


def _missing_file_scenes(scanned, root_path: str, version: str, reporter: Reporter, none_allowed: bool = False,
                         engine=None, cwd: Optional[str] = None) -> Dict[str, Tuple[int, str]]:
    """Scene name -> (number of missing keyframe files, the first one) for scenes missing any.

    Raises OccprepError when not one keyframe file exists (unless `none_allowed`): the root holds no
    sensor files at all.
    """
    keyframes, readings = scanned.keyframes, scanned.readings
    rows = np.concatenate([keyframes.lidar[:, None], keyframes.cameras], axis=1)
    filenames = [readings.filename[r] for r in rows.ravel().tolist()]
    missing = missing_files(Path(cwd or os.getcwd()) / root_path, filenames, reporter, engine).reshape(rows.shape)
    if missing.size and missing.all() and not none_allowed:
        raise OccprepError(no_sensor_files(root_path, version, len(filenames), filenames[0]))
    found: Dict[str, Tuple[int, str]] = {}
    for s, c in np.argwhere(missing).tolist():
        name = scanned.scenes.name[keyframes.scene[s]]
        count, first = found.get(name, (0, filenames[s * rows.shape[1] + c]))
        found[name] = (count + 1, first)
    return found


def no_sensor_files(root_path: str, version: str, count: int, example: str) -> str:
    """The error for a dataset root that holds none of the keyframe files its tables name."""
    fixes = misplaced_sensor_folders(root_path) or (
        f"extract the blob archives (samples/, sweeps/) into {root_path}, or pass the --root-path that holds them")
    return (f"{version}: none of the {count:,} keyframe LiDAR/camera files exists under {root_path} (e.g. {example}): "
            f"the root holds no sensor files at all; {fixes} (or pass --no-file-check for a metadata-only copy)")


def build_infos(tables: Tables, can_bus: CanBus, config: DatasetConfig, root_path: str, plan: SplitPlan,
                version: str, options: CreateOptions = CreateOptions(), reporter: Optional[Reporter] = None,
                annotations: bool = True) -> VersionInfos:
    """Infos of every sample of `tables`, by output split of `plan`.

    `root_path` prefixes file names exactly as given (`lidar_path`, `data_path`) and is where the
    keyframe file check looks. `annotations=False` omits the gt_* keys (test sets).
    """
    with gc_paused():
        scanned = scan(tables, config)
    return infos_from_scan(scanned, can_bus, config, root_path, plan, version, options, reporter, annotations)


def infos_from_scan(scanned: Scan, can_bus: Union[CanBus, Callable[[], CanBus]], config: DatasetConfig,
                    root_path: str, plan: SplitPlan, version: str, options: CreateOptions = CreateOptions(),
                    reporter: Optional[Reporter] = None, annotations: bool = True, group: bool = False,
                    engine=None) -> VersionInfos:
    """`build_infos` from already scanned tables (lets a caller free the tables first). `can_bus`: the CAN
    bus, or a call that gives it, made once the file check and the temporal geometry are done (so that a
    worker still reading it overlaps them). `group`: `scanned` holds one group of the version's scenes
    (`occprep.sharded`), so a split or a sensor folder without any of its scenes here is no error (the
    caller judges all groups together). `engine` lists the keyframe folders for the file check
    (`occprep.engines`; default: this process)."""
    reporter = reporter or Reporter("create-infos", quiet=True)
    if options.can_bus_mode not in CAN_BUS_MODES:
        raise OccprepError(f"--can-bus-mode {options.can_bus_mode!r}: use one of {', '.join(CAN_BUS_MODES)}")
    if options.max_sweeps is not None and options.max_sweeps < 0:
        raise OccprepError(f"--max-sweeps {options.max_sweeps}: must be 0 or more")
    build_options = options.build_options(root_path)
    max_sweeps = max(target.sweeps(build_options) for target in options.chosen_targets())
    with gc_paused():
        keyframes, scene_names = scanned.keyframes, scanned.scenes.name
        sample_scene_name = [scene_names[i] for i in keyframes.scene.tolist()]

        left_out: Dict[str, str] = {}
        if options.file_check:
            with reporter.stage("file_check"):
                missing = _missing_file_scenes(scanned, root_path, version, reporter, group, engine, options.cwd)
            for name, (count, first) in sorted(missing.items()):
                reason = f"{count} keyframe file(s) missing under {root_path}, e.g. {first}"
                if options.strict:
                    raise OccprepError(f"scene {name}: {reason} (--strict; drop --strict to leave such scenes "
                                       "out, or --no-file-check for metadata-only copies)")
                left_out[name] = reason

        with reporter.stage("temporal"):
            geometry = temporal(scanned, max_sweeps)
        if callable(can_bus):
            with reporter.stage("can_bus"):
                can_bus = can_bus()
        with reporter.stage("temporal"):
            slots = can_bus_slots(keyframes.timestamp, sample_scene_name, can_bus, options.can_bus_mode)

        scene_split, unlisted = plan.assign(scene_names)
        for name in unlisted:
            if plan.fallback is None:
                left_out.setdefault(name, f"in no split of {plan.source}")
        empty = {} if group else empty_splits(plan, scene_names, scene_split, left_out, version)
        split_of_sample = [None if scene_names[i] in left_out else scene_split[i] for i in keyframes.scene.tolist()]
        splits = {split: [s for s, name in enumerate(split_of_sample) if name == split] for split in plan.outputs}

    used = {name for name in sample_scene_name if name not in left_out}
    no_can_bus = {name: can_bus.missing.get(name, "no CAN bus data")
                  for name in sorted(used) if name not in can_bus.poses}
    messages = can_bus if any(target.steering for target in options.chosen_targets()) else None
    return VersionInfos(version=version,
                        parts=InfoParts(scanned, geometry, slots, config, root_path, messages, options.cwd),
                        splits=splits,
                        annotations=annotations, scenes=len(set(sample_scene_name)), no_can_bus=no_can_bus,
                        left_out=left_out, unlisted=unlisted, unlisted_split=plan.fallback, empty=empty)


def empty_splits(plan: SplitPlan, scene_names: List[str], scene_split: List[Optional[str]],
                 left_out: Dict[str, str], version: str) -> Dict[str, str]:
    """Split -> why it is empty, for the outputs of `plan` no scene of the tables belongs to.

    Raises OccprepError for a split whose scenes were all left out: an output that would hold no
    infos because of a problem is an error, never an empty file.
    """
    empty = {}
    for split in plan.outputs:
        members = [name for name, assigned in zip(scene_names, scene_split) if assigned == split]
        if not members:
            empty[split] = f"no scene of these tables belongs to it ({plan.describe(split)})"
        elif all(name in left_out for name in members):
            first = members[0]
            raise OccprepError(f"{version} {split}: every one of its {len(members)} scene(s) was left out, so it would "
                               f"be written empty ({first}: {left_out[first]}); nothing written")
    return empty


def _versions(root: Path, version: str, custom_splits: bool, reporter: Reporter) -> Tuple[List[str], List[str]]:
    """The concrete versions to run and the messages about skipped members of an umbrella version."""
    if version in ALL_VERSIONS:
        present = [v for v in ALL_VERSIONS[version] if (root / v).is_dir()]
        skipped = [f"{v}: no folder {root / v}, skipped" for v in ALL_VERSIONS[version] if v not in present]
        if not present:
            raise OccprepError(f"--version {version}: none of {', '.join(ALL_VERSIONS[version])} is a folder in "
                               f"{root}; download the tables or pass the version you have")
        for line in skipped:
            reporter.info(line)
        return present, skipped
    if version not in OFFICIAL_VERSIONS and not custom_splits:
        known = [*OFFICIAL_VERSIONS, *ALL_VERSIONS]
        raise OccprepError(f"--version {describe_unknown([version], known)}: unknown version; use one of "
                           f"{', '.join(known)} (other versions need --splits FILE)")
    version_folder(root, version)
    return [version], []


def create_infos(root_path: str, out_dir: Path, extra_tag: str, version: str, canbus_root: Path,
                 config_name: str = "nuscenes", splits_file: Optional[Path] = None,
                 options: CreateOptions = CreateOptions(), reporter: Optional[Reporter] = None) -> Tuple[dict, List[str]]:
    """The create-infos command: read, build every version, then write all pickles. Returns the
    summary (JSON-ready) and its text lines."""
    reporter = reporter or Reporter("create-infos", quiet=True)
    chosen = options.chosen_targets()
    root = check_root_path(root_path)
    canbus_root, notes = resolve_canbus(canbus_root, root_path)
    config = dataset_config(config_name)
    custom_plan = plan_from_file(splits_file) if splits_file is not None else None
    versions, skipped = _versions(root, version, custom_plan is not None, reporter)
    if custom_plan is not None:
        custom_plan.check_scenes([s.name for v in versions for s in read_table(root / v, "scene")],
                                 f"the {', '.join(versions)} tables")

    out_dirs, shared = output_dirs(chosen, Path(out_dir), options.out_dir_given)
    steering = any(target.steering for target in chosen)
    results = []
    with Staging() as staging, gc_paused():
        for concrete in versions:
            with contextlib.ExitStack() as reading:
                annotations = can_bus_jobs = None
                if _reads_alongside(root / concrete):  # a worker reads the annotations, then shares the CAN bus
                    worker = reading.enter_context(process_pool(1))
                    annotations = reading.enter_context(FileResult(worker, read_resolved_annotations, root / concrete,
                                                                   any(target.details for target in chosen)))
                    names = sorted({scene.name for scene in read_table(root / concrete, "scene")})
                    can_bus_jobs = reading.enter_context(SharedJobs(worker, [
                        functools.partial(read_can_bus, canbus_root, part, config, Reporter("create-infos", quiet=True),
                                          steering) for part in portions(names, CAN_BUS_JOBS)]))
                meanwhile = _meanwhile(annotations, can_bus_jobs, reporter) if annotations is not None else None
                scanned = scan_version(root / concrete, config, config_name, reporter, chosen, meanwhile)
                if can_bus_jobs is not None:
                    can_bus = lambda: merged_can_bus(can_bus_jobs.results())  # noqa: E731 - called after temporal()
                else:
                    with reporter.stage("can_bus"):
                        can_bus = read_can_bus(canbus_root, scanned.scenes.name, config, reporter, steering)
                result = infos_from_scan(scanned, can_bus, config, root_path, custom_plan or official_plan(concrete),
                                         concrete, options, reporter, annotations="test" not in concrete)
                del scanned, can_bus
            with reporter.stage("write"):
                write_outputs(result, chosen, out_dirs, extra_tag, options.build_options(root_path), staging, reporter)
            results.append(replace(result, parts=None))
            del result
    return summarize(results, skipped, reporter.elapsed, notes + shared)


def _meanwhile(annotations: FileResult[ResolvedAnnotations], can_bus: SharedJobs[CanBus], reporter: Reporter
               ) -> Callable[[], ResolvedAnnotations]:
    """The annotations a worker reads; while they are not there, this process reads the CAN bus files the
    worker has not started on (it takes them up after the annotations), in the `can_bus` stage."""
    def wait() -> ResolvedAnnotations:
        with reporter.stage("can_bus"):
            can_bus.help(until=annotations.done)
        return native(annotations.result())
    return wait


def _reads_alongside(version_dir: Path) -> bool:
    """Whether a worker process should read the annotations and the CAN bus while the other tables are
    read: the version is big (sample_data of at least `PARALLEL_BYTES`) and there are two cores."""
    sample_data = version_dir / "sample_data.json"
    return cores() >= 2 and sample_data.is_file() and sample_data.stat().st_size >= PARALLEL_BYTES


def scan_version(version_dir: Path, config: DatasetConfig, config_name: str, reporter: Reporter,
                 chosen: Sequence[Target] = (), annotations: Optional[Callable[[], ResolvedAnnotations]] = None
                 ) -> Scan:
    """Read (the parts `scan` uses of) one version folder's tables and scan them, checking that the
    channels and categories the config names exist; what is read beyond the defaults follows what the
    `chosen` targets need (camera sweeps, image sizes and attributes). `annotations`: gives the
    sample_annotation table read and resolved elsewhere (`read_resolved_annotations` in a worker)."""
    camera_sweeps = any(target.camera_sweeps for target in chosen)
    with reporter.stage("read"):
        tables = read_scan_tables(version_dir, config, reporter, camera_sweeps, any(target.details for target in chosen),
                                  annotations=annotations is None)
    check_config_names(config, tables.sensor, tables.category, config_name)
    with gc_paused(), reporter.stage("scan"):
        return scan(tables, config, camera_sweeps, annotations)


def output_dirs(chosen: Sequence[Target], out_dir: Path, out_dir_given: bool = True) -> Tuple[Dict[str, Path], List[str]]:
    """Target name -> its folder: `out_dir`, or `out_dir/<target>/` for a target with its own folder
    (`Target.own_folder`, unless it is the only target and `out_dir_given`) and for targets whose file
    names another requested target also writes; and the summary lines that say so."""
    own = [t.name for t in chosen if t.own_folder and not (len(chosen) == 1 and out_dir_given)]
    patterns = Counter(target.file_pattern for target in chosen if target.name not in own)
    clashing = [t.name for t in chosen if t.name not in own and patterns[t.file_pattern] > 1]
    dirs = {t.name: out_dir / t.name if t.name in own or t.name in clashing else out_dir for t in chosen}
    notes = [f"{name} writes another target's file names: it went to {out_dir / name}/" for name in own]
    if clashing:
        notes.append(f"{' and '.join(clashing)} write the same file names: each went to {out_dir}/<target>/")
    return dirs, notes


def check_config_names(config: DatasetConfig, sensors: list, categories: list, given: str) -> None:
    """The channels and categories `config` names exist in the sensor and category records."""
    problems = config_problems(config, given, {s.channel for s in sensors}, {c.name for c in categories})
    if problems:
        raise OccprepError(problems[0])


def resolve_canbus(canbus_root: Path, root_path: str) -> Tuple[Path, List[str]]:
    """The folder that contains can_bus/, and a summary note when a recognised mix-up was corrected."""
    fix = fix_canbus(str(canbus_root), root_path)
    if fix is not None and not fix.certain:
        raise OccprepError(fix.message())
    if fix is not None:
        return Path(fix.corrected), [f"{fix.message()} (used {fix.corrected})"]
    if not (Path(canbus_root) / "can_bus").is_dir():
        raise OccprepError(f"--canbus {canbus_root}: no can_bus/ folder in it; pass the folder that contains "
                           "can_bus/ (the nuScenes CAN bus expansion)")
    return Path(canbus_root), []


@dataclass(frozen=True)
class _Output:
    """One pickle to write: a target's infos of one split."""

    split: str
    target: Target
    path: Path


def write_outputs(result: VersionInfos, chosen: Sequence[Target], out_dirs: Dict[str, Path], extra_tag: str,
                  options: BuildOptions, staging: Staging, reporter: Reporter) -> None:
    """Build and pickle every split of `result` for every target into `staging` (renamed into place
    when the whole run succeeds); records the paths in `result.outputs`. With two cores and `can_fork`,
    a forked child builds and writes about half of the infos meanwhile (`_child_share`): the same bytes."""
    layout = {target.name: target.layout(options, result.parts.root_path) for target in chosen}
    grouped = sorted(chosen, key=lambda target: list(layout.values()).index(layout[target.name]))
    outputs = [_Output(split, target, out_dirs[target.name] / target.file_name(extra_tag, split, result.version))
               for split in result.splits for target in grouped]
    elsewhere = _child_share(outputs, result.splits) if cores() >= 2 and can_fork() else []
    total = len(chosen) * sum(len(rows) for rows in result.splits.values())
    with gc_paused(), reporter.progress(total=total, desc=f"infos {result.version}", unit="info") as progress, \
            contextlib.ExitStack() as reserved:
        temporary = {output.path: reserved.enter_context(staging.reserve(output.path)) for output in outputs}
        if result.annotations and any(target.camera_boxes for target in chosen):
            result.parts.camera_boxes()  # before the fork: both processes read these
        child = None
        if elsewhere:
            try:
                child = fork_call(lambda: _write(result, elsewhere, options, temporary, lambda infos: None))
            except OSError:  # no memory or process left for a child (strict overcommit, limits): all are written here
                elsewhere = []
        try:
            _write(result, [output for output in outputs if output not in elsewhere], options, temporary,
                   progress.update)
            if child is not None:
                child.result()
                progress.update(sum(len(result.splits[output.split]) for output in elsewhere))
        finally:
            if child is not None:
                child.cancel()  # after a failure here: its reserved files are removed only once it has ended
    for output in outputs:
        result.outputs.append(str(output.path))
        target = output.target
        if target.gaps is not None:
            result.gaps.setdefault(target.name, {}).update(
                target.gaps(result.parts, result.splits[output.split], result.annotations, options))


def _child_share(outputs: List[_Output], splits: Dict[str, List[int]]) -> List[_Output]:
    """The outputs a forked child writes: the largest first, each to the process with fewer infos to
    write so far (one target's val split, or about half of several targets' pickles)."""
    load = {"here": 0, "child": 0}
    share = []
    for output in sorted(outputs, key=lambda output: -len(splits[output.split])):
        process = min(load, key=load.get)
        load[process] += len(splits[output.split])
        if process == "child":
            share.append(output)
    return share


def _write(result: VersionInfos, outputs: List[_Output], options: BuildOptions, temporary: Dict[Path, Path],
           written: Callable[[int], None]) -> None:
    """Build and pickle `outputs` (ordered by split, then by target layout) into their temporary files
    (output path -> the file `Staging.reserve` made); the neutral infos of a split are built once for the
    consecutive targets of the same layout; `written(n)` after each output of n infos. Each file is synced
    to disk in the background while the next is built, and all of them before this returns."""
    shared: Dict[tuple, List[dict]] = {}
    syncs = Syncs()
    for position, output in enumerate(outputs):
        target, rows = output.target, result.splits[output.split]
        layout = (output.split, target.layout(options, result.parts.root_path))
        if layout not in shared:
            root, max_sweeps = layout[1]
            shared = {layout: [result.parts.neutral(s, result.annotations, root, max_sweeps) for s in rows]}
        built = result.build_split(target, output.split, options, shared[layout])
        following = outputs[position + 1] if position + 1 < len(outputs) else None
        if following is None or (following.split, following.target.layout(
                options, result.parts.root_path)) != layout:
            shared = {}  # the last target of its layout: free the neutral infos before pickling
        with _opened(temporary[output.path], output.path, syncs) as handle:
            write_pickle(built, handle)
        del built
        written(len(rows))
    try:
        syncs.wait()
    except OSError as exc:
        named = {str(file): path for path, file in temporary.items()}
        raise _cannot_write(named[exc.filename], exc) from None


@contextlib.contextmanager
def _opened(temporary: Path, path: Path, syncs: Syncs) -> Iterator[IO[bytes]]:
    """`write_reserved(temporary)`, the temporary file of `path`; a failed write named as such."""
    try:
        with write_reserved(temporary, syncs=syncs) as handle:
            yield handle
    except OSError as exc:
        raise _cannot_write(path, exc) from None


def _cannot_write(path: Path, exc: OSError) -> OccprepError:
    return OccprepError(f"{path}: cannot write ({exc.strerror}); check --out-dir")


def summarize(results: List[VersionInfos], skipped: List[str], wall_time: float,
              notes: Sequence[str] = ()) -> Tuple[dict, List[str]]:
    """The closing summary as JSON-ready dict and text lines; `notes` (flags taken as corrected, ...)
    come last."""
    lines = list(skipped)
    versions = []
    for r in results:
        counts = {split: len(rows) for split, rows in r.splits.items()}
        lines.append(f"{r.version}: {sum(counts.values())} samples in {r.scenes} scenes ("
                     + ", ".join(f"{split} {n}" for split, n in counts.items()) + ")")
        lines.extend(f"  wrote {path}" for path in r.outputs)
        lines.extend(f"  {split} is empty: {why}" for split, why in r.empty.items())
        left_out = {name: why for name, why in r.left_out.items() if name not in r.unlisted}
        for title, named in (("without CAN bus (zeros)", r.no_can_bus), ("left out", left_out)):
            if named:
                lines.append(f"  {len(named)} scene(s) {title}:")
                lines.extend(f"    {name}: {reason}" for name, reason in named.items())
        for name, scenes in r.gaps.items():
            if scenes:
                lines.append(f"  {name}: {len(scenes)} scene(s) with stand-in values:")
                lines.extend(f"    {scene}: {why}" for scene, why in sorted(scenes.items()))
        if r.unlisted:
            fate = f"went to {r.unlisted_split}" if r.unlisted_split else "left out"
            lines.append(f"  {len(r.unlisted)} scene(s) in no split list ({fate}): {', '.join(r.unlisted)}")
        versions.append({"version": r.version, "samples": counts, "scenes": r.scenes,
                         "scenes_without_can_bus": r.no_can_bus, "scenes_left_out": r.left_out,
                         "scenes_in_no_list": r.unlisted, "scenes_in_no_list_split": r.unlisted_split,
                         "empty_splits": r.empty, "stand_in_values": r.gaps,
                         "outputs": r.outputs})
    lines.extend(notes)
    lines.append(f"wall time {wall_time:.1f} s")
    return {"versions": versions, "skipped": skipped, "notes": list(notes)}, lines
