"""The merge stage: temporal infos + an occupancy ground truth release -> merged infos + coverage.

Every info is matched to the release by its sample token (the scene comes from the release, so infos
without `scene_name` merge too). Nothing is written unless every split is complete: an info without
ground truth, a ground truth file that is not on disk, a scene that disagrees with the release, or
(with `verify`) a file that fails its checks makes the run fail with the first few listed. Files are
found from folder listings (`PathLocator`); `verify` opens them in tasks of whole scenes on an engine
(`options.engine`: this process, local processes or Dask), with the same problems in the same order.
`allow_missing` instead drops infos without ground truth (or whose files are missing) and reports
them; verification problems always fail the run.

Merged infos are the input dicts with `scene_name` (when absent) and the layout's keys appended
(`occprep.occupancy.LAYOUTS[...].info_keys`, e.g. OpenOcc v1: `occ_gt_path, flow_gt_path,
occ_invalid_path`; Occ3D: `occ_gt_path, occ_path`); the top level, `metadata.version` included, is
carried over. Path styles: `as-is` writes the paths as the release names them (OpenOcc v1: the JSON
strings; Occ3D: `gts/<scene>/<token>/labels.npz` and the sample directory joined onto --occ-root as
typed; the others: the file joined onto --occ-root as typed); `absolute` and `relative` (to
`path_root`) write where `PathLocator` found them. SurroundOcc and OpenOccupancy name files by the
keyframe's LiDAR reading, so they need the tables (`root_path`, the infos' version).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from occprep.config import dataset_config, occupancy_format
from occprep.engines import make_engine
from occprep.errors import OccprepError
from occprep.fileio import atomic_write
from occprep.layout import fix_occ_root, is_occupancy_root, parent
from occprep.names import closest, describe_unknown
from occprep.occupancy import (
    FORMATS,
    LAYOUTS,
    GtIndex,
    GtSample,
    LidarKeyframes,
    PathLocator,
    lidar_keyframes,
    verify_samples,
)
from occprep.pickles import dumps, load_pickle
from occprep.reporting import Reporter
from occprep.targets import Target, identify, merged_suffix, parse_targets, targets

SPLITS = ("train", "val", "test")
PATH_STYLES = ("as-is", "relative", "absolute")
SHOW = 5
"""How many tokens/problems an error message lists."""


@dataclass(frozen=True)
class MergeOptions:
    """What `occprep merge-occ` was asked to do."""

    infos_dir: Path
    occ_root: str
    """As typed: Occ3D's `occ_path` values are joined onto it."""
    format: str = "openocc-v1"
    extra_tag: str = "nuscenes"
    splits: Tuple[str, ...] = ("train", "val")
    out_dir: Optional[Path] = None
    """Default: the occ root (where the reference writes)."""
    allow_missing: bool = False
    verify: bool = False
    workers: Optional[int] = None
    """`verify` tasks at once: local worker processes (1: in this process) or local Dask cluster workers
    (None: the cores)."""
    engine: str = "local"
    """Where `verify` tasks run: 'local' or 'dask' (`occprep.engines`)."""
    scheduler: Optional[str] = None
    """With engine 'dask': the scheduler address, or 'synchronous'; None starts a local cluster."""
    path_style: str = "as-is"
    path_root: Optional[Path] = None
    """Base directory of `path_style='relative'` paths."""
    target: str = "bevformer"
    """The `occprep.targets` format of the infos (its file names and structure)."""
    root_path: Optional[str] = None
    """The nuScenes root (as typed) whose tables give the LiDAR keyframes (surroundocc, openoccupancy)."""
    version: Optional[str] = None
    """Their version folder; None: the infos' `metadata.version` / `metainfo.version`."""


@dataclass
class SceneCoverage:
    """Infos of one scene in one split, and how many of them have ground truth."""

    infos: int = 0
    with_gt: int = 0


