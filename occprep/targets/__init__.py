"""Output formats ("targets"): one module per consumer family, each assembled from neutral infos.

A neutral info is the BEVFormer temporal info (`occprep.infos.InfoParts.neutral`, legacy boxes),
plus the extra keys a target needs that only the tables give (`extras`: BEVDet's `ann_infos`,
mmdet3d-v2's `cam_instances`). `create-infos` builds neutral infos from the tables; `convert`
reads them back from any target's pickle (`neutral`) and fills what a pickle lacks from the
tables. A target names its files, box convention and reference defaults, and `assemble`s its
pickled object from neutral infos. A new format is one module here plus its entry in `targets()`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from occprep.config import DatasetConfig, occupancy_format
from occprep.errors import OccprepError
from occprep.infos import GT_KEYS, InfoParts
from occprep.names import check_names
from occprep.occupancy import FORMATS


MERGED_SUFFIXES = {name: occupancy_format(name).suffix for name in FORMATS}
"""Occupancy format -> what `merge-occ` appends to an infos file's stem (`configs/occ-*.json`)."""
OCCUPANCY_PATH_KEYS = ("occ_gt_path", "flow_gt_path", "occ_invalid_path", "occ_path")
"""Info keys naming occupancy/flow ground truth files or folders (OpenOcc v1 and v2, Occ3D, BEVDet/FlashOcc,
SurroundOcc)."""
OCCUPANCY_KEYS = (*OCCUPANCY_PATH_KEYS, "lidar_token", "lidarseg")
"""Every key `merge-occ` adds besides scene keys (OpenOccupancy's ground truth is found by `lidar_token`)."""


def consumer_file_format(name: str) -> Optional[str]:
    """The occupancy format whose consumers read BEVFormer infos merged under the file name `name`
    (config `consumer_file`, e.g. OpenOccupancy's `{tag}_occ_infos_{split}.pkl`), or None."""
    for fmt in FORMATS:
        pattern = occupancy_format(fmt).consumer_file
        if pattern and re.fullmatch(file_name_regex(pattern), name):
            return fmt
    return None


def file_name_regex(pattern: str) -> str:
    """A regular expression of the file names `pattern` gives (`{tag}`, `{split}` and `{mini}` as in
    `Target.file_pattern`), with the groups `tag` and `split`."""
    return (re.escape(pattern).replace(r"\{tag\}", "(?P<tag>.+?)").replace(r"\{split\}", "(?P<split>[^_]+)")
            .replace(r"\{mini\}", "(?:_mini)?"))


def merged_suffix(name: str) -> Tuple[str, str]:
    """(file name without a `merge-occ` suffix, the suffix): 'x_val_occ3d.pkl' -> ('x_val.pkl', '_occ3d')."""
    for suffix in MERGED_SUFFIXES.values():
        if name.endswith(f"{suffix}.pkl"):
            return name[: -len(f"{suffix}.pkl")] + ".pkl", suffix
    return name, ""


@dataclass(frozen=True)
class BuildOptions:
    """What the command line sets for every target; `None` means "the target's reference default"."""

    max_sweeps: Optional[int] = None
    """LiDAR sweeps per info (`--max-sweeps`)."""
    root_path: Optional[str] = None
    """Path root written into the infos as typed (`--root-path`)."""
    float64: bool = False
    """mmdet3d-v2: keep float64 where the reference rounds through float32."""
    fixes: FrozenSet[str] = frozenset()
    """Reference faults to mend, by name (`vad.FIXES`: 'ego-yaw', 'goal', 'fut-yaw', 'speed')."""


@dataclass(frozen=True)
class Build:
    """One split's pickle: its version, name, whether it has annotations, the dataset convention."""

    version: str
    split: str
    annotations: bool
    config: DatasetConfig


Extra = Callable[[InfoParts, int, BuildOptions], object]
"""A neutral key computed from the tables for keyframe row s."""
def box_column(columns: Callable[[InfoParts, BuildOptions], object], name: str) -> Extra:
    """An extra that is keyframe s's rows (a view) of the per-box array `name` of `columns(parts, options)`,
    an object of arrays over all boxes of the `InfoParts` (memoised there: computed once)."""
    def extra(parts: InfoParts, s: int, options: BuildOptions) -> object:
        return getattr(columns(parts, options), name)[parts.box_rows(s)]
    return extra


