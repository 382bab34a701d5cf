"""`occprep demo`: a synthetic nuScenes mini dataset end to end, one step after another.

Each step takes the demo folder and the reporter and returns summary lines; later tools add
their step to `STEPS` (e.g. merging the occupancy ground truth into the infos).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from occprep.reporting import Reporter

VERSION = "v1.0-mini"


def data_root(out: Path) -> Path:
    """`<out>/data`: holds nuscenes/, can_bus/ and the occupancy folders, as the reference layout."""
    return Path(out) / "data"


def synth_step(out: Path, reporter: Reporter) -> List[str]:
    """The 10 mini scenes with CAN bus, occupancy ground truth and empty sensor files."""
    from occprep.synth import summary_lines, synthesize

    return summary_lines(synthesize(data_root(out), VERSION, blobs="empty", reporter=reporter))


def create_infos_step(out: Path, reporter: Reporter) -> List[str]:
    """The infos of the mini dataset in every target's format into `<out>/data/nuscenes`."""
    from occprep.create import CreateOptions, create_infos
    from occprep.targets import targets

    root = data_root(out)
    step_reporter = Reporter("create-infos", quiet=reporter.quiet)
    _, lines = create_infos(str(root / "nuscenes"), root / "nuscenes", "nuscenes", VERSION, root,
                            options=CreateOptions(targets=tuple(targets())), reporter=step_reporter)
    return lines


def merge_occ_step(fmt: str, out: Path, reporter: Reporter, root: Optional[Path] = None) -> List[str]:
    """Ground truth of layout `fmt` (its release where synth puts it under `root`, default `<out>/data`)
    merged into the infos and verified."""
    from occprep.errors import OccprepError
    from occprep.merge import MergeOptions, merge_occ, summarize
    from occprep.synth import OCC_FOLDERS

    root = root or data_root(out)
    options = MergeOptions(infos_dir=root / "nuscenes", occ_root=str(root / OCC_FOLDERS[fmt]), format=fmt, verify=True,
                           root_path=str(root / "nuscenes"))
    result = merge_occ(options, Reporter("merge-occ", quiet=reporter.quiet))
    if result.problem:
        raise OccprepError(result.problem)
    return summarize(result)[1]


def voxel_lists_step(out: Path, reporter: Reporter) -> List[str]:
    """SurroundOcc and OpenOccupancy ground truth (2-7 MB per keyframe) of two short scenes in
    `<out>/voxel-lists/data`, merged into their infos and verified."""
    from occprep.create import CreateOptions, create_infos
    from occprep.synth import synthesize

    root = Path(out) / "voxel-lists" / "data"
    synthesize(root, VERSION, scenes=2, samples_per_scene=2, occ=("surroundocc", "openoccupancy"),
               reporter=Reporter("synth", quiet=True))
    create_infos(str(root / "nuscenes"), root / "nuscenes", "nuscenes", VERSION, root,
                 options=CreateOptions(file_check=False), reporter=Reporter("create-infos", quiet=True))
    return [line for fmt in ("surroundocc", "openoccupancy") for line in merge_occ_step(fmt, out, reporter, root)]


def show_step(out: Path, reporter: Reporter) -> List[str]:
    """A picture of one val sample with its OpenOcc v1 occupancy, and what to try next."""
    from occprep.show import show_sample

    root = data_root(out)
    merged = root / "occ_gt_release_v1_0" / "nuscenes_infos_temporal_val_occ_gt.pkl"
    shown = show_sample(merged, None, 0, Path(out) / "sample.png", data_root=root.parent)
    bevdet = root / "nuscenes" / "bevdetv2-nuscenes_infos_val.pkl"
    voxel_lists = Path(out) / "voxel-lists" / "data"
    return [f"wrote {shown.out} (sample {shown.token})",
            f"next: occprep check --root-path {root / 'nuscenes'} --canbus {root}",
            f"      occprep inspect {merged}",
            f"      occprep inspect {bevdet}",
            f"      occprep show {merged} --index 5 --out sample5.png",
            f"      occprep show {voxel_lists / 'nuscenes' / 'nuscenes_occ_infos_val.pkl'} --occ-root "
            f"{voxel_lists / 'nuScenes-Occupancy'} --out openoccupancy.png",
            f"      occprep convert {root / 'nuscenes' / 'nuscenes_infos_temporal_val.pkl'} --to mmdet3d "
            "--out mmdet3d_val.pkl"]


STEPS: List[Tuple[str, Callable[[Path, Reporter], List[str]]]] = [
    ("synth", synth_step),
    ("create-infos", create_infos_step),
    ("merge-occ openocc-v1", functools.partial(merge_occ_step, "openocc-v1")),
    ("merge-occ occ3d", functools.partial(merge_occ_step, "occ3d")),
    ("merge-occ openocc-v2", functools.partial(merge_occ_step, "openocc-v2")),
    ("merge-occ surroundocc and openoccupancy", voxel_lists_step),
    ("show", show_step),
]
"""(name, step) in running order."""


def demo(out: Path, reporter: Reporter) -> Tuple[dict, List[str]]:
    """Run every step of `STEPS` into `out`; the summary names where everything went."""
    lines: List[str] = []
    for name, step in STEPS:
        reporter.info(f"== {name}")
        lines += [f"[{name}]", *step(Path(out), reporter)]
    return {"out": str(out), "steps": [name for name, _ in STEPS]}, lines