@dataclass
class SplitMerge:
    """One split: its infos matched against the release, and the merged pickle to write."""

    split: str
    infos_path: Path
    output_path: Path
    index_source: Path
    tokens: List[str]
    """Sample tokens of all infos, in input order."""
    missing_gt: List[str] = field(default_factory=list)
    """Tokens of infos the release has no entry for."""
    missing_files: List[str] = field(default_factory=list)
    """'token: path' of infos whose ground truth files are not on disk."""
    scene_mismatch: List[str] = field(default_factory=list)
    scenes: Dict[str, SceneCoverage] = field(default_factory=dict)
    with_gt: int = 0
    payload: bytes = b""
    """The output pickle, serialised (a fraction of the objects' memory): the input's top level with
    `infos` replaced by the merged infos."""
    located: List[Tuple[str, Dict[str, str]]] = field(default_factory=list)
    """(scene name, file role -> where found) of every merged info, in order, for verification."""
    none_values: Counter = field(default_factory=Counter)
    """Info key -> how many merged infos got None for it (the dataset lacks what it names, e.g. lidarseg)."""
    written: bool = False

    @property
    def total(self) -> int:
        return len(self.tokens)


@dataclass
class MergeResult:
    """The whole run: per-split coverage, ground truth no info asked for, problems."""

    options: MergeOptions
    splits: List[SplitMerge]
    unused_gt: Dict[Path, Counter]
    """Index source -> scene -> number of ground truth samples no selected info matched."""
    verify_problems: List[str]
    verified_samples: int
    problem: Optional[str] = None
    """Why nothing was written (one line), or None."""


def parse_splits(text: str) -> Tuple[str, ...]:
    """'train,val' -> ('train', 'val'); any split name create-infos can write (`--splits FILE` names its own),
    whose infos file must then exist."""
    splits = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in splits if not re.fullmatch(r"[A-Za-z0-9_.-]+", s)]
    if bad or not splits:
        raise OccprepError(f"--splits {text!r}: {', '.join(bad) or 'no split'} is not a split name; give "
                           f"comma-separated names such as {','.join(SPLITS)}")
    return tuple(dict.fromkeys(splits))


def infos_path(options: MergeOptions, split: str) -> Path:
    """The create-infos output merged for `split` (the target's file name)."""
    target = targets()[options.target]
    names = [target.file_name(options.extra_tag, split, version) for version in ("", "v1.0-mini")]
    return next((Path(options.infos_dir) / n for n in names if (Path(options.infos_dir) / n).is_file()),
                Path(options.infos_dir) / names[0])


def output_path(options: MergeOptions, split: str) -> Path:
    """Where the merged `split` goes: the file name the format's consumers read (its config's
    `consumer_file`, for BEVFormer infos: OpenOcc v2 `{tag}_infos_{split}_occ.pkl`, SurroundOcc
    `{tag}_infos_{split}.pkl`, OpenOccupancy `{tag}_occ_infos_{split}.pkl`), else the input's stem and the
    format's suffix (OpenOcc v1 `_occ_gt`: the reference's `{tag}_infos_temporal_{split}_occ_gt.pkl`);
    in --out-dir, by default the folder its consumers read it from (config `out_dir`)."""
    fmt = occupancy_format(options.format)
    folders = {"occ_root": Path(options.occ_root), "occ_root_parent": Path(parent(options.occ_root)),
               "infos_dir": Path(options.infos_dir)}
    out_dir = Path(options.out_dir) if options.out_dir is not None else folders[fmt.out_dir]
    if fmt.consumer_file and options.target == "bevformer":
        return out_dir / fmt.consumer_file.format(tag=options.extra_tag, split=split)
    return out_dir / f"{infos_path(options, split).stem}{fmt.suffix}.pkl"


def records_key(data: object) -> str:
    """Where a loaded info pickle keeps its per-sample records: 'infos' (legacy) or 'data_list' (mmdet3d 1.x)."""
    return "data_list" if isinstance(data, dict) and "data_list" in data else "infos"


