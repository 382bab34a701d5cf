"""`occprep convert`: any target's pickle into any other's, never in place.

The input is read back into neutral infos (`Target.neutral`: boxes moved to the legacy convention,
so the box convention is converted, never copied). What the target needs and the input does not
hold (BEVFormer's CAN bus and sample chain from an mmdet3d pickle, BEVDet's `ann_infos`,
mmdet3d-v2's `cam_instances`, LiDAR sweeps deeper than the input's, almost everything from a
float32-rounded mmdet3d-v2 pickle) is filled from the tables when a dataset root is given, and is
otherwise an error naming those keys and the flags that supply them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from occprep import boxes
from occprep.canbus import read_can_bus
from occprep.config import dataset_config
from occprep.create import CreateOptions, infos_from_scan, resolve_canbus, scan_version
from occprep.errors import OccprepError
from occprep.fileio import atomic_write
from occprep.layout import check_root_path
from occprep.names import check_names
from occprep.merge import infos_version, load_infos, records_key
from occprep.pickles import write_pickle
from occprep.records import CanBus
from occprep.reporting import Reporter
from occprep.splits import SplitPlan
from occprep.targets import (OCCUPANCY_KEYS, Build, BuildOptions, Target, identify, merged_suffix, parse_targets,
                             targets)


@dataclass(frozen=True)
class ConvertRequest:
    """What `occprep convert` was asked to do."""

    source: Path
    to: str
    out: Optional[Path] = None
    """Default: the target's file name beside the input (in `<target>/` when that is the input's name)."""
    root_path: Optional[str] = None
    """Dataset root with the version folder, to fill what the input lacks."""
    canbus: Optional[Path] = None
    """Folder that contains can_bus/ (for BEVFormer's `can_bus`)."""
    config_name: str = "nuscenes"
    options: CreateOptions = CreateOptions()


def read_source(path: Path) -> Tuple[object, Target]:
    """The loaded pickle and the target it is; an error when it is no target's."""
    data = load_infos(Path(path))
    source = identify(data, Path(path).name)
    if source is None:
        raise OccprepError(f"{path}: not an info pickle of any target ({', '.join(targets())}); "
                           "`occprep inspect` says what it holds")
    return data, source


def _version_and_annotations(data: object, neutral: List[dict], source: Target) -> Tuple[str, bool]:
    """The input's dataset version, and whether it has annotations (an empty one: unless it is a test set)."""
    annotated_key = "cam_instances" if source.name == "mmdet3d-v2" else "gt_boxes"
    version = infos_version(data) or ""
    return version, any(annotated_key in info for info in neutral) or (not neutral and "test" not in version)


def output_path(request: ConvertRequest, source: Target, target: Target, version: str) -> Path:
    """Where the converted pickle goes; refuses the input itself."""
    source_path = Path(request.source)
    out = request.out
    if out is None:
        parsed = source.parse_file_name(source_path.name)
        if parsed is None:
            raise OccprepError(f"{source_path}: its name does not follow {source.file_pattern}; pass --out FILE")
        suffix = merged_suffix(source_path.name)[1]
        out = source_path.parent / target.file_name(*parsed, version).replace(".pkl", f"{suffix}.pkl")
        if out.resolve() == source_path.resolve():
            out = source_path.parent / target.name / out.name
    if Path(out).resolve() == source_path.resolve():
        raise OccprepError(f"--out {out}: that is the input; convert never writes in place, give another file")
    return Path(out)


def _missing(neutral: List[dict], target: Target, annotations: bool, max_sweeps: int) -> List[str]:
    """Neutral keys the target needs that not every input info holds (sweeps: not deep enough)."""
    missing = [key for key in target.required(annotations) if not all(key in info for info in neutral)]
    if "sweeps" not in missing and max_sweeps > 0 and neutral:
        deepest = max(len(info["sweeps"]) for info in neutral)
        if deepest < max_sweeps:
            missing.append("sweeps")
    return missing


def _from_tables(request: ConvertRequest, target: Target, version: str, tokens: List[str], annotations: bool,
                 need_can_bus: bool, reporter: Reporter) -> Tuple[List[dict], Dict[str, str], Dict[str, str]]:
    """Neutral infos of `tokens` (in that order) built from the tables of `version`, the scenes whose
    `can_bus` are zeros (when it was read) and those where the target has stand-in values, with the reasons."""
    root = check_root_path(request.root_path, version_flag=False)
    if not (root / version).is_dir():
        raise OccprepError(f"--root-path {request.root_path}: no {version}/ folder (the input's version); pass the "
                           "dataset root that holds it")
    config = dataset_config(request.config_name)
    scanned = scan_version(root / version, config, request.config_name, reporter, [target])
    can_bus = CanBus({}, {})
    if need_can_bus or target.steering:
        if request.canbus is None:
            what = "the input has no can_bus values" if need_can_bus else f"{target.name} reads the CAN bus messages"
            raise OccprepError(f"{what}: pass --canbus DIR (the folder that contains can_bus/)")
        folder, notes = resolve_canbus(request.canbus, request.root_path)
        for note in notes:
            reporter.info(note)
        can_bus = read_can_bus(folder, scanned.scenes.name, config, reporter, steering=target.steering)
    check_names(tokens, set(scanned.keyframes.token), "sample token", f"{request.source}",
                f"the {version} tables under {request.root_path} are not the ones it was made from")
    names = scanned.scenes.name
    plan = SplitPlan(("all",), {name: "all" for name in names}, fallback="all", source="convert")
    options = replace(request.options, file_check=False, targets=(target.name,), root_given=True)
    result = infos_from_scan(scanned, can_bus, config, request.root_path, plan, version, options, reporter,
                             annotations=annotations)
    row = {token: s for s, token in enumerate(scanned.keyframes.token)}
    rows = [row[t] for t in tokens]
    used = {scanned.scenes.name[i] for i in scanned.keyframes.scene[rows].tolist()}
    no_can_bus = {name: why for name, why in result.no_can_bus.items() if name in used} if need_can_bus else {}
    build_options = options.build_options(request.root_path)
    gaps = target.gaps(result.parts, rows, annotations, build_options) if target.gaps is not None else {}
    return target.neutral_infos(result.parts, rows, annotations, build_options), no_can_bus, gaps


def convert(request: ConvertRequest, reporter: Reporter) -> Tuple[dict, List[str]]:
    """Convert `request.source` to target `request.to`; returns the summary (JSON-ready) and its lines."""
    chosen = parse_targets(request.to)
    if len(chosen) != 1:
        raise OccprepError(f"--to {request.to}: name one target (convert once per target)")
    target = chosen[0]
    data, source = read_source(request.source)

    measured = boxes.measure(*boxes.of_infos(data.get("infos", [])))
    if measured is not None and measured != source.box_convention:
        raise OccprepError(f"{request.source}: its structure is {source.name}'s ({source.box_convention} boxes) but its "
                           f"boxes are in the {measured} convention (`occprep inspect` shows it), so the boxes cannot "
                           f"be converted safely; regenerate it with `occprep create-infos --target {target.name}`")
    neutral = source.neutral(data)
    version, annotations = _version_and_annotations(data, neutral, source)
    out = output_path(request, source, target, version)
    build_options = BuildOptions(max_sweeps=request.options.max_sweeps, root_path=request.root_path,
                                 float64=request.options.float64, fixes=request.options.fixes)
    max_sweeps = target.sweeps(build_options)
    missing = _missing(neutral, target, annotations, max_sweeps)
    if missing and request.root_path is None:
        flags = "--root-path (the dataset root with the tables)" + (" and --canbus" if "can_bus" in missing else "")
        raise OccprepError(f"{request.source}: a {source.name} pickle lacks {', '.join(missing)} for {target.name}; "
                           f"pass {flags} to fill them from the tables")
    no_can_bus: Dict[str, str] = {}
    gaps: Dict[str, str] = {}
    if missing:
        tables, no_can_bus, gaps = _from_tables(request, target, version, [info["token"] for info in neutral], annotations,
                                          "can_bus" in missing, reporter)
        for info, filled in zip(neutral, tables):
            info.update({key: filled[key] for key in missing})
    for info in neutral:
        info["sweeps"] = info["sweeps"][:max_sweeps] if "sweeps" in info else []
    split = (source.parse_file_name(Path(request.source).name) or ("", "all"))[1]
    built = target.assemble(neutral, Build(version, split, annotations, dataset_config(request.config_name)),
                            build_options)
    carried = carry_over(data, source, built, merged_suffix(Path(request.source).name)[1] != "")
    with atomic_write(out) as handle:
        write_pickle(built, handle)
    lines = [f"{request.source} ({source.name}, {len(neutral)} infos, {version}) -> {out} ({target.name}, "
             f"{target.box_convention} boxes)"]
    lines += [f"  from the tables: {', '.join(missing)}"] if missing else []
    lines += [f"  carried over as they were: {', '.join(carried)}"] if carried else []
    lines += [f"  {len(no_can_bus)} scene(s) without CAN bus (zeros):", *(f"    {name}: {why}" for name, why in
                                                                          no_can_bus.items())] if no_can_bus else []
    lines += [f"  {len(gaps)} scene(s) with stand-in values:", *(f"    {name}: {why}" for name, why in
                                                                 sorted(gaps.items()))] if gaps else []
    summary = {"source": str(request.source), "source_target": source.name, "target": target.name, "out": str(out),
               "infos": len(neutral), "version": version, "filled_from_tables": missing, "carried_over": carried,
               "scenes_without_can_bus": no_can_bus, "stand_in_values": gaps}
    return summary, lines


def carry_over(data: object, source: Target, built: object, merged: bool) -> List[str]:
    """Copy onto the built records the keys the source's records have beyond its own format (what
    `merge-occ` or another tool added; for a merged file also the occupancy keys of its own format),
    values as they are; returns those keys."""
    carried: List[str] = []
    for record, out in zip(data[records_key(data)], built[records_key(built)]):
        for key in record:
            if key not in source.writes or merged and key in OCCUPANCY_KEYS:
                out[key] = record[key]
                carried.append(key)
    return list(dict.fromkeys(carried))

