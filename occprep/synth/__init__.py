"""`occprep synth`: a synthetic dataset in the exact on-disk format of nuScenes, at any scale.

Entry point: `synthesize(out, ...)`. Every scene is generated from its own random stream
(seed, scene number), so a scene's content does not depend on which other scenes are written.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import msgspec
import numpy as np
from pyquaternion import Quaternion

from occprep.config import dataset_config, occupancy_format
from occprep.errors import OccprepError
from occprep.fileio import atomic_write, write_json
from occprep.layout import OCCUPANCY_ROOTS
from occprep.names import check_names
from occprep.occupancy import FORMATS
from occprep.reporting import Reporter
from occprep.synth.blobs import BLOB_MODES, write_blobs
from occprep.synth.canbus import pose_messages, steering_messages, write_can_bus
from occprep.synth.nuscenes_tables import (KEYFRAME_HZ, Keyframe, lidar_timeline, lidar_times, scene_tables, sensor_timeline,
                                           static_tables, table_stream)
from occprep.synth.occupancy import (Grid, Occupied, Solid, class_ids, write_occ3d, write_openocc, write_openocc_v2,
                                     write_voxel_list)
from occprep.synth.scenes import VERSIONS, ScenePlan, plan_log, select_scenes, tokens
from occprep.synth.spec import Rig, SynthSpec, load_rig, load_synth_spec
from occprep.synth.world import make_agents, make_background, make_ego_track
from occprep.tables import write_table

OCC_FOLDERS = {name: OCCUPANCY_ROOTS[name].usual for name in FORMATS}
"""Occupancy format -> its root under the synth output, the folder each release is usually extracted to
beside `nuscenes/` (the `--occ-root` to merge it from)."""
OPENOCC_PATH_PREFIX = "./data/occ_gt_release_v1_0"
"""Index JSON paths follow the published convention (cwd-relative, valid when DIR is ./data)."""

__all__ = ["synthesize", "SynthSummary", "summary_lines", "default_occ", "OCC_FOLDERS", "BLOB_MODES", "VERSIONS",
           "FILES_VERSION"]


class SynthSummary(msgspec.Struct):
    """What a synth run wrote."""

    out: str
    version: str
    scenes: int
    samples: int
    sample_data: int
    annotations: int
    instances: int
    can_bus_scenes: List[str]
    can_bus_skipped: Dict[str, str]
    """Scene name -> why it has no CAN bus files."""
    occ_formats: List[str]
    occ_frames: int
    """Keyframes with occupancy written (per format)."""
    blobs: str
    blob_files: int
    wall_time_s: float


def summary_lines(summary: SynthSummary) -> List[str]:
    """The closing summary of a synth run, for people."""
    skipped = ", ".join(f"{name} ({why})" for name, why in summary.can_bus_skipped.items()) or "none"
    return [f"synth {summary.version}: {summary.scenes} scenes, {summary.samples} samples, "
            f"{summary.sample_data} sample_data, {summary.annotations} annotations "
            f"({summary.instances} instances) -> {summary.out}",
            f"  CAN bus: {len(summary.can_bus_scenes)} scenes written; without: {skipped}",
            f"  occupancy: {summary.occ_frames} keyframes x {', '.join(summary.occ_formats) or 'no formats'}; "
            f"blobs: {summary.blobs} ({summary.blob_files} files); {summary.wall_time_s:.1f} s"]


DEFAULT_MINI_OCC = ("openocc-v1", "occ3d", "openocc-v2")
FILES_VERSION = 2
"""Bumped whenever the set of files synth writes changes (2: CAN bus steering files), so a dataset
synthesised by an older occprep is not mistaken for a current one (`occprep bench` reuses datasets)."""
"""The layouts v1.0-mini gets by default: the voxel lists are 2-7 MB per keyframe (`--occ` writes them)."""


def default_occ(version: str) -> tuple:
    """Occupancy formats written when none are given: `DEFAULT_MINI_OCC` for v1.0-mini, none for the big versions."""
    return DEFAULT_MINI_OCC if version == "v1.0-mini" else ()


def synthesize(out: Path, version: str = "v1.0-mini", scenes: Optional[int] = None, samples_per_scene: int = 40,
               seed: int = 0, occ: Optional[Sequence[str]] = None, blobs: str = "none",
               without_can_bus: Sequence[str] = (), reporter: Optional[Reporter] = None,
               boxes_per_sample: Optional[int] = None) -> SynthSummary:
    """Write a synthetic nuScenes-format dataset under `out`.

    Layout: `nuscenes/<version>/*.json` (13 tables), `nuscenes/maps/`, `nuscenes/samples|sweeps/`
    (if `blobs` is 'empty' or 'tiny'), `can_bus/<scene>_{pose,steeranglefeedback,meta}.json`, and each occupancy layout
    `occ` names in its `OCC_FOLDERS` root: OpenOcc v1 `occ_gt_release_v1_0/`, Occ3D `nuscenes/gts/` +
    `nuscenes/annotations.json`, OpenOcc v2 `nuscenes/openocc_v2/`, SurroundOcc `nuscenes_occ/samples/`,
    OpenOccupancy `nuScenes-Occupancy/scene_<token>/occupancy/`.
    `occ=None` means `default_occ(version)`; test scenes never get occupancy or CAN bus.
    `without_can_bus`: scene names to leave without CAN bus files (besides the devkit blacklist).
    `boxes_per_sample`: about how many annotations each sample gets (default: the spec's, 30; nuScenes
    trainval averages about 34, the real mini scene-0916 59).
    """
    reporter = reporter or Reporter("synth", quiet=True)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OccprepError(f"--out {out}: exists and is not a folder; give a folder path")
    plans = select_scenes(version, scenes)
    if samples_per_scene < 2:
        raise OccprepError(f"--samples-per-scene {samples_per_scene}: give at least 2")
    if blobs not in BLOB_MODES:
        raise OccprepError(f"--blobs {blobs!r}: use one of {', '.join(BLOB_MODES)}")
    occ = tuple(default_occ(version) if occ is None else occ)
    unknown = [f for f in occ if f not in FORMATS]
    if unknown:
        raise OccprepError(f"--occ {','.join(unknown)}: use a comma-separated subset of {','.join(FORMATS)}")
    if version == "v1.0-test":
        occ = ()
    check_names(without_can_bus, {p.name for p in plans}, "scene", f"--without-can-bus {','.join(without_can_bus)}",
                f"name scenes among the {len(plans)} written ({version}, --scenes {len(plans)})")

    if boxes_per_sample is not None and boxes_per_sample < 1:
        raise OccprepError(f"--boxes-per-sample {boxes_per_sample}: give 1 or more")
    spec, rig, dataset = load_synth_spec(), load_rig(), dataset_config("nuscenes")
    if boxes_per_sample is not None:
        spec = msgspec.structs.replace(spec, annotations_per_sample=boxes_per_sample)
    log_index = sorted({p.number // spec.scenes_per_log for p in plans})
    logs = [plan_log(spec, i, seed) for i in log_index]
    log_tokens = [tokens(np.random.default_rng([seed, 1, i, 1]), 1)[0] for i in log_index]
    static = static_tables(spec, rig, logs, log_tokens, seed)
    log_of = {i: (plan, token) for i, plan, token in zip(log_index, logs, log_tokens)}
    writer = _OccWriter(out, occ, dataset, spec, rig)

    dataroot = out / "nuscenes"
    version_dir = dataroot / version
    small = {"scene": [], "sample": [], "instance": [], "calibrated_sensor": []}
    totals = dict(samples=0, sample_data=0, annotations=0, instances=0, blob_files=0)
    can_bus_scenes, can_bus_skipped = [], {}
    with contextlib.ExitStack() as stack:
        streams = {name: stack.enter_context(table_stream(version_dir / f"{name}.json"))
                   for name in ("sample_data", "ego_pose", "sample_annotation")}
        for plan in reporter.progress(plans, desc="synth scenes", unit="scene"):
            log, log_token = log_of[plan.number // spec.scenes_per_log]
            tables, ego, first_us, last_us = _scene(plan, log, log_token, spec, rig, static, dataset, seed,
                                                    samples_per_scene)
            streams["sample_data"].extend(tables.sample_data)
            streams["ego_pose"].extend(tables.ego_pose)
            streams["sample_annotation"].extend(tables.sample_annotation)
            for name in small:
                small[name].extend([tables.scene] if name == "scene" else getattr(tables, name))
            totals["samples"] += len(tables.sample)
            totals["sample_data"] += len(tables.sample_data)
            totals["annotations"] += len(tables.sample_annotation)
            totals["instances"] += len(tables.instance)
            totals["blob_files"] += write_blobs(dataroot, tables.sample_data, blobs)
            reason = _no_can_bus_reason(plan, dataset.can_bus_blacklist, without_can_bus)
            if reason:
                can_bus_skipped[plan.name] = reason
            else:
                lead = np.random.default_rng([seed, 3, plan.number]).integers(*spec.can_bus_lead_us)
                start_us = first_us - int(lead)
                write_can_bus(out / "can_bus", plan.name, pose_messages(ego, start_us, last_us),
                              steering_messages(ego, start_us, last_us))
                can_bus_scenes.append(plan.name)
            writer.scene(plan, tables.keyframes, ego, make_background(
                np.random.default_rng([seed, 4, plan.number]), spec, ego))
        for name in small:
            write_table(version_dir, name, small[name])
        for name in ("attribute", "category", "visibility", "sensor", "log", "map"):
            write_table(version_dir, name, getattr(static, name))
    _write_maps(dataroot, static.map)
    writer.finish(plans)
    return SynthSummary(str(out), version, len(plans), totals["samples"], totals["sample_data"],
                        totals["annotations"], totals["instances"], can_bus_scenes, can_bus_skipped, list(occ),
                        writer.frames, blobs, totals["blob_files"], round(reporter.elapsed, 3))


def _no_can_bus_reason(plan: ScenePlan, blacklist: Sequence[int], without: Sequence[str]) -> str:
    if plan.split == "test":
        return "test scene (occprep follows infos-format.md: no CAN bus for test)"
    if plan.number in blacklist:
        return "in the devkit's CAN bus blacklist"
    if plan.name in without:
        return "--without-can-bus"
    return ""


def _scene(plan: ScenePlan, log, log_token: str, spec: SynthSpec, rig: Rig, static, dataset, seed: int,
           samples_per_scene: int):
    """Tables and ego track of one scene, from the random stream (seed, 2, scene number)."""
    rng = np.random.default_rng([seed, 2, plan.number])
    slot = plan.number % spec.scenes_per_log
    start_us = log.start_us + slot * int((samples_per_scene / 2 + spec.scene_gap_s[1]) * 1e6) + int(
        rng.uniform(*spec.scene_gap_s) * 1e6)
    sweep_us = lidar_times(rng, rig, dataset.lidar_channel, start_us, samples_per_scene)
    lidar = rig.sensor(dataset.lidar_channel)
    sample_us = sweep_us[:: round(lidar.rate_hz / KEYFRAME_HZ)]
    timelines = [lidar_timeline(s, sweep_us) if s.channel == lidar.channel else sensor_timeline(rng, s, sample_us)
                 for s in rig.sensors]
    first_us = min(int(t.time_us[0]) for t in timelines)
    last_us = max(int(t.time_us[-1]) for t in timelines)
    ego = make_ego_track(rng, first_us, last_us)
    agents = make_agents(rng, spec, ego, sample_us)
    tables = scene_tables(rng, plan, log, log_token, spec, rig, static, timelines, sample_us, ego, agents)
    if plan.split == "test":
        # Like the real test release: no annotations (the keyframes keep their boxes for nobody).
        tables.instance, tables.sample_annotation = [], []
    return tables, ego, int(sample_us[0]), int(sample_us[-1])


def _write_maps(dataroot: Path, maps) -> None:
    """A small blank semantic-prior mask per map record."""
    from PIL import Image

    for record in maps:
        with atomic_write(dataroot / record.filename) as handle:
            Image.new("L", (64, 64), 0).save(handle, format="PNG")


def _transform(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rotation, translation
    return matrix


class _OccWriter:
    """Occupancy of every keyframe in the requested formats, and the index files at the end."""

    def __init__(self, out: Path, formats: Sequence[str], dataset, spec: SynthSpec, rig: Rig) -> None:
        self.out, self.spec = out, spec
        self.grids = {name: Grid(occupancy_format(name)) for name in formats}
        lidar = rig.sensor(dataset.lidar_channel)
        self.ego_from_lidar = _transform(Quaternion(lidar.rotation).rotation_matrix, np.array(lidar.translation))
        detection = [dataset.detection_names.get(c.name) for c in spec.categories]
        self.category_label = {name: class_ids(g.fmt, detection) for name, g in self.grids.items()}
        self.background_label = {name: class_ids(g.fmt, list(spec.background.classes)) for name, g in self.grids.items()}
        self.openocc: Dict[str, dict] = {}
        self.occ3d: Dict[str, dict] = {}
        self.splits: Dict[str, List[str]] = {}
        self.frames = 0

    def scene(self, plan: ScenePlan, keyframes: List[Keyframe], ego, background) -> None:
        if not self.grids:
            return
        self.splits.setdefault(plan.split, []).append(plan.name)
        blocks = {name: Solid(background.centre, background.size, background.yaw,
                              self.background_label[name][background.label], np.zeros((len(background.yaw), 2)))
                  for name in self.grids}
        for key in keyframes:
            ego_from_global = np.linalg.inv(_transform(Quaternion(axis=[0, 0, 1], angle=key.ego_yaw).rotation_matrix,
                                                       np.array([*key.ego_xy, 0.0])))
            occupied: Dict[tuple, Occupied] = {}  # formats of the same frame and grid share it
            for name, grid in self.grids.items():
                grid_from_ego = np.linalg.inv(self.ego_from_lidar) if grid.fmt.frame == "lidar" else np.eye(4)
                grid_from_global = grid_from_ego @ ego_from_global
                flow = key.boxes.velocity @ grid_from_global[:2, :2].T
                objects = Solid(key.boxes.centre, key.boxes.size, key.boxes.yaw,
                                self.category_label[name][key.boxes.category], flow)
                lidar_origin = (grid_from_ego @ self.ego_from_lidar)[:3, 3]
                solids = [blocks[name], objects]
                geometry = grid.geometry()
                if geometry not in occupied:
                    occupied[geometry] = grid.occupy(grid_from_global, solids, self.spec.visibility_rule, lidar_origin)
                vox = grid.label(occupied[geometry], solids)
                self._write(name, plan, key, vox)
            self.frames += 1

    def _write(self, name: str, plan: ScenePlan, key: Keyframe, vox) -> None:
        """One keyframe's files in layout `name`, where `OCC_FOLDERS` puts that layout."""
        folder = self.out / OCC_FOLDERS[name]
        if name == "openocc-v1":
            paths = write_openocc(folder / plan.split / plan.name, key.index, vox)
            self.openocc.setdefault(plan.split, {}).setdefault(plan.name, {})[key.token] = {
                k: f"{OPENOCC_PATH_PREFIX}/{p.relative_to(folder).as_posix()}" for k, p in paths.items()}
        elif name == "occ3d":
            relative = f"gts/{plan.name}/{key.token}/labels.npz"
            write_occ3d(folder / relative, vox)
            self.occ3d.setdefault(plan.name, {})[key.token] = {"timestamp": key.timestamp, "gt_path": relative}
        elif name == "openocc-v2":
            write_openocc_v2(folder / "openocc_v2" / plan.name / key.token / "labels.npz", vox)
        elif name == "surroundocc":
            write_voxel_list(folder / "samples" / f"{Path(key.lidar_filename).name}.npy", vox, "xyz", np.int64)
        else:
            write_voxel_list(folder / f"scene_{key.scene_token}" / "occupancy" / f"{key.lidar_token}.npy", vox, "zyx",
                             np.int16)

    def finish(self, plans: Sequence[ScenePlan]) -> None:
        if "openocc-v1" in self.grids:
            for split in ("train", "val"):
                if split in self.openocc:
                    write_json(self.out / OCC_FOLDERS["openocc-v1"] / f"occ_gt_{split}.json", self.openocc[split])
        if "occ3d" in self.grids:
            write_json(self.out / OCC_FOLDERS["occ3d"] / "annotations.json",
                       {"train_split": self.splits.get("train", []), "val_split": self.splits.get("val", []),
                        "scene_infos": self.occ3d})