def load_infos(path: Path) -> dict:
    """Load an info pickle of any target (`{'infos': [...], ...}` or mmdet3d 1.x `{'data_list': [...], ...}`),
    checking its shape."""
    if not path.is_file():
        raise OccprepError(f"{path}: infos file not found; create it with `occprep create-infos`, or pass "
                           "the right --infos-dir / --extra-tag / --target")
    data = load_pickle(path)
    key = records_key(data)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise OccprepError(f"{path}: not an info pickle (expected a dict with an 'infos' or 'data_list' list, got "
                           f"{type(data).__name__}{' with keys ' + ', '.join(map(str, data)) if isinstance(data, dict) else ''})")
    for position, info in enumerate(data[key]):
        if not isinstance(info, dict) or not isinstance(info.get("token"), str):
            raise OccprepError(f"{path}: {key}[{position}] has no 'token' string; not an info pickle")
    return data


def infos_version(data: dict) -> Optional[str]:
    """The dataset version an info pickle names (`metadata.version`, mmdet3d 1.x `metainfo.version`)."""
    for key in ("metadata", "metainfo"):
        if isinstance(data.get(key), dict) and isinstance(data[key].get("version"), str):
            return data[key]["version"]
    return None


def _info_values(located: Dict[str, str], sample: GtSample, options: MergeOptions) -> Dict[str, object]:
    """The info values for `sample` in the requested path style (`located`: file role -> where it was found)."""
    values = dict(sample.values)
    if options.path_style == "as-is":
        return values
    for key, (role, folder) in LAYOUTS[options.format].located_keys.items():
        path = os.path.dirname(located[role]) if folder else located[role]
        values[key] = path if options.path_style == "absolute" else os.path.relpath(path, os.path.abspath(options.path_root))
    return values


def read_split_infos(options: MergeOptions, split: str) -> Tuple[Path, dict]:
    """The path and loaded pickle of `split`'s infos, checked to be of `options.target`."""
    path = infos_path(options, split)
    data = load_infos(path)
    found = identify(data, path.name)
    if found is not None and found.name != options.target:
        raise OccprepError(f"{path}: a {found.name} pickle, not {options.target}: pass --target {found.name} (or "
                           f"regenerate it with `occprep create-infos --target {options.target}`)")
    output = output_path(options, split)
    if output.resolve() == path.resolve():
        raise OccprepError(f"{output}: the merged {split} infos would replace their input; pass another --out-dir")
    other = _infos_at(output, options)
    if other is not None:
        raise OccprepError(f"{output}: the merged {split} infos would replace the {other.name} infos there; pass "
                           "another --out-dir")
    return path, data


def _infos_at(output: Path, options: MergeOptions) -> Optional[Target]:
    """The target whose create-infos output (of `options.extra_tag`, in the infos dir) `output` names, if it exists."""
    if not output.is_file() or output.parent.resolve() != Path(options.infos_dir).resolve() or merged_suffix(output.name)[1]:
        return None
    for target in targets().values():
        parsed = target.parse_file_name(output.name)
        if parsed is not None and parsed[0] == options.extra_tag:
            return target
    return None


def merge_split(options: MergeOptions, split: str, path: Path, data: dict, index: GtIndex, locator: PathLocator,
                reporter: Reporter) -> SplitMerge:
    """Match one split's infos (`data`, loaded from `path`) to `index`; merged infos keep their keys and
    append the layout's keys."""
    infos = data[records_key(data)]
    result = SplitMerge(split, path, output_path(options, split), index.source, [info["token"] for info in infos])
    merged = []
    for info in reporter.progress(infos, desc=f"match {split}", unit="info"):
        token = info["token"]
        sample = index.samples.get(token)
        scene_name = info.get("scene_name") or (sample.scene_name if sample else f"scene_token:{info.get('scene_token')}")
        coverage = result.scenes.setdefault(scene_name, SceneCoverage())
        coverage.infos += 1
        if sample is None:
            result.missing_gt.append(token)
            continue
        if info.get("scene_name", sample.scene_name) != sample.scene_name:
            result.scene_mismatch.append(f"{token} (info: {info['scene_name']}, ground truth: {sample.scene_name})")
            continue
        located = {role: locator.locate(path) for role, path in sample.files.items()}
        absent = [sample.files[role] for role, found in located.items() if found is None]
        if absent:
            result.missing_files.append(f"{token}: {absent[0]}")
            continue
        coverage.with_gt += 1
        values = _info_values(located, sample, options)
        result.none_values.update(key for key, value in values.items() if value is None)
        merged.append({**info, "scene_name": sample.scene_name, **values})
        result.located.append((sample.scene_name, located))
    result.with_gt = len(merged)
    result.payload = dumps({**data, records_key(data): merged})
    return result