def keyframe_column(columns: Callable[[InfoParts, BuildOptions], object], name: str) -> Extra:
    """An extra that is row s of the per-keyframe array `name` of `columns(parts, options)` (see `box_column`)."""
    def extra(parts: InfoParts, s: int, options: BuildOptions) -> object:
        return getattr(columns(parts, options), name)[s]
    return extra


Gaps = Callable[[InfoParts, Sequence[int], bool, BuildOptions], Dict[str, str]]
"""Scene name -> which of a target's values are stand-ins there and why, for the scenes of keyframe rows
of a split with (True) or without annotations."""


@dataclass(frozen=True)
class Target:
    """One output format."""

    name: str
    file_pattern: str
    """File name with `{tag}` and `{split}` (and `{mini}`: '_mini' for v1.0-mini), e.g.
    '{tag}_infos_temporal_{split}.pkl'."""
    readers: str
    """Who reads it (for README and `inspect`)."""
    box_convention: str
    """`occprep.boxes` convention of its boxes ('legacy' or 'rc')."""
    needs: Tuple[str, ...]
    """Neutral keys its infos are made of (gt_* keys only with annotations; extras included)."""
    assemble: Callable[[List[dict], Build, BuildOptions], object]
    """Neutral infos -> the pickled object of one split."""
    neutral: Callable[[object], List[dict]]
    """Its pickled object -> neutral infos (as far as it holds them; boxes in the legacy convention)."""
    writes: Tuple[str, ...]
    """Every key its infos (`data_list` entries) may have, in order; others were added to them later."""
    extras: Dict[str, Extra] = field(default_factory=dict)
    unannotated_extras: Tuple[str, ...] = ()
    """Its extras that exist on splits without annotations too (the others only on annotated splits)."""
    max_sweeps: int = 10
    """The reference's LiDAR sweeps per info (when `--max-sweeps` is not given)."""
    camera_sweeps: bool = False
    """It needs the cameras' non-keyframe readings (`occprep.scan.scan`)."""
    details: bool = False
    """It needs image sizes, visibility and attributes (`occprep.scan.read_scan_tables`)."""
    camera_boxes: bool = False
    """Its annotated infos read the boxes projected into the keyframe cameras (`InfoParts.camera_boxes`),
    which are then projected before the writing processes fork, so they share them."""
    root_path: Optional[str] = None
    """The reference's path root (when `--root-path` is not given); None: the command's default."""
    steering: bool = False
    """It reads the CAN bus `steeranglefeedback` messages too."""
    gaps: Optional[Gaps] = None
    """Where its values are stand-ins, for the summary (None: never)."""
    own_folder: bool = False
    """Its file names are another target's: it writes into `--out-dir/<name>/` unless it is the only
    target and `--out-dir` was given."""

    def file_name(self, tag: str, split: str, version: str = "") -> str:
        """The output file name of `split` of `version`."""
        return self.file_pattern.format(tag=tag, split=split, mini="_mini" if version == "v1.0-mini" else "")

    def parse_file_name(self, name: str) -> Optional[Tuple[str, str]]:
        """(tag, split) of a file name of this target (or of its `merge-occ` output), or None."""
        match = re.fullmatch(file_name_regex(self.file_pattern), merged_suffix(name)[0])
        return (match["tag"], match["split"]) if match else None

    def sweeps(self, options: BuildOptions) -> int:
        """LiDAR sweeps per info for this run."""
        return self.max_sweeps if options.max_sweeps is None else options.max_sweeps

    def root(self, options: BuildOptions, default: str) -> str:
        """The path root written into this target's infos for this run."""
        if options.root_path is not None:
            return options.root_path
        return self.root_path if self.root_path is not None else default

    def required(self, annotations: bool) -> Tuple[str, ...]:
        """The neutral keys its infos need for a split with or without annotations."""
        return tuple(key for key in self.needs if annotations or key not in GT_KEYS
                     and (key not in self.extras or key in self.unannotated_extras))

    def layout(self, options: BuildOptions, default_root: str) -> Tuple[str, int]:
        """(path root, LiDAR sweeps) of its neutral infos: targets with the same layout share them."""
        return self.root(options, default_root), self.sweeps(options)

    def neutral_infos(self, parts: InfoParts, rows: Sequence[int], annotations: bool, options: BuildOptions,
                      shared: Optional[List[dict]] = None) -> List[dict]:
        """Neutral infos of keyframe `rows` with this target's root, sweeps and extras; `shared`: the
        neutral infos of the same rows and layout already built for another target (extras are added)."""
        root, max_sweeps = self.layout(options, parts.root_path)
        infos = shared if shared is not None else [parts.neutral(s, annotations, root, max_sweeps) for s in rows]
        for name, extra in self.extras.items():
            if annotations or name in self.unannotated_extras:
                for info, s in zip(infos, rows):
                    info[name] = extra(parts, s, options)
        return infos


