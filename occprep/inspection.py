"""`occprep inspect`: what an info pickle holds, and what each consumer would miss in it.

Works on any info pickle: occprep's, the reference scripts', mmdet3d 1.x `data_list` pickles, or
one downloaded from a link (loaded with the safe `load_pickle`). Consumers' key lists are data:
`configs/consumers.json`.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import msgspec
import numpy as np

from occprep import boxes
from occprep.config import config_dir
from occprep.errors import OccprepError
from occprep.fileio import read_json
from occprep.infos import GT_KEYS
from occprep.pickles import load_pickle
from occprep.se3 import SE3
from occprep.targets import OCCUPANCY_KEYS, OCCUPANCY_PATH_KEYS, Target, consumer_file_format, identify, targets


LEGACY = "legacy (infos/metadata, mmdet3d < 1.0)"
V1X = "mmdet3d 1.x (data_list/metainfo)"


class Consumer(msgspec.Struct, frozen=True):
    """A training code base and the info keys it reads."""

    name: str
    reads: str
    """Pickle generation it reads: 'legacy' or 'v1.x'."""
    info_keys: Tuple[str, ...]
    cam_keys: Tuple[str, ...]
    """Keys it reads from each entry of `info['cams']` (1.x: of `images`)."""
    boxes: str = "legacy"
    """The box convention it builds its boxes in (`occprep.boxes`)."""
    note: str = ""


class _Consumers(msgspec.Struct):
    consumers: Tuple[Consumer, ...]


def consumers(path: Optional[Path] = None) -> Tuple[Consumer, ...]:
    """The consumers of `path` (default: the bundled configs/consumers.json)."""
    return read_json(path or config_dir() / "consumers.json", _Consumers).consumers


class ConsumerFit(msgspec.Struct, frozen=True):
    """Which keys a consumer reads that the pickle lacks (in at least one info)."""

    name: str
    missing_info_keys: Tuple[str, ...]
    missing_cam_keys: Tuple[str, ...]
    wrong_generation: bool
    wrong_boxes: bool = False
    """The boxes are measurably in the other convention than the consumer's."""

    @property
    def ok(self) -> bool:
        return not (self.missing_info_keys or self.missing_cam_keys or self.wrong_generation or self.wrong_boxes)


class PathRoot(msgspec.Struct, frozen=True):
    """Where the paths under one key point: their common prefix and how many exist from the cwd."""

    key: str
    count: int
    root: str
    """Longest common directory prefix of the paths, as written in the pickle."""
    checked: int
    """How many paths were checked (all, or an evenly spaced sample)."""
    found: int
    """How many of the checked paths exist, resolved against the current directory."""
    better_base: Optional[str] = None
    """When fewer exist from the cwd: the pickle's folder or parent that more of them resolve from."""
    found_from_better_base: int = 0


class InfoReport(msgspec.Struct):
    """What `occprep inspect` finds in one info pickle."""

    path: str
    generation: str
    version: Optional[str]
    samples: int
    scenes: Optional[int]
    """Distinct scene tokens (None when infos carry no scene_token)."""
    samples_per_scene: Dict[str, float]
    """min / max / mean samples per scene."""
    keys: Dict[str, int]
    """Info key -> number of infos that have it."""
    cam_keys: Dict[str, int]
    """Camera-entry key -> number of camera entries that have it."""
    consumers: List[ConsumerFit]
    classes: Dict[str, int]
    """Class name -> number of boxes (gt_names, or the 1.x instance labels)."""
    zero_can_bus: Optional[int]
    """Infos whose can_bus is missing or all zeros (None: no info has can_bus; the format has none)."""
    zero_can_bus_scenes: List[str]
    without_occupancy: int
    """Infos with none of OCCUPANCY_KEYS."""
    paths: List[PathRoot]
    paths_checked: str
    """'all' or 'sample of N per key'."""
    target: Optional[str] = None
    """The occprep target whose structure and keys the pickle has (None: none of them)."""
    file_name_matches: bool = True
    """Whether the file name is the one that target writes."""
    box_convention: Optional[str] = None
    """The box convention measured from the boxes ('legacy' or 'rc'; None: the boxes do not tell)."""
    long_first_share: Optional[float] = None
    """Share of car-like boxes whose first size is the larger (rc: ~1, legacy: ~0)."""
    warnings: List[str] = []
    """Disagreements between structure, name and measured conventions."""
    parts: Optional[int] = None
    """For a `--sharded-output` index: the pickles described together."""