def _first(items: List[str]) -> str:
    """The first few `items`, and how many there are when some are left out."""
    shown = ", ".join(items[:SHOW])
    return shown + (f", … ({len(items)} in total)" if len(items) > SHOW else "")


def _coverage_problem(splits: List[SplitMerge], options: MergeOptions, locator: PathLocator) -> Optional[str]:
    mismatch = [m for s in splits for m in s.scene_mismatch]
    if mismatch:
        return (f"{len(mismatch)} infos name another scene than the ground truth release: {_first(mismatch)}; "
                "the infos and the release do not belong together")
    for s in splits:
        if s.total and not s.with_gt:
            cause = (f"none of its {s.total} infos has an entry in {s.index_source}" if s.missing_gt == s.tokens else
                     f"no info has both an entry in {s.index_source} and its files on disk ({locator.describe()})")
            return (f"{s.split}: {cause} ({_first(s.missing_gt or s.missing_files)}), so its merged pickle would be "
                    f"empty; nothing written (do the infos and --occ-root belong to the same dataset and version?)")
    if options.allow_missing:
        return None
    parts = []
    for s in splits:
        if s.missing_gt:
            parts.append(f"{s.infos_path.name}: {len(s.missing_gt)} of {s.total} infos have no entry in "
                         f"{s.index_source} ({_first(s.missing_gt)})")
        if s.missing_files:
            parts.append(f"{s.infos_path.name}: ground truth files of {len(s.missing_files)} infos not found "
                         f"({_first(s.missing_files)}; {locator.describe()})")
    if not parts:
        return None
    return "; ".join(parts) + "; nothing written (pass --allow-missing to write only the infos with ground truth)"


def _check_options(options: MergeOptions) -> None:
    parse_targets(options.target)
    if options.format not in FORMATS:
        raise OccprepError(f"--format {options.format!r}: choose from {', '.join(FORMATS)}")
    if options.path_style not in PATH_STYLES:
        raise OccprepError(f"--path-style {options.path_style!r}: choose from {', '.join(PATH_STYLES)}")
    if (options.path_style == "relative") != (options.path_root is not None):
        raise OccprepError("--path-style relative needs --path-root DIR (the directory paths are made relative "
                           "to), and --path-root only applies to --path-style relative")
    if not Path(options.infos_dir).is_dir():
        raise OccprepError(f"--infos-dir {options.infos_dir}: directory not found")
    if not Path(options.occ_root).is_dir():
        raise OccprepError(f"--occ-root {options.occ_root}: directory not found (the folder of the downloaded "
                           "occupancy release)")
    fix = fix_occ_root(options.occ_root, options.format)
    if fix is not None:
        raise OccprepError(fix.message())
    if not is_occupancy_root(options.occ_root, options.format):
        for other in (f for f in FORMATS if f != options.format):
            moved = fix_occ_root(options.occ_root, other)
            if is_occupancy_root(options.occ_root, other) or moved is not None:
                raise OccprepError(f"--occ-root {options.occ_root} holds {other} ground truth, not {options.format}: "
                                   f"pass --format {other}" + (f" and {moved.flags}" if moved else ""))
    if LAYOUTS[options.format].needs_lidar and options.root_path is None:
        raise OccprepError(f"--format {options.format} names its files by each keyframe's LiDAR reading: pass "
                           "--root-path (the nuScenes folder with the infos' version, e.g. ./data/nuscenes)")
    _check_infos_files(options)


