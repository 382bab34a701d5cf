"""`occprep check`: walk a nuScenes-format data tree and say, item by item, what is there and what is not.

Every check yields `Finding` records (item, status, message, fix); `render_tree` prints them as the
tree the user sees. Another format's validator (Unity, ...) plugs in by producing the same records.
Status `error` means create-infos cannot produce correct infos until it is fixed; `warn` marks
something other stages need (sweeps, occupancy); `skip` a check the flags turned off.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter, defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import msgspec
import numpy as np

from occprep.blobs import missing_files
from occprep.config import DatasetConfig, config_problems
from occprep.errors import OccprepError
from occprep.layout import (OCCUPANCY_ROOTS, OPENOCC_RELEASE, fix_canbus, fix_occ_root, fix_root_path, fix_unity_root,
                            is_occupancy_root, misplaced_sensor_folders)
from occprep.occupancy import FORMATS, LAYOUTS, GtIndex, LidarKeyframe, PathLocator, lidar_keyframes, openocc_v1
from occprep.reporting import Reporter
from occprep.splits import devkit_scene_lists
from occprep.tables import TABLE_TYPES, field_subset, iter_record_batches
from occprep.tokens import TokenSet, pack_tokens
from occprep.workers import PARALLEL_BYTES, cores, process_pool

STATUSES = ("ok", "skip", "warn", "error")
"""Finding statuses, least to most severe."""

_MARKS = {"ok": "[ok]   ", "skip": "[skip] ", "warn": "[warn] ", "error": "[ERROR]"}

VERSION_ALIASES = {"v1.0": ("v1.0-trainval", "v1.0-test")}
"""`--version` values that stand for several version folders (as in create-infos)."""

_SCENE_NUMBER = re.compile(r"scene-(\d+)$")


class Finding(msgspec.Struct, frozen=True):
    """One checked item of a data tree.

    `item` is the item's position in the tree, outermost first (e.g. `("data/nuscenes", "v1.0-mini",
    "sample.json")`); `fix` says in words what to do when `status` is warn or error.
    """

    item: Tuple[str, ...]
    status: str
    message: str
    fix: str = ""


@dataclass(frozen=True)
class CheckRequest:
    """What `occprep check` was asked to look at (paths as the user typed them)."""

    root_path: Path
    """Dataset root holding v1.0-*/, maps/, samples/, sweeps/."""
    canbus: Path
    """Folder that contains can_bus/."""
    occ_root: Optional[Path] = None
    """Occupancy ground truth folder; None looks in the usual places beside the root."""
    versions: Tuple[str, ...] = ()
    """Version folders to check; empty means every v1.0-* folder found."""
    blobs: bool = True
    sweeps: bool = False
    config_name: str = "nuscenes"
    """The dataset config as given (`--config`), for messages."""


def worst(findings: Iterable[Finding]) -> str:
    """The most severe status among `findings` ('ok' when there are none)."""
    return max((f.status for f in findings), key=STATUSES.index, default="ok")


def passed(findings: Sequence[Finding]) -> bool:
    """True when nothing create-infos needs is missing (no error)."""
    return worst(findings) != "error"


# ----------------------------------------------------------------------------- the walk


def check_nuscenes(request: CheckRequest, config: DatasetConfig, reporter: Reporter) -> List[Finding]:
    """All findings for a nuScenes-format tree: root, version tables, maps, blobs, CAN bus, occupancy."""
    root = (str(request.root_path),)
    findings = _check_root(request.root_path)
    versions: List[str] = []
    if not findings:
        versions, version_findings = _resolve_versions(request)
        findings += version_findings
    scenes: List[Tuple[str, str]] = []  # (version, scene name)
    samples_by_scene: Dict[str, List[str]] = {}
    for version in versions:
        index, table_findings = _read_version(request.root_path, version, config, request.blobs, reporter)
        findings += table_findings
        if index is None:
            continue
        findings += _check_foreign_keys(root + (version,), index)
        findings += [Finding(root + (version, "config"), "error", problem,
                             "fix the dataset config, or pass the one these tables follow")
                     for problem in config_problems(config, request.config_name, set(index.channel_of_sensor.values()),
                                                    set(index.categories))]
        findings += _check_maps(request.root_path, root + ("maps",), index.map_files)
        findings += _check_blobs(request, root, version, index.files, reporter)
        scenes += [(version, name) for name in index.scene_names.values()]
        for sample, scene in index.sample_scenes:
            samples_by_scene.setdefault(index.scene_names.get(scene, ""), []).append(sample)
    scene_lists = devkit_scene_lists()
    findings += _check_canbus(request.canbus, request.root_path, scenes, config, scene_lists["test"])
    if scenes:
        findings += _check_occupancy(request, samples_by_scene, scenes, scene_lists, config)
    return findings


def _check_root(root: Path) -> List[Finding]:
    item = (str(root),)
    if not root.is_dir():
        return [Finding(item, "error", "not found",
                        "--root-path must name the nuScenes folder (the one holding v1.0-*/, samples/, sweeps/, maps/)")]
    fix = fix_root_path(str(root)) or fix_unity_root(str(root))
    if fix is not None:
        return [Finding(item, "error", f"no v1.0-* version folder here: this is {fix.what}", f"use {fix.flags}")]
    if not _version_dirs(root):
        return [Finding(item, "error", "no v1.0-* version folder here",
                        "extract the metadata archive (v1.0-trainval_meta.tgz, v1.0-test_meta.tgz or v1.0-mini.tgz) "
                        "into this folder: it holds v1.0-*/ and maps/; the blob archives only hold samples/ and "
                        "sweeps/")]
    return []


def _version_dirs(root: Path) -> List[str]:
    return sorted(d.name for d in root.glob("v1.0-*") if d.is_dir())


def _resolve_versions(request: CheckRequest) -> Tuple[List[str], List[Finding]]:
    present = _version_dirs(request.root_path)
    if not request.versions:
        return present, []
    wanted = [v for name in request.versions for v in VERSION_ALIASES.get(name, (name,))]
    missing = [v for v in wanted if v not in present]
    findings = [Finding((str(request.root_path), v), "error", "version folder missing",
                        f"{v}/ comes from the metadata archive ({_meta_archive(v)}), not the blob archives: "
                        f"extract it into {request.root_path}"
                        + (f" (found here: {', '.join(present)})" if present else ""))
                for v in missing]
    return [v for v in wanted if v in present], findings


def _meta_archive(version: str) -> str:
    return "v1.0-mini.tgz" if version == "v1.0-mini" else f"{version}_meta.tgz"


def _blob_archives(version: str) -> str:
    return {"v1.0-mini": "v1.0-mini.tgz holds them too", "v1.0-trainval": "v1.0-trainval01_blobs.tgz to "
            "v1.0-trainval10_blobs.tgz"}.get(version, f"{version}_blobs.tgz")


# ----------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class ForeignKey:
    """`table.field` must name a record of `target`; '' allowed when `optional`; `many` for token lists."""

    table: str
    field: str
    target: str
    optional: bool = False
    many: bool = False


FOREIGN_KEYS = (
    ForeignKey("sample", "scene_token", "scene"),
    ForeignKey("sample", "prev", "sample", optional=True),
    ForeignKey("sample", "next", "sample", optional=True),
    ForeignKey("sample_data", "sample_token", "sample"),
    ForeignKey("sample_data", "ego_pose_token", "ego_pose"),
    ForeignKey("sample_data", "calibrated_sensor_token", "calibrated_sensor"),
    ForeignKey("sample_data", "prev", "sample_data", optional=True),
    ForeignKey("sample_data", "next", "sample_data", optional=True),
    ForeignKey("calibrated_sensor", "sensor_token", "sensor"),
    ForeignKey("sample_annotation", "sample_token", "sample"),
    ForeignKey("sample_annotation", "instance_token", "instance"),
    ForeignKey("sample_annotation", "visibility_token", "visibility", optional=True),
    ForeignKey("sample_annotation", "attribute_tokens", "attribute", many=True),
    ForeignKey("sample_annotation", "prev", "sample_annotation", optional=True),
    ForeignKey("sample_annotation", "next", "sample_annotation", optional=True),
    ForeignKey("instance", "category_token", "category"),
    ForeignKey("instance", "first_annotation_token", "sample_annotation"),
    ForeignKey("instance", "last_annotation_token", "sample_annotation"),
    ForeignKey("scene", "log_token", "log"),
    ForeignKey("scene", "first_sample_token", "sample"),
    ForeignKey("scene", "last_sample_token", "sample"),
)
"""The references between nuScenes tables that readers (the devkit, create-infos) follow."""

_READ_ORDER = ("sensor", "calibrated_sensor", "attribute", "category", "visibility", "log", "map", "scene", "sample",
               "instance", "ego_pose", "sample_annotation", "sample_data")
"""sample_data after sensor and calibrated_sensor: its files are sorted by channel; the big tables last."""

_BIG_TABLES = ("ego_pose", "sample_annotation", "sample_data")

_OTHER_FIELDS = {"map": ("filename", "log_tokens"), "scene": ("name",), "sensor": ("channel",), "category": ("name",)}
"""Fields the checks read besides tokens and foreign keys (and sample_data's files, for the blob check)."""


def _reference_type(name: str, keep_files: bool) -> type:
    """A record type of table `name` with only the fields the checks read (token, foreign keys, ...).

    Decoding skips the other fields (poses, sizes, ...), which is most of the work on trainval;
    their values are create-infos' to validate.
    """
    files = ("is_key_frame", "filename") if keep_files and name == "sample_data" else ()
    wanted = {"token", *(fk.field for fk in FOREIGN_KEYS if fk.table == name), *_OTHER_FIELDS.get(name, ()), *files}
    return field_subset(TABLE_TYPES[name], " ".join(f.name for f in msgspec.structs.fields(TABLE_TYPES[name])
                                                    if f.name in wanted))


@dataclass
class VersionIndex:
    """What the later checks need from one version's tables; the records themselves are not kept.

    Tables are read in batches of records (`iter_record_batches`), each reduced to token sets as it is
    decoded, so a trainval check holds one table's raw JSON plus 16 bytes per token.
    """

    tokens: Dict[str, TokenSet] = field(default_factory=dict)
    """Table -> the tokens of its records."""
    references: Dict[ForeignKey, TokenSet] = field(default_factory=dict)
    """Foreign key -> the tokens its records name."""
    mapped_logs: TokenSet = TokenSet(np.empty(0, "S16"))
    """Logs named by some map.log_tokens."""
    map_files: List[str] = field(default_factory=list)
    scene_names: Dict[str, str] = field(default_factory=dict)
    """Scene token -> scene name."""
    sample_scenes: List[Tuple[str, str]] = field(default_factory=list)
    """(sample token, scene token) in table order."""
    categories: List[str] = field(default_factory=list)
    """Category names."""
    channel_of_sensor: Dict[str, str] = field(default_factory=dict)
    channel_of_calibration: Dict[str, str] = field(default_factory=dict)
    files: Dict[str, List[str]] = field(default_factory=lambda: {"needed": [], "other": [], "sweeps": []})
    """'needed' (LiDAR/camera keyframes), 'other' (other keyframes), 'sweeps' -> sample_data filenames."""

    def merge(self, part: "VersionIndex") -> None:
        """Add what `part` holds of the big tables (see `_read_big_table`)."""
        self.tokens.update(part.tokens)
        self.references.update(part.references)
        for group, names in part.files.items():
            self.files[group] += names


def _read_version(root: Path, version: str, config: DatasetConfig, keep_files: bool,
                  reporter: Reporter) -> Tuple[Optional[VersionIndex], List[Finding]]:
    """Parse the 13 tables of one version into a VersionIndex (with sample_data file names when
    `keep_files`); None unless all of them parse."""
    item = (str(root), version)
    index = VersionIndex()
    findings = []
    started: Dict[str, Future] = {}
    with contextlib.ExitStack() as workers:
        for name in reporter.progress(_READ_ORDER, desc=f"{version} tables", unit="table"):
            path = root / version / f"{name}.json"
            if not path.is_file():
                findings.append(Finding(item + (path.name,), "error", "missing",
                                        f"{version}/ is incomplete: extract {_meta_archive(version)} again"))
                continue
            try:
                if name in started:
                    count, part = started[name].result()
                    index.merge(part)
                else:
                    count = _add_table(index, root / version, name, config, keep_files)
            except OccprepError as exc:
                findings.append(Finding(item + (path.name,), "error", f"does not parse: {exc}",
                                        f"the file is damaged: extract {_meta_archive(version)} again"))
                continue
            findings.append(Finding(item + (path.name,), "ok", f"{count:,} records"))
            if name == "calibrated_sensor":
                started = _start_big_tables(workers, root / version, index, config, keep_files)
    findings.sort(key=lambda f: f.item)
    return (index if len(index.tokens) == len(TABLE_TYPES) else None), findings


def _start_big_tables(workers: contextlib.ExitStack, version_dir: Path, index: VersionIndex, config: DatasetConfig,
                      keep_files: bool) -> Dict[str, Future]:
    """Start reading the big tables of at least `PARALLEL_BYTES` in worker processes, biggest first,
    when there are at least two of them and two cores (the small tables are read here meanwhile: on
    trainval the table checks take half the time); table -> its (count, part) to come."""
    sizes = {name: (version_dir / f"{name}.json").stat().st_size
             for name in _BIG_TABLES if (version_dir / f"{name}.json").is_file()}
    big = sorted((name for name, size in sizes.items() if size >= PARALLEL_BYTES), key=sizes.get, reverse=True)
    processes = min(len(big), cores())
    if processes < 2:
        return {}
    pool = workers.enter_context(process_pool(processes))
    return {name: pool.submit(_read_big_table, version_dir, name, config, keep_files, index.channel_of_calibration)
            for name in big}


def _read_big_table(version_dir: Path, name: str, config: DatasetConfig, keep_files: bool,
                    channel_of_calibration: Dict[str, str]) -> Tuple[int, VersionIndex]:
    """Table `name` read into an index of its own (in a worker process): (number of records, index)."""
    part = VersionIndex(channel_of_calibration=channel_of_calibration)
    return _add_table(part, version_dir, name, config, keep_files), part


def _add_table(index: VersionIndex, version_dir: Path, name: str, config: DatasetConfig, keep_files: bool) -> int:
    """Read table `name` into `index`, batch by batch on big files; the number of records."""
    foreign_keys = [fk for fk in FOREIGN_KEYS if fk.table == name]
    parts: Dict[object, list] = defaultdict(list)
    count = 0
    for records in iter_record_batches(version_dir, name, _reference_type(name, keep_files)):
        count += len(records)
        parts["token"].append(pack_tokens([r.token for r in records]))
        for fk in foreign_keys:
            values = ([t for r in records for t in getattr(r, fk.field)] if fk.many
                      else list(map(attrgetter(fk.field), records)))
            parts[fk].append(pack_tokens(values))
        _add_details(index, name, records, config, keep_files)
    index.tokens[name] = TokenSet.of(parts["token"])
    index.references.update((fk, TokenSet.of(parts[fk])) for fk in foreign_keys)
    return count


def _add_details(index: VersionIndex, name: str, records: list, config: DatasetConfig, keep_files: bool) -> None:
    """What the other checks read from a batch of table `name`: map files, scene names, sample_data files, ..."""
    if name == "map":
        index.mapped_logs = TokenSet.of([pack_tokens([t for m in records for t in m.log_tokens])])
        index.map_files = [m.filename for m in records]
    elif name == "scene":
        index.scene_names.update((s.token, s.name) for s in records)
    elif name == "sample":
        index.sample_scenes += [(s.token, s.scene_token) for s in records]
    elif name == "sensor":
        index.channel_of_sensor.update((s.token, s.channel) for s in records)
    elif name == "category":
        index.categories += [c.name for c in records]
    elif name == "calibrated_sensor":
        index.channel_of_calibration.update((c.token, index.channel_of_sensor.get(c.sensor_token, ""))
                                            for c in records)
    elif name == "sample_data" and keep_files:
        needed_channels = {config.lidar_channel, *config.camera_channels}
        needed_calibrations = {c for c, ch in index.channel_of_calibration.items() if ch in needed_channels}
        for sd in records:
            group = ("needed" if sd.calibrated_sensor_token in needed_calibrations else "other") \
                if sd.is_key_frame else "sweeps"
            index.files[group].append(sd.filename)


def _check_foreign_keys(item: Tuple[str, ...], index: VersionIndex) -> List[Finding]:
    """Every foreign key resolves, and every log has a map (the devkit indexes log -> map)."""
    problems = []
    for fk in FOREIGN_KEYS:
        dangling = index.references[fk] - index.tokens[fk.target]
        if fk.optional:
            dangling = dangling.without("")
        if len(dangling):
            problems.append(f"{fk.table}.{fk.field}: {len(dangling):,} token(s) not in {fk.target}.json "
                            f"(e.g. {dangling.first()})")
    unmapped = index.tokens["log"] - index.mapped_logs
    if len(unmapped):
        problems.append(f"log: {len(unmapped):,} log(s) in no map.log_tokens (e.g. {unmapped.first()})")
    item = item + ("foreign keys",)
    if problems:
        fix = ("the tables do not belong together: take all 13 from one archive of one version "
               "(mixed versions or a partial extraction cause this)")
        return [Finding(item, "error", p, fix) for p in problems]
    return [Finding(item, "ok", f"all {len(FOREIGN_KEYS) + 1} references resolve")]


def _check_maps(root: Path, item: Tuple[str, ...], map_files: List[str]) -> List[Finding]:
    missing = sorted(name for name in map_files if not (root / name).is_file())
    if missing:
        return [Finding(item, "error", f"{len(missing)} of {len(map_files)} map files missing (e.g. {missing[0]})",
                        "maps/ comes from the metadata archive: extract it into the --root-path folder")]
    return [Finding(item, "ok", f"{len(map_files)} map files present")]


# ----------------------------------------------------------------------------- blobs


def _check_blobs(request: CheckRequest, root: Tuple[str, ...], version: str, files: Dict[str, List[str]],
                 reporter: Reporter) -> List[Finding]:
    """Keyframe files (samples/) and, with --sweeps, the others (sweeps/): one directory listing per folder.

    Missing LiDAR/camera keyframes are errors (create-infos leaves their scenes out); the other
    keyframes (radar) and sweeps are warnings.
    """
    kinds = ["samples"] + (["sweeps"] if request.sweeps else [])
    if not request.blobs:
        return [Finding(root + (kind,), "skip", f"{version}: not checked (--no-blobs)") for kind in kinds]
    groups = [("samples", "needed", "error", "LiDAR/camera keyframe"), ("samples", "other", "warn", "other keyframe"),
              ("sweeps", "sweeps", "warn", "sweep")]
    return [_blob_finding(request, root + (kind,), version, files[group], severity, what, reporter)
            for kind, group, severity, what in groups if kind in kinds and files[group]]


def _blob_finding(request: CheckRequest, item: Tuple[str, ...], version: str, filenames: List[str],
                  severity: str, what: str, reporter: Reporter) -> Finding:
    absent = missing_files(request.root_path, filenames, reporter)
    missing = Counter(os.path.dirname(name) for name, gone in zip(filenames, absent) if gone)
    if not missing:
        return Finding(item, "ok", f"{version}: all {len(filenames):,} {what} files present")
    folders = ", ".join(f"{d} ({n:,})" for d, n in missing.most_common(3))
    moved = misplaced_sensor_folders(str(request.root_path))
    fix = moved or (f"{item[-1]}/ comes from the blob archives ({_blob_archives(version)}), not the metadata archive: "
                    f"extract all of them into {request.root_path}; one part missing leaves whole scenes out")
    return Finding(item, severity, f"{version}: {sum(missing.values()):,} of {len(filenames):,} {what} files "
                   f"missing: {folders}", fix)


# ----------------------------------------------------------------------------- CAN bus


def _check_canbus(canbus: Path, root_path: Path, scenes: List[Tuple[str, str]], config: DatasetConfig,
                  test_scenes: Sequence[str]) -> List[Finding]:
    """Which scenes have `can_bus/{scene}_pose.json`; blacklisted and test scenes are expected to lack it."""
    fix = fix_canbus(str(canbus), str(root_path))
    if fix is not None:
        taken = f" (create-infos takes {fix.corrected} and says so)" if fix.certain else ""
        return [Finding((str(canbus),), "warn" if fix.certain else "error",
                        f"no can_bus/ with *_pose.json here: this is {fix.what}", f"use {fix.flags}{taken}")]
    folder = canbus / "can_bus"
    item = (str(folder),)
    if not folder.is_dir():
        return [Finding(item, "error", "not found", "--canbus must name the folder that contains can_bus/; download "
                        "the CAN bus expansion (can_bus.zip) and unzip it there")]
    present = {p.name[: -len("_pose.json")] for p in folder.glob("*_pose.json")}
    test_scenes = set(test_scenes)
    blacklist = set(config.can_bus_blacklist)
    covered, expected_gaps, missing = [], [], []
    for version, name in sorted(set(scenes), key=lambda vs: vs[1]):
        match = _SCENE_NUMBER.match(name)
        if name in present:
            covered.append(name)
        elif version == "v1.0-test" or name in test_scenes or (match and int(match.group(1)) in blacklist):
            expected_gaps.append(name)
        else:
            missing.append(name)
    if not scenes:
        return [Finding(item, "ok", f"{len(present):,} scenes with CAN bus (no tables to match them with)")]
    summary = f"{len(covered):,} of {len(scenes):,} scenes have CAN bus"
    if expected_gaps:
        summary += (f"; {len(expected_gaps):,} without it as expected (devkit blacklist / test scenes; "
                    "create-infos writes zeros and names them)")
    if missing:
        return [Finding(item, "error", f"{summary}; {len(missing):,} missing: {_some(missing)}",
                        f"unzip the CAN bus expansion (can_bus.zip) into {canbus} so that {folder} holds "
                        "{scene}_pose.json for every scene")]
    return [Finding(item, "ok", summary)]


def _some(names: Sequence[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n:,} more" if len(names) > n else "")


# ----------------------------------------------------------------------------- occupancy


def _check_occupancy(request: CheckRequest, samples_by_scene: Dict[str, List[str]],
                     scenes: List[Tuple[str, str]], scene_lists: Dict[str, List[str]],
                     config: DatasetConfig) -> List[Finding]:
    """Occupancy GT coverage per split, for every release layout found (`occprep.occupancy.LAYOUTS`)."""
    root = request.root_path
    candidates = ([request.occ_root] if request.occ_root else
                  list(dict.fromkeys([root, root.parent, *(root.parent / r.usual for r in OCCUPANCY_ROOTS.values())])))
    found = [(c, fmt) for c in candidates for fmt in FORMATS if _is_root(c, fmt)]
    if not found:
        if request.occ_root:
            fix = next(filter(None, (fix_occ_root(str(request.occ_root), fmt) for fmt in FORMATS)), None)
            return [Finding((str(request.occ_root),), "error", "no occupancy ground truth here"
                            + (f": this is {fix.what}" if fix else ""),
                            f"use {fix.flags}" if fix else "--occ-root must name the folder that holds "
                            + " or ".join(f"{r.holds} ({fmt})" for fmt, r in OCCUPANCY_ROOTS.items()))]
        return [Finding(("occupancy",), "skip", f"none found in {', '.join(str(c) for c in candidates)} "
                        "(pass --occ-root); only merge-occ needs it")]
    in_tree = {name for _, name in scenes}
    lidar: Dict[str, LidarKeyframe] = {}
    if any(LAYOUTS[fmt].needs_lidar for _, fmt in found):
        for version in sorted({v for v, _ in scenes}):
            lidar.update(lidar_keyframes(str(root), version, config.lidar_channel))
    findings = []
    for occ_root, fmt in found:
        index = None if fmt == "openocc-v1" else LAYOUTS[fmt].index(str(occ_root), "", lidar)
        for split in _occupancy_splits(scenes, scene_lists):
            wanted = {t for s in scene_lists[split] if s in in_tree for t in samples_by_scene.get(s, ())}
            if index is None:
                findings.append(_openocc_coverage(occ_root, split, wanted))
            else:
                findings.append(_coverage((str(occ_root), split), wanted, _on_disk(index, wanted, occ_root),
                                          OCCUPANCY_ROOTS[fmt].title))
    return findings


def _is_root(folder: Path, format_: str) -> bool:
    """A root of `format_`; for OpenOcc v1 also a folder named like its release (so a missing index is reported)."""
    return is_occupancy_root(str(folder), format_) or format_ == "openocc-v1" and folder.name == OPENOCC_RELEASE \
        and folder.is_dir()


def _occupancy_splits(scenes: List[Tuple[str, str]], scene_lists: Dict[str, List[str]]) -> List[str]:
    """The splits whose scenes are in the tree (test has no occupancy GT)."""
    names = {name for _, name in scenes}
    order = ("mini_train", "mini_val") if {v for v, _ in scenes} == {"v1.0-mini"} else ("train", "val")
    return [s for s in order if names & set(scene_lists[s])]


def _openocc_coverage(occ_root: Path, split: str, wanted: Set[str]) -> Finding:
    """OpenOcc v1 publishes trainval indexes only; mini splits are covered by the trainval ones."""
    index_split = {"mini_train": "train", "mini_val": "val"}.get(split, split)
    path = openocc_v1.index_path(occ_root, index_split)
    item = (str(occ_root), path.name if index_split == split else f"{path.name} ({split})")
    if not path.is_file():
        return Finding(item, "warn", "index missing",
                       f"OpenOcc v1 ships {path.name} in occ_gt_release_v1_0/: extract it into {occ_root}")
    try:
        index = openocc_v1.read_index(path)
    except OccprepError as exc:
        return Finding(item, "warn", f"does not parse: {exc}", "download the index again")
    return _coverage(item, wanted, _on_disk(index, wanted, occ_root), "OpenOcc v1 index and files")


def _on_disk(index: GtIndex, wanted: Set[str], occ_root: Path) -> Set[str]:
    """The `wanted` samples of `index` whose files are all where merge-occ finds them (`PathLocator`)."""
    locator = PathLocator(occ_root)
    return {t for t in wanted & set(index.samples)
            if all(locator.locate(f) is not None for f in index.samples[t].files.values())}


def _coverage(item: Tuple[str, ...], wanted: Set[str], present: Set[str], name: str) -> Finding:
    covered = len(wanted & present)
    message = f"{name}: {covered:,} of {len(wanted):,} samples have ground truth"
    if covered == len(wanted):
        return Finding(item, "ok", message)
    return Finding(item, "warn", message + f" ({len(wanted) - covered:,} without: merge-occ will name them)",
                   "extract every part of the occupancy release; the releases cover trainval only "
                   "(for v1.0-mini the trainval labels cover the mini tokens)")


# ----------------------------------------------------------------------------- output


def render_tree(findings: Sequence[Finding], problems_only: bool = False) -> List[str]:
    """The findings as an indented tree, a mark per line; fixes on the line below a problem."""
    shown = [f for f in findings if f.status in ("warn", "error")] if problems_only else list(findings)
    children: Dict[Tuple[str, ...], List[Tuple[str, ...]]] = defaultdict(list)
    own: Dict[Tuple[str, ...], List[Finding]] = defaultdict(list)
    below: Dict[Tuple[str, ...], List[Finding]] = defaultdict(list)
    for f in shown:
        own[f.item].append(f)
        for depth in range(1, len(f.item) + 1):
            node = f.item[:depth]
            below[node].append(f)
            if node not in children[node[:-1]]:
                children[node[:-1]].append(node)
    lines: List[str] = []

    def emit(node: Tuple[str, ...], depth: int) -> None:
        indent = "  " * depth
        label = node[-1]
        if not own[node]:
            lines.append(f"{_MARKS[_folded(below[node])]} {indent}{label}")
        for f in own[node]:
            lines.append(f"{_MARKS[f.status]} {indent}{label}: {f.message}")
            if f.fix and f.status in ("warn", "error"):
                lines.append(f"{' ' * 8}{indent}  fix: {f.fix}")
        for child in children[node]:
            emit(child, depth + 1)

    for top in children[()]:
        emit(top, 0)
    return lines


def _folded(findings: Sequence[Finding]) -> str:
    """A parent's mark: its worst problem; a skipped child does not hide the others' ok."""
    status = worst(findings)
    return "ok" if status == "skip" and any(f.status == "ok" for f in findings) else status


def summarize(findings: Sequence[Finding]) -> Dict[str, int]:
    """Number of findings per status."""
    return {status: sum(f.status == status for f in findings) for status in STATUSES}