def inspect_pickle(path: Path, all_paths: bool = False, sample_size: int = 200,
                   consumer_list: Optional[Sequence[Consumer]] = None) -> InfoReport:
    """Load `path` safely and describe it; `all_paths` checks every path instead of a sample. `path` may be
    a `--sharded-output` index: its parts are described together."""
    data, file_name, parts = load_infos(path)
    generation, infos, version = unwrap_infos(path, data)
    own_keys = Counter(k for info in infos for k in info)
    if generation == V1X:
        infos = [_flatten_v1x(info, data.get("metainfo", {})) for info in infos]
    keys = Counter(k for info in infos for k in info)
    if version and "test" in version and not any(keys[k] for k in GT_KEYS):
        keys.update({k: len(infos) for k in GT_KEYS})  # a test set has no annotations to miss
    cams = [cam for info in infos for cam in _cams(info).values()]
    cam_keys = Counter(k for cam in cams for k in cam)
    scene_counts = Counter(info["scene_token"] for info in infos if "scene_token" in info)
    per_scene = list(scene_counts.values())
    zero = [info for info in infos if not _has_can_bus(info)] if keys["can_bus"] else []
    target = identify(data, file_name)
    measured = boxes.of_infos(infos)
    return InfoReport(
        path=str(path), generation=generation, version=version, samples=len(infos),
        scenes=len(scene_counts) if scene_counts else None,
        samples_per_scene=({"min": min(per_scene), "max": max(per_scene),
                            "mean": round(float(np.mean(per_scene)), 2)} if per_scene else {}),
        keys=dict(sorted(own_keys.items())), cam_keys=dict(sorted(cam_keys.items())),
        consumers=[_fit(c, generation, infos, keys, cam_keys, len(cams), boxes.measure(*measured))
                   for c in (consumer_list or consumers())],
        classes=dict(sorted(Counter(str(n) for info in infos for n in info.get("gt_names", ())).items(),
                            key=lambda kv: (-kv[1], kv[0]))),
        zero_can_bus=len(zero) if keys["can_bus"] else None,
        zero_can_bus_scenes=sorted({str(i.get("scene_name", i.get("scene_token", "?"))) for i in zero}),
        without_occupancy=sum(not any(k in info for k in OCCUPANCY_KEYS) for info in infos),
        paths=_path_roots(infos, None if all_paths else sample_size, path),
        paths_checked="all" if all_paths else f"sample of up to {sample_size} per key",
        target=target.name if target else None,
        file_name_matches=_file_name_matches(target, file_name),
        box_convention=boxes.measure(*measured), long_first_share=boxes.long_first_share(*measured),
        warnings=_warnings(target, file_name, boxes.measure(*measured), infos), parts=parts,
    )


def load_infos(path: Path) -> Tuple[object, str, Optional[int]]:
    """(the loaded info pickle, the file name it has or stands for, how many pickles it was joined from) of
    an info pickle or of a `--sharded-output` index (`occprep.sharded.ShardedInfos`: its parts' infos
    joined in index order, None parts for a plain pickle). Raises OccprepError for an index whose parts
    are missing or hold other sample counts than it says."""
    from occprep.sharded import SHARDED_INFOS, ShardedInfos

    if Path(path).suffix != ".json":
        return load_pickle(path), Path(path).name, None
    index = read_json(path, ShardedInfos)
    if index.format != SHARDED_INFOS:
        raise OccprepError(f"{path}: not an index of sharded infos (format {index.format!r}, expected {SHARDED_INFOS})")
    joined: Optional[dict] = None
    for part in index.parts:
        part_path = Path(path).parent / part.path
        data = load_pickle(part_path)
        generation, infos, _ = unwrap_infos(part_path, data)
        if len(infos) != part.samples:
            raise OccprepError(f"{part_path}: holds {len(infos):,} infos, its index {path} says {part.samples:,}; "
                               "run create-infos --sharded-output again")
        if joined is None:
            joined = data
        else:
            joined["infos" if generation == LEGACY else "data_list"].extend(infos)
    if joined is None:
        raise OccprepError(f"{path}: the index names no parts; run create-infos --sharded-output again")
    return joined, index.file_name, len(index.parts)