def _check_infos_files(options: MergeOptions) -> None:
    """Every requested split's infos file exists; else name the tags and splits that do (or where they are)."""
    wanted = {split: infos_path(options, split) for split in options.splits}
    absent = [split for split, path in wanted.items() if not path.is_file()]
    if not absent:
        return
    target = targets()[options.target]
    found = sorted(p for p in Path(options.infos_dir).glob("*.pkl") if target.parse_file_name(p.name))
    tags = sorted({target.parse_file_name(p.name)[0] for p in found})
    others = sorted({t.name for p in Path(options.infos_dir).glob("*.pkl") for t in targets().values()
                     if t.name != target.name and t.parse_file_name(p.name)} - {"mmdet3d-v2"})
    first = wanted[absent[0]]
    if first.with_name(f"{first.stem}.index.json").is_file():
        hint = ("it is a create-infos --sharded-output index there; merge-occ reads whole pickles: create the infos "
                "without --sharded-output")
    elif tags and options.extra_tag not in tags:
        hint = (f"{options.infos_dir} holds infos tagged {', '.join(tags)}: use --extra-tag "
                f"{(closest(options.extra_tag, tags) or tags)[0]}")
    elif found:
        splits = sorted({target.parse_file_name(p.name)[1] for p in found})
        hint = (f"{options.infos_dir} holds the splits {', '.join(splits)} of this tag: "
                f"{describe_unknown(absent, splits)}; pass --splits with those")
    elif others:
        hint = f"{options.infos_dir} holds infos of another target: pass --target {' or '.join(others)}"
    else:
        nearby = _dirs_with_infos(Path(options.infos_dir), options.extra_tag)
        hint = (f"they are in {nearby[0]}: use --infos-dir {nearby[0]}" if nearby else
                "create them with `occprep create-infos`, or pass the right --infos-dir / --extra-tag")
    raise OccprepError(f"{first}: infos file not found ({len(absent)} of {len(wanted)} requested splits); {hint}")


def _dirs_with_infos(folder: Path, extra_tag: str) -> List[Path]:
    """Folders one level above or below `folder` that hold `{extra_tag}_infos_temporal_*.pkl`."""
    candidates = [folder.parent, *(sorted(d for d in folder.iterdir() if d.is_dir()))]
    return [d for d in candidates if any(d.glob(f"*{extra_tag}_infos_*.pkl"))]


def _lidar_keyframes(options: MergeOptions, loaded: Dict[str, Tuple[Path, dict]]) -> LidarKeyframes:
    """The LiDAR keyframes of the infos' version (or `options.version`) from the tables under `root_path`."""
    versions = {infos_version(data) for _, data in loaded.values()}
    version = options.version or (versions.pop() if len(versions) == 1 else None)
    if version is None:
        named = ", ".join(sorted(map(str, versions)))
        raise OccprepError(f"the infos name {'no dataset version' if not named else 'the versions ' + named}: pass "
                           "--version (the version folder under --root-path they were made from)")
    keyframes = lidar_keyframes(options.root_path, version, dataset_config("nuscenes").lidar_channel)
    for path, data in loaded.values():
        tokens = [info["token"] for info in data[records_key(data)]]
        if tokens and not any(token in keyframes for token in tokens):
            raise OccprepError(f"--root-path {options.root_path}: its {version} tables hold none of the {len(tokens)} "
                               f"samples of {path}; pass the nuScenes folder the infos were made from")
    return keyframes


