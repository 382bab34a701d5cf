"""Output formats ("targets"): one module per consumer family, each a writer over the same records.

A target names its files, its box convention and its defaults (the reference's sweeps and path
root), and builds the pickled object of one split from `InfoParts` (see `occprep.infos`). A new
format is one module here plus its entry in `TARGETS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from occprep.errors import OccprepError
from occprep.infos import InfoParts
from occprep.names import check_names


@dataclass(frozen=True)
class BuildOptions:
    """What the command line sets for every target; `None` means "the target's reference default"."""

    max_sweeps: Optional[int] = None
    """LiDAR sweeps per info (`--max-sweeps`)."""
    root_path: Optional[str] = None
    """Path root written into the infos as typed (`--root-path`)."""
    float64: bool = False
    """mmdet3d-v2: keep float64 where the reference rounds through float32."""


@dataclass(frozen=True)
class Build:
    """One split to build: its keyframe rows (sample-table order), version, and whether it has annotations."""

    rows: Sequence[int]
    version: str
    split: str
    annotations: bool


@dataclass(frozen=True)
class Target:
    """One output format."""

    name: str
    file_pattern: str
    """File name with `{tag}` and `{split}`, e.g. '{tag}_infos_temporal_{split}.pkl'."""
    readers: str
    """Who reads it (for README and `inspect`)."""
    box_convention: str
    """`occprep.boxes` convention of its `gt_boxes` ('legacy' or 'rc')."""
    build: Callable[[InfoParts, Build, BuildOptions], object]
    """The pickled object of one split."""
    max_sweeps: int = 10
    """The reference's LiDAR sweeps per info (when `--max-sweeps` is not given)."""
    root_path: Optional[str] = None
    """The reference's path root (when `--root-path` is not given); None: the command's default."""

    def file_name(self, tag: str, split: str) -> str:
        """The output file name of `split`."""
        return self.file_pattern.format(tag=tag, split=split)

    def sweeps(self, options: BuildOptions) -> int:
        """LiDAR sweeps per info for this run."""
        return self.max_sweeps if options.max_sweeps is None else options.max_sweeps

    def root(self, options: BuildOptions, default: str) -> str:
        """The path root written into this target's infos for this run."""
        if options.root_path is not None:
            return options.root_path
        return self.root_path if self.root_path is not None else default


def targets() -> Dict[str, Target]:
    """Every target by name (imported here: the target modules import this one)."""
    from occprep.targets import bevdet, bevformer, mmdet3d, mmdet3d_v2

    return {t.name: t for t in (bevformer.TARGET, mmdet3d.TARGET, mmdet3d_v2.TARGET, bevdet.TARGET)}


def parse_targets(text: str) -> List[Target]:
    """'bevformer,bevdet' -> the targets, in the order given, without repeats; unknown names are an error."""
    known = targets()
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise OccprepError(f"--target {text!r}: name at least one of {', '.join(known)}")
    check_names(names, known, "target", f"--target {text}", f"choose from {', '.join(known)}")
    return [known[n] for n in dict.fromkeys(names)]


def legacy_pickle(target: Target, info: Callable[[InfoParts, int, Build, str, int], dict], parts: InfoParts,
                  build: Build, options: BuildOptions) -> dict:
    """`{'infos': [info(...) of every row], 'metadata': {'version': ...}}`: the top level of the
    pre-1.x mmdet3d formats (BEVFormer, mmdet3d 1.0, BEVDet)."""
    root, max_sweeps = target.root(options, parts.root_path), target.sweeps(options)
    return {"infos": [info(parts, s, build, root, max_sweeps) for s in build.rows],
            "metadata": {"version": build.version}}