def _file_name_matches(target: Optional[Target], file_name: str) -> bool:
    """Whether `file_name` is one `target` writes, or the name merge-occ gives its infos for an occupancy consumer."""
    return bool(target and (target.parse_file_name(file_name)
                            or target.name == "bevformer" and consumer_file_format(file_name)))


def _warnings(target, file_name: str, measured: Optional[str], infos: list) -> List[str]:
    """Loud disagreements: boxes of the other convention than the structure says, a file name of
    another target, BEVDet ann_infos outside its ego frame."""
    warnings = []
    if target is None:
        return [f"the structure and keys match no target ({', '.join(targets())})"]
    if measured is not None and measured != target.box_convention:
        warnings.append(f"the structure is {target.name}'s ({target.box_convention} boxes), but the boxes are in the "
                        f"{measured} convention: a {target.name} consumer would train on wrong boxes; regenerate it "
                        f"with `occprep create-infos --target {target.name}` or `occprep convert`")
    if not _file_name_matches(target, file_name):
        warnings.append(f"the file name is not {target.file_pattern}, the name {target.name} consumers look for")
    if target.name == "bevdet" and bevdet_boxes_in_lidar_frame(infos):
        warnings.append("ann_infos boxes sit where gt_boxes are in the LiDAR frame, not in BEVDet's ego frame at "
                        "CAM_FRONT's time: FlashOcc would train on shifted boxes")
    return warnings


def bevdet_boxes_in_lidar_frame(infos: list) -> bool:
    """Whether BEVDet `ann_infos` centres are closer to the LiDAR-frame `gt_boxes` centres than to those
    centres moved into the ego frame at CAM_FRONT's time (checked on up to 20 infos with boxes)."""
    closer_to_lidar = closer_to_ego = 0
    for info in [i for i in infos if i.get("ann_infos") and len(i["ann_infos"][0]) and "gt_boxes" in i][:20]:
        lidar = np.asarray(info["gt_boxes"], dtype=np.float64)[:, :3]
        ego_from_lidar = SE3.from_quaternions(np.array(info["lidar2ego_rotation"]), np.array(info["lidar2ego_translation"]))
        global_from_ego = SE3.from_quaternions(np.array(info["ego2global_rotation"]),
                                               np.array(info["ego2global_translation"]))
        front = info["cams"]["CAM_FRONT"]
        global_from_front = SE3.from_quaternions(np.array(front["ego2global_rotation"]),
                                                 np.array(front["ego2global_translation"]))
        ego = global_from_front.inverse().compose(global_from_ego).compose(ego_from_lidar).apply(lidar)
        centres = np.asarray(info["ann_infos"][0], dtype=np.float64)[:, :3]
        to_lidar = np.linalg.norm(centres[:, None] - lidar[None], axis=2).min(axis=1)
        to_ego = np.linalg.norm(centres[:, None] - ego[None], axis=2).min(axis=1)
        closer_to_lidar += int(np.median(to_lidar) < np.median(to_ego))
        closer_to_ego += int(np.median(to_ego) < np.median(to_lidar))
    return closer_to_lidar > closer_to_ego