def targets() -> Dict[str, Target]:
    """Every target by name (imported here: the target modules import this one)."""
    from occprep.targets import bevdet, bevformer, mmdet3d, mmdet3d_v2, sparsebev, streampetr, uniad, vad

    return {t.name: t for t in (bevformer.TARGET, mmdet3d.TARGET, mmdet3d_v2.TARGET, bevdet.TARGET, streampetr.TARGET,
                                sparsebev.TARGET, uniad.TARGET, vad.TARGET)}


def parse_targets(text: str) -> List[Target]:
    """'bevformer,bevdet' -> the targets, in the order given, without repeats; unknown names are an error."""
    known = targets()
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise OccprepError(f"--target {text!r}: name at least one of {', '.join(known)}")
    check_names(names, known, "target", f"--target {text}", f"choose from {', '.join(known)}", among="known")
    return [known[n] for n in dict.fromkeys(names)]


def legacy_pickle(infos: List[dict], build: Build) -> dict:
    """`{'infos': [...], 'metadata': {'version': ...}}`: the top level of the pre-1.x mmdet3d formats."""
    return {"infos": infos, "metadata": {"version": build.version}}


def key_selecting_target(name: str, file_pattern: str, readers: str, keys: Tuple[str, ...], **fields) -> Target:
    """A target of the legacy structure and boxes whose infos are just the neutral `keys` a split has (gt_*
    keys and annotated extras only with annotations), in that order, under `{'infos': [...], 'metadata':
    {'version': ...}}`; `fields`: its other `Target` fields (extras, ...)."""
    def assemble(neutral: List[dict], build: Build, options: BuildOptions) -> dict:
        needed = target.required(build.annotations)
        return legacy_pickle([{key: info[key] for key in needed} for info in neutral], build)

    target = Target(name=name, file_pattern=file_pattern, readers=readers, box_convention="legacy", needs=keys,
                    writes=keys, assemble=assemble, neutral=legacy_infos, **fields)
    return target


def legacy_infos(data: object) -> List[dict]:
    """Copies of the infos of a `{'infos': [...], 'metadata': ...}` pickle (callers may add keys)."""
    return [dict(info) for info in data["infos"]]


def identify(data: object, file_name: str = "") -> Optional[Target]:
    """The target a loaded pickle is, from its structure and keys (and, for one without infos, its
    file name); None when it is none of them."""
    known = targets()
    if isinstance(data, dict) and "data_list" in data:
        return known["mmdet3d-v2"]
    if not isinstance(data, dict) or not isinstance(data.get("infos"), list):
        return None
    first = next((info for info in data["infos"] if isinstance(info, dict)), None)
    if first is not None:
        if "map_location" in first or "fut_valid_flag" in first:
            return known["vad"]
        if "gt_inds" in first or "fut_traj" in first:
            return known["uniad"]
        if "can_bus" in first or "scene_name" in first and "prev" in first:
            return known["bevformer"]
        if "prev" in first or "bboxes2d" in first:
            return known["streampetr"]
        cams = first.get("cams") if isinstance(first.get("cams"), dict) else {}
        if any(isinstance(cam, dict) and "sensor2global_rotation" in cam for cam in cams.values()):
            return known["sparsebev"]
        if "ann_infos" in first or "occ_path" in first and "scene_token" in first:
            return known["bevdet"]
        return known["mmdet3d"] if "lidar_path" in first else None
    named = [t for t in known.values() if t.name != "mmdet3d-v2" and t.parse_file_name(file_name)]
    return max(named, key=lambda t: len(t.file_pattern), default=None)