def merge_occ(options: MergeOptions, reporter: Reporter) -> MergeResult:
    """Run the merge: match every split, optionally verify, and write only if nothing is wrong."""
    _check_options(options)
    engine = make_engine(options.engine, options.scheduler, options.workers, reporter) if options.verify else None
    layout = LAYOUTS[options.format]
    locator = PathLocator(Path(options.occ_root))
    loaded = {split: read_split_infos(options, split) for split in options.splits}
    lidar = _lidar_keyframes(options, loaded) if layout.needs_lidar else None
    shared = None if layout.per_split else layout.index(options.occ_root, "", lidar)
    splits, indexes = [], {}
    for split, (path, data) in loaded.items():
        index = shared or layout.index(options.occ_root, split, lidar)
        indexes[index.source] = index
        splits.append(merge_split(options, split, path, data, index, locator, reporter))
        del data[records_key(data)]  # the split's payload holds them now

    matched = {s.index_source: set() for s in splits}
    for s in splits:
        matched[s.index_source].update(s.tokens)
    unused = {source: Counter(sample.scene_name for token, sample in index.samples.items()
                              if token not in matched[source])
              for source, index in indexes.items()}

    problems: List[str] = []
    located = [files for s in splits for files in s.located]
    if engine is not None:
        problems = verify_samples(located, options.format, engine)
    result = MergeResult(options, splits, unused, problems, len(located) if options.verify else 0)
    result.problem = _coverage_problem(splits, options, locator)
    if problems:
        found = f"{len(problems)} problems in ground truth files: {_first(problems)}"
        result.problem = f"{found}; nothing written" if result.problem is None else f"{result.problem}; also {found}"
    if result.problem is None:
        for s in splits:
            with atomic_write(s.output_path) as handle:
                handle.write(s.payload)
            s.written = True
    return result


def _scene_counts(counts: Dict[str, int]) -> str:
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{scene}: {n}" for scene, n in top[:SHOW])
    return shown + (f", … {len(top)} scenes" if len(top) > SHOW else "")


def summarize(result: MergeResult) -> Tuple[dict, List[str]]:
    """The coverage summary: JSON for `--report` and the lines printed at the end."""
    options = result.options
    report = {
        "format": options.format, "occ_root": options.occ_root, "path_style": options.path_style,
        "written": result.problem is None, "problem": result.problem, "splits": {},
    }
    lines = [f"coverage ({options.format}, {options.occ_root}):"]
    for s in result.splits:
        without = {scene: c.infos - c.with_gt for scene, c in s.scenes.items() if c.infos > c.with_gt}
        report["splits"][s.split] = {
            "infos_file": str(s.infos_path), "output": str(s.output_path), "written": s.written,
            "infos": s.total, "with_gt": s.with_gt, "without_gt": s.total - s.with_gt,
            "missing_gt_tokens": s.missing_gt, "missing_files": s.missing_files, "scene_mismatch": s.scene_mismatch,
            "scenes": {scene: {"infos": c.infos, "with_gt": c.with_gt, "without_gt": c.infos - c.with_gt}
                       for scene, c in sorted(s.scenes.items())},
        }
        line = f"  {s.split}: {s.with_gt}/{s.total} infos with ground truth"
        if without:
            line += (f", {s.total - s.with_gt} without ({len(s.missing_gt)} not in the release, "
                     f"{len(s.missing_files)} files missing; {_scene_counts(without)})")
        if not s.total:
            line += f" (empty: {s.infos_path.name} holds no infos)"
        lines.append(line + (f" -> {s.output_path}" if s.written else " (not written)"))
        report["splits"][s.split]["none_values"] = dict(sorted(s.none_values.items()))
        lines += [f"  {s.split}: {key} is None in {n} infos: the tables under {options.root_path} have no {key} record "
                  f"for their LiDAR reading (the nuScenes-{key} expansion fills it)" for key, n in sorted(s.none_values.items())]
    unused_total = sum(sum(c.values()) for c in result.unused_gt.values())
    report["gt_without_info"] = {str(source): {"samples": sum(c.values()), "scenes": dict(sorted(c.items()))}
                                 for source, c in sorted(result.unused_gt.items())}
    lines.append(f"  ground truth with no info: {unused_total} samples"
                 + (f" in {len(set().union(*result.unused_gt.values()))} scenes" if unused_total else ""))
    if options.verify:
        report["verify"] = {"samples": result.verified_samples, "problems": result.verify_problems}
        lines.append(f"  verified {result.verified_samples} samples: "
                     f"{len(result.verify_problems) or 'no'} problems"
                     + (f": {_first(result.verify_problems)}" if result.verify_problems else ""))
    return report, lines