def unwrap_infos(path: Path, data: object) -> Tuple[str, list, Optional[str]]:
    """(generation, list of infos, version) of a loaded info pickle (LEGACY or V1X); an error when it is
    not one (records that are not dicts included)."""
    for generation, key, meta in ((LEGACY, "infos", "metadata"), (V1X, "data_list", "metainfo")):
        if isinstance(data, dict) and isinstance(data.get(key), list):
            bad = next((i for i, record in enumerate(data[key]) if not isinstance(record, dict)), None)
            if bad is not None:
                raise OccprepError(f"{path}: {key}[{bad}] is a {type(data[key][bad]).__name__}, not a dict; "
                                   "not an info pickle")
            meta_value = data.get(meta)
            return generation, data[key], meta_value.get("version") if isinstance(meta_value, dict) else None
    shape = f"a dict with keys {sorted(map(str, data))[:8]}" if isinstance(data, dict) else type(data).__name__
    raise OccprepError(f"{path}: not an info pickle (expected a dict with 'infos' or 'data_list', found {shape})")


def _flatten_v1x(info: dict, metainfo: dict) -> dict:
    """A 1.x data_list entry with its lidar path, cameras and box names where legacy infos keep them."""
    flat = dict(info)
    if isinstance(info.get("lidar_points"), dict) and "lidar_path" in info["lidar_points"]:
        flat["lidar_path"] = info["lidar_points"]["lidar_path"]
    if isinstance(info.get("images"), dict):
        flat["cams"] = {name: {"data_path": cam.get("img_path"), **cam} for name, cam in info["images"].items()}
    names = {label: name for name, label in (metainfo.get("categories") or {}).items() if label != -1}
    names[-1] = "(ignored, label -1)"  # several categories share it: the name is not in the pickle
    if isinstance(info.get("instances"), list):
        flat["gt_names"] = [names.get(inst.get("bbox_label_3d"), str(inst.get("bbox_label_3d")))
                            for inst in info["instances"]]
        if all("bbox_3d" in inst for inst in info["instances"]):
            flat["gt_boxes"] = [inst["bbox_3d"] for inst in info["instances"]]
    return flat


def _cams(info: dict) -> Dict[str, dict]:
    cams = info.get("cams")
    return {k: v for k, v in cams.items() if isinstance(v, dict)} if isinstance(cams, dict) else {}


def _has_can_bus(info: dict) -> bool:
    can_bus = info.get("can_bus")
    return can_bus is not None and bool(np.any(np.asarray(can_bus, dtype=float) != 0))


def _fit(consumer: Consumer, generation: str, infos: list, keys: Counter, cam_keys: Counter,
         n_cams: int, measured: Optional[str]) -> ConsumerFit:
    return ConsumerFit(
        name=consumer.name,
        missing_info_keys=tuple(k for k in consumer.info_keys if keys[k] < len(infos)),
        missing_cam_keys=tuple(k for k in consumer.cam_keys if infos and (cam_keys[k] < n_cams or not n_cams)),
        wrong_generation=(consumer.reads == "legacy") != (generation == LEGACY),
        wrong_boxes=measured is not None and measured != consumer.boxes,
    )


def _paths_by_key(infos: list) -> Dict[str, List[str]]:
    """Path strings per key family: lidar_path, cams.data_path, sweeps.data_path and the occupancy keys."""
    paths: Dict[str, List[str]] = {}
    for info in infos:
        for key in ("lidar_path",) + OCCUPANCY_PATH_KEYS:
            if isinstance(info.get(key), str):
                paths.setdefault(key, []).append(info[key])
        for cam in _cams(info).values():
            if isinstance(cam.get("data_path"), str):
                paths.setdefault("cams.data_path", []).append(cam["data_path"])
        for sweep in info.get("sweeps") or ():
            if isinstance(sweep, dict) and isinstance(sweep.get("data_path"), str):
                paths.setdefault("sweeps.data_path", []).append(sweep["data_path"])
    return paths


