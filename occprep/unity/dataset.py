"""Entry points for a Unity dataset: detect its layout, read it into tables, export it, make infos."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import msgspec

from occprep.blobs import missing_files
from occprep.config import DatasetConfig, dataset_config
from occprep.create import CreateOptions, build_infos, output_dirs, summarize, write_outputs
from occprep.errors import OccprepError
from occprep.fileio import Staging, atomic_write, write_json
from occprep.layout import fix_root_path, fix_unity_root
from occprep.records import CanBus
from occprep.reporting import Reporter
from occprep.splits import SplitPlan, plan_from_file
from occprep.tables import write_tables
from occprep.unity import perception, solo
from occprep.unity.images import write_blank_png
from occprep.unity.mapping import UnityConfig
from occprep.unity.records import Capture
from occprep.unity.totables import BLANK_MAP, UnityTables, build_tables


def _is_nuscenes(root: Path) -> bool:
    return any((d / "scene.json").is_file() for d in root.glob("v1.0-*"))


def unity_layout(root: Path) -> Optional[str]:
    """'solo' or 'perception' when `root` holds a Unity dataset, else None."""
    root = Path(root)
    if not root.is_dir() or _is_nuscenes(root):
        return None
    return "solo" if solo.find_runs(root) else "perception" if perception.find_runs(root) else None


def detect_format(root: Path) -> str:
    """'nuscenes', 'solo' or 'perception' from the folder layout under `root`."""
    if not Path(root).is_dir():
        raise OccprepError(f"--root-path {root}: folder not found")
    layout = "nuscenes" if _is_nuscenes(Path(root)) else unity_layout(Path(root))
    if layout is None:
        fix = fix_root_path(str(root)) or fix_unity_root(str(root))
        if fix is not None:
            raise OccprepError(fix.message())
        raise OccprepError(f"--root-path {root}: no nuScenes version folder (v1.0-*/scene.json), SOLO run "
                           "(sequence.<N>/) or legacy Perception run (Dataset*/captures_*.json) found; check the path "
                           "or pass --format")
    return layout


def resolve_format(root: Path, format_: str) -> str:
    """`format_`, or the detected layout for 'auto'."""
    return detect_format(root) if format_ == "auto" else format_


def read_captures(root: Path, format_: str, reporter: Reporter) -> Iterator[Capture]:
    """The captures of a 'solo' or 'perception' dataset, with progress."""
    reader = {"solo": solo.read_captures, "perception": perception.read_captures}[format_]
    return reporter.progress(reader(root), desc=f"{format_} captures", unit="capture")


def read_unity(root: Path, format_: str, config: UnityConfig, reporter: Reporter) -> UnityTables:
    """A Unity dataset as nuScenes tables and CAN bus poses."""
    if format_ not in ("solo", "perception"):
        raise OccprepError(f"{root}: --format {format_} is not a Unity format (solo or perception)")
    unity = build_tables(read_captures(Path(root), format_, reporter), config, f"--root-path {root}")
    labels, sensor_ids = {"solo": solo.defined_names, "perception": perception.defined_names}[format_](Path(root))
    config.check_names(unity.labels | labels, unity.sensor_ids | sensor_ids)
    return unity


def infos_config(unity: UnityTables, config: UnityConfig) -> DatasetConfig:
    """The dataset convention create-infos uses for a Unity dataset: its cameras, the base names."""
    base = dataset_config(config.dataset)
    return DatasetConfig(name=f"unity-{config.name}", lidar_channel=config.lidar_channel,
                         camera_channels=unity.camera_channels, detection_names=base.detection_names,
                         label_orders=base.label_orders)


def write_can_bus(folder: Path, unity: UnityTables) -> None:
    """`<folder>/can_bus/{scene}_pose.json` per scene, in the CAN bus expansion's format."""
    for scene, poses in unity.can_bus.items():
        messages = [{"accel": poses.accel[i].tolist(), "orientation": poses.orientation[i].tolist(),
                     "pos": poses.pos[i].tolist(), "rotation_rate": poses.rotation_rate[i].tolist(),
                     "utime": int(poses.utime[i]), "vel": poses.vel[i].tolist()} for i in range(len(poses.utime))]
        path = Path(folder) / "can_bus" / f"{scene}_pose.json"
        with atomic_write(path) as handle:
            handle.write(msgspec.json.encode(messages))


