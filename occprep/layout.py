"""The one recogniser of the usual data-layout mistakes, for every command that takes these paths.

The layout the reference projects document (and every command defaults to):

    data/                      --canbus (the folder that *contains* can_bus/)
    ├── can_bus/               {scene}_pose.json, ...
    ├── nuscenes/              --root-path: v1.0-*/ (13 tables), maps/, samples/, sweeps/, gts/ (Occ3D)
    └── occ_gt_release_v1_0/   --occ-root for OpenOcc v1: occ_gt_{split}.json, train/, val/

Each function looks at one path flag as typed and, when it is off by a recognisable step (the
folder one level too high or too low, the version folder given as the root, `can_bus/` itself,
a nested `can_bus/can_bus/`, sensor folders extracted beside the root), returns what it is and the
exact corrected flag, spelled from what the user typed. None means no mistake was recognised
(the path is right, or wrong in a way this module cannot name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, NamedTuple, Optional

from occprep.errors import OccprepError
from occprep.names import closest

SENSOR_FOLDERS = ("samples", "sweeps")
OPENOCC_RELEASE = "occ_gt_release_v1_0"


@dataclass(frozen=True)
class PathFix:
    """A recognised mistake in one path flag and the flag(s) that fix it."""

    flag: str
    """The flag as the user passes it, e.g. '--root-path'."""
    given: str
    """The value as typed."""
    corrected: str
    """The value that was meant, spelled from the typed one."""
    what: str
    """What the given path is, e.g. 'the version folder itself'."""
    also: str = ""
    """Further flags the fix needs, e.g. '--version v1.0-mini'."""
    certain: bool = True
    """The given path is a known step away from the right one (False: the right one was found
    elsewhere, e.g. beside the dataset root, and is only a likely guess)."""

    @property
    def flags(self) -> str:
        """The corrected flag(s), ready to paste: '--root-path data/nuscenes --version v1.0-mini'."""
        return f"{self.flag} {self.corrected}" + (f" {self.also}" if self.also else "")

    def message(self, also: bool = True) -> str:
        """One line: what the given path is and the flag to use instead (`also=False`: without the further
        flags, for a command that has none)."""
        flags = self.flags if also else f"{self.flag} {self.corrected}"
        return f"{self.flag} {self.given} is {self.what}: use {flags}"


def parent(given: str) -> str:
    """The typed path's parent, spelled like it, a leading './' kept (it is part of every path an info
    holds): 'data/nuscenes/v1.0-mini' -> 'data/nuscenes', './data/nuscenes/maps/' -> './data/nuscenes'."""
    stripped = given.rstrip("/") or "/"
    if Path(stripped).name in ("", ".", ".."):
        return os.path.dirname(os.path.abspath(given))
    return os.path.dirname(stripped) or "."


def child(given: str, name: str) -> str:
    """`name` inside the typed path, spelled like it ('.' + 'data' -> 'data', './data' + 'nuscenes' ->
    './data/nuscenes')."""
    return name if given.rstrip("/") in ("", ".") else os.path.join(given.rstrip("/"), name)


def _dirs(folder: Path, preferred: Iterable[str] = ()) -> List[Path]:
    """Sub-folders of `folder`, the `preferred` names first, then by name."""
    try:
        found = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []
    rank = {name: i for i, name in enumerate(preferred)}
    return sorted(found, key=lambda p: (rank.get(p.name, len(rank)), p.name))


def is_version_folder(folder: Path) -> bool:
    """A nuScenes version folder: it holds the scene table."""
    return (Path(folder) / "scene.json").is_file()


def version_folders(root: Path) -> List[str]:
    """Names of the version folders (with tables) directly in `root`."""
    return [d.name for d in _dirs(Path(root)) if is_version_folder(d)]


def version_folder(root: Path, version: str) -> Path:
    """`root/version`; raises OccprepError naming the closest version folder present when it is not a folder."""
    folder = Path(root) / version
    if not folder.is_dir():
        present = version_folders(root)
        meant = (closest(version, present) or present)[:1]
        hint = f"; use --version {meant[0]} (present: {', '.join(present)})" if meant else "; check --root-path"
        raise OccprepError(f"--version {version}: no folder {folder}{hint}")
    return folder


def fix_root_path(given: str) -> Optional[PathFix]:
    """`--root-path` pointing at a version folder, one level above the dataset root, or one below it."""
    root = Path(given)
    if not root.is_dir() or version_folders(root):
        return None
    flag = "--root-path"
    if is_version_folder(root):
        return PathFix(flag, given, parent(given), f"the version folder {root.name}/ itself (the root holds it)",
                       f"--version {root.name}")
    for sub in _dirs(root, preferred=("nuscenes",)):
        if version_folders(sub):
            return PathFix(flag, given, child(given, sub.name), "one level above the dataset root")
    up = Path(parent(given))
    if up != root and version_folders(up):
        return PathFix(flag, given, parent(given), f"inside the dataset root ({up} holds {', '.join(version_folders(up))})")
    beside = [sub for sub in _dirs(up, preferred=("nuscenes",)) if sub != root and version_folders(sub)]
    if _has_poses(root) and beside:
        return PathFix(flag, given, child(parent(given), beside[0].name), "the CAN bus folder, not the dataset root")
    return None


def _has_poses(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*_pose.json"))


def fix_canbus(given: str, root_path: Optional[str] = None) -> Optional[PathFix]:
    """`--canbus` pointing at can_bus/ itself, at the folder above the right one, or a nested
    can_bus/can_bus/; or, when the given folder has no can_bus/ at all, one beside `root_path`."""
    folder = Path(given)
    if _has_poses(folder / "can_bus"):
        return None
    flag = "--canbus"
    if _has_poses(folder):
        return PathFix(flag, given, parent(given), "can_bus/ itself (give the folder that contains it)")
    if _has_poses(folder / "can_bus" / "can_bus"):
        return PathFix(flag, given, child(given, "can_bus"), "two levels above the CAN bus files (can_bus/can_bus/)")
    for sub in _dirs(folder, preferred=("data",)) if folder.is_dir() else []:
        if _has_poses(sub / "can_bus"):
            return PathFix(flag, given, child(given, sub.name), "one level above the folder that contains can_bus/")
    if root_path is not None:
        for candidate in (Path(root_path), Path(parent(root_path))):
            if _has_poses(candidate / "can_bus"):
                return PathFix(flag, given, str(candidate), f"not where can_bus/ is ({candidate} holds it)",
                               certain=False)
    return None


def misplaced_sensor_folders(given_root: str) -> Optional[str]:
    """Where `samples/` and `sweeps/` went when they are not in the dataset root: extracted beside
    it or one folder down. Returns the advice (a shell command), or None."""
    root = Path(given_root)
    if (root / "samples").is_dir():
        return None
    places = [(Path(parent(given_root)), "beside")] + [(d, "inside a sub-folder of") for d in _dirs(root)]
    for place, relation in places:
        present = [name for name in SENSOR_FOLDERS if (place / name).is_dir()]
        if "samples" in present:
            moved = " ".join(str(place / name) for name in present)
            return (f"{' and '.join(f'{n}/' for n in present)} are in {place}, {relation} the dataset root "
                    f"{given_root}: move them into it (mv {moved} {given_root}/)")
    return None


def _holds(folder: Path, pattern: str) -> bool:
    """Whether `folder` holds something matching the glob `pattern` (stops at the first match)."""
    return folder.is_dir() and next(iter(folder.glob(pattern)), None) is not None


class OccupancyRoot(NamedTuple):
    """How to recognise the root of one occupancy release."""

    glob: str
    """What the root holds, as a glob pattern."""
    holds: str
    """The same, as people say it."""
    usual: str
    """The folder name the release is usually extracted to."""
    title: str
    """The release, for messages."""


OCCUPANCY_ROOTS = {
    "openocc-v1": OccupancyRoot("occ_gt_*.json", "occ_gt_{split}.json", OPENOCC_RELEASE, "OpenOcc v1 release"),
    "occ3d": OccupancyRoot("gts", "gts/", "nuscenes", "Occ3D release"),
    "openocc-v2": OccupancyRoot("openocc_v2", "openocc_v2/", "nuscenes", "OpenOcc v2 release"),
    "surroundocc": OccupancyRoot("samples/*.npy", "samples/<LiDAR file name>.npy", "nuscenes_occ", "SurroundOcc release"),
    "openoccupancy": OccupancyRoot("scene_*/occupancy", "scene_<scene token>/occupancy/", "nuScenes-Occupancy",
                                   "nuScenes-Occupancy release"),
}
"""Occupancy format -> how its root is recognised."""


def is_occupancy_root(given: str, format_: str) -> bool:
    """Whether `given` is the root of occupancy format `format_`: it holds what `OCCUPANCY_ROOTS` names
    (e.g. OpenOcc v1: occ_gt_{split}.json; Occ3D: gts/)."""
    return _holds(Path(given), OCCUPANCY_ROOTS[format_].glob)


def fix_occ_root(given: str, format_: str) -> Optional[PathFix]:
    """`--occ-root` one level off: the folder the root holds (Occ3D's `gts/`, SurroundOcc's `samples/`) or
    one inside the release (a scene), or the folder above the root (the release's usual name tried first)."""
    if is_occupancy_root(given, format_) or not Path(given).is_dir():
        return None
    root = OCCUPANCY_ROOTS[format_]
    up = parent(given)
    if is_occupancy_root(up, format_):
        held = root.glob.split("/")[0]
        return PathFix("--occ-root", given, up, f"the {held}/ folder itself (give the folder that holds it)"
                       if Path(given).name == held else f"inside the {root.title} (its parent holds {root.holds})")
    if is_occupancy_root(parent(up), format_):
        return PathFix("--occ-root", given, parent(up),
                       f"a scene folder inside the {root.title} (give the folder that holds {root.holds})")
    for sub in _dirs(Path(given), preferred=(root.usual,)):
        if is_occupancy_root(str(sub), format_):
            return PathFix("--occ-root", given, child(given, sub.name),
                           f"one level above the {root.title} (the folder that holds {root.holds})")
    return None


def check_root_path(root_path: str, version_flag: bool = True) -> Path:
    """The dataset root as a Path; a one-line error naming the corrected flag for the usual mix-ups
    (`version_flag=False`: for a command without `--version`)."""
    root = Path(root_path)
    if not root.is_dir():
        raise OccprepError(f"--root-path {root_path}: folder not found; give the nuScenes folder that holds "
                           "v1.0-*/, maps/, samples/ and sweeps/")
    fix = fix_root_path(root_path)
    if fix is not None:
        raise OccprepError(fix.message(also=version_flag))
    return root


def fix_unity_root(given: str) -> Optional[PathFix]:
    """`--root-path` pointing at one SOLO `sequence.<N>` folder instead of the run that holds them."""
    root = Path(given)
    if root.is_dir() and root.name.startswith("sequence.") and root.name[len("sequence."):].isdigit():
        return PathFix("--root-path", given, parent(given), "one sequence.<N> folder of a SOLO run")
    return None