def _path_roots(infos: list, sample_size: Optional[int], pickle_path: Path) -> List[PathRoot]:
    roots = []
    folder = Path(os.path.abspath(pickle_path)).parent
    for key, paths in _paths_by_key(infos).items():
        if sample_size is None or len(paths) <= sample_size:
            checked = paths
        else:
            checked = [paths[i] for i in np.linspace(0, len(paths) - 1, sample_size).round().astype(int)]
        prefix = os.path.commonprefix(paths)
        found = sum(os.path.exists(p) for p in checked)
        base, found_there = _better_base(checked, found, (folder, *folder.parents))
        roots.append(PathRoot(key=key, count=len(paths), root=prefix[: prefix.rfind("/") + 1], checked=len(checked),
                              found=found, better_base=base, found_from_better_base=found_there))
    return roots


def _better_base(paths: List[str], found: int, bases: Sequence[Path]) -> Tuple[Optional[str], int]:
    """The first of `bases` from which more relative `paths` exist than from the cwd (`found`)."""
    if found == len(paths) or all(os.path.isabs(p) for p in paths):
        return None, 0
    for base in bases:
        there = sum(os.path.exists(os.path.join(base, p)) for p in paths)
        if there > found:
            return str(base), there
    return None, 0


def render_report(report: InfoReport) -> List[str]:
    """The report as the lines `occprep inspect` prints."""
    lines = [f"{report.path}" + (f" (index of {report.parts} pickles)" if report.parts else ""),
             f"  format      {report.generation}",
             f"  target      {report.target or '(none)'}"
             + ("" if report.file_name_matches or report.target is None else " (not the file name it writes)"),
             f"  boxes       {report.box_convention or 'convention not measurable'}"
             + (f" ({report.long_first_share:.0%} of car-like boxes list the larger size first)"
                if report.long_first_share is not None else ""),
             *(f"  WARNING     {warning}" for warning in report.warnings),
             f"  version     {report.version or '(none)'}",
             f"  samples     {report.samples:,}"]
    if report.scenes is not None:
        s = report.samples_per_scene
        lines.append(f"  scenes      {report.scenes:,} ({s['min']:g}-{s['max']:g} samples each, mean {s['mean']:g})")
    lines.append(f"  info keys   {', '.join(f'{k}' + ('' if n == report.samples else f' ({n:,})') for k, n in report.keys.items())}")
    if report.cam_keys:
        lines.append(f"  camera keys {', '.join(report.cam_keys)}")
    lines.append("  consumers")
    for fit in report.consumers:
        if fit.ok:
            lines.append(f"    [ok]   {fit.name}")
            continue
        missing = [] if fit.wrong_generation else [*fit.missing_info_keys, *(f"cams.{k}" for k in fit.missing_cam_keys)]
        what = "; ".join([*(["reads the other pickle generation"] if fit.wrong_generation else []),
                          *(["builds boxes in the other convention"] if fit.wrong_boxes else [])])
        if missing:
            what += ("; " if what else "") + "missing " + ", ".join(missing)
        lines.append(f"    [miss] {fit.name}: {what}")
    if report.classes:
        lines.append("  classes     " + ", ".join(f"{k} {n:,}" for k, n in report.classes.items()))
    else:
        lines.append("  classes     (no boxes)")
    if report.zero_can_bus is None:
        lines.append("  can_bus     none (this format has no can_bus)")
    else:
        lines.append(f"  can_bus     {report.zero_can_bus:,} sample(s) with zero or no CAN bus"
                     + (f": {', '.join(report.zero_can_bus_scenes[:10])}"
                        + (" ..." if len(report.zero_can_bus_scenes) > 10 else "") if report.zero_can_bus else ""))
    lines.append(f"  occupancy   {report.without_occupancy:,} sample(s) without occupancy paths "
                 f"({', '.join(OCCUPANCY_KEYS)})")
    lines.append(f"  paths       (exist from {os.getcwd()}; {report.paths_checked})")
    for root in report.paths:
        lines.append(f"    {root.key:<18} {root.count:>8,} under {root.root or '(no common prefix)'}: "
                     f"{root.found:,} of {root.checked:,} checked exist")
        if root.better_base:
            lines.append(f"    {'':<18} {'':>8}  relative to {root.better_base}: {root.found_from_better_base:,} "
                         f"of {root.checked:,} exist")
    return lines