def export_nuscenes(root: Path, out: Path, version: str, format_: str, config: UnityConfig,
                    reporter: Reporter) -> Tuple[dict, List[str]]:
    """Write a Unity dataset as `<out>/<version>/` tables, `<out>/can_bus/` and a blank map mask.

    Returns the summary (JSON-ready) and its text lines.
    """
    format_ = resolve_format(root, format_)
    unity = read_unity(root, format_, config, reporter)
    write_tables(Path(out) / version, unity.tables)
    write_blank_png(Path(out) / BLANK_MAP, 1, 1)
    write_can_bus(out, unity)
    dataset = Path(out) / EXPORT_CONFIG
    write_json(dataset, msgspec.to_builtins(export_config(unity, config)))
    summary = {"format": format_, "version": version, "out": str(out), "dataset_config": str(dataset), **unity.summary}
    return summary, [f"{format_} dataset {root}: {_counts(unity.summary)}",
                     f"wrote {Path(out) / version} (13 tables), {Path(out) / 'can_bus'} "
                     f"({len(unity.can_bus)} pose files), {Path(out) / BLANK_MAP}, {dataset}",
                     f"next: occprep create-infos --root-path {out} --canbus {out} --version {version} "
                     f"--config {dataset} --splits FILE (its scenes are in no official split list)",
                     *_notes(unity.summary)]


EXPORT_CONFIG = "dataset-config.json"
"""The dataset convention `export-nuscenes` writes beside the tables (for `--config`)."""


def export_config(unity: UnityTables, config: UnityConfig) -> DatasetConfig:
    """The convention of an exported Unity dataset: its cameras, and the base config's detection names
    and label orders for the categories it holds."""
    categories = {c.name for c in unity.tables.category}
    base = infos_config(unity, config)
    return msgspec.structs.replace(base, detection_names={k: v for k, v in base.detection_names.items()
                                                          if k in categories})


def _counts(summary: dict) -> str:
    return (f"{summary['scenes']} scene(s), {summary['samples']} sample(s), {summary['captures']} capture(s) "
            f"from {summary['cameras']} camera(s), {summary['boxes']} box(es)")


def _notes(summary: dict) -> List[str]:
    notes = []
    if summary["boxes_without_visibility"]:
        notes.append(f"{summary['boxes_without_visibility']} box(es) had no rendered-object-info metric: "
                     "num_lidar_pts=1 (Unity labels only visible objects), visibility from the share of "
                     "the box's silhouette inside the image")
    if summary["duplicate_boxes"]:
        notes.append(f"{summary['duplicate_boxes']} box(es) seen by a second camera at the same step: "
                     "the first camera's box is kept, visible pixels are summed")
    return notes


def create_unity_infos(root_path: str, out_dir: Path, extra_tag: str, format_: str, config: UnityConfig,
                       version: str, splits_file: Optional[Path], options: CreateOptions,
                       reporter: Reporter) -> Tuple[dict, List[str]]:
    """create-infos for a Unity dataset: read it into tables, run the shared pipeline, write the pickles.

    Every scene goes to 'train' unless `splits_file` lists them. The virtual LIDAR_TOP has no
    files: infos get no sweeps, and the keyframe file check looks at the camera images only (a
    missing one is an error).
    Returns the summary (JSON-ready) and its text lines.
    """
    chosen = options.chosen_targets()
    unity = read_unity(Path(root_path), format_, config, reporter)
    tables = unity.tables
    if options.file_check:
        cameras = [d.filename for d in tables.sample_data if d.width]
        missing = missing_files(Path(root_path), cameras, reporter)
        if missing.any():
            raise OccprepError(f"{int(missing.sum())} camera image(s) missing under {root_path}, e.g. "
                               f"{cameras[int(missing.argmax())]}; fix --root-path or pass --no-file-check")
    plan = plan_from_file(splits_file) if splits_file is not None else SplitPlan(
        ("train",), {s.name: "train" for s in tables.scene}, fallback=None, source="all Unity scenes")
    plan.check_scenes([s.name for s in tables.scene], f"the Unity dataset {root_path}")
    options = replace(options, file_check=False, max_sweeps=0)
    result = build_infos(tables, CanBus(unity.can_bus, {}), infos_config(unity, config), root_path, plan, version,
                         options, reporter)
    out_dirs, shared = output_dirs(chosen, Path(out_dir), options.out_dir_given)
    with Staging() as staging:
        write_outputs(result, chosen, out_dirs, extra_tag, options.build_options(root_path), staging, reporter)
    summary, lines = summarize([result], [], reporter.elapsed, shared)
    return ({"format": format_, "unity": unity.summary, **summary},
            [f"{format_} dataset {root_path}: {_counts(unity.summary)}", *_notes(unity.summary), *lines])
