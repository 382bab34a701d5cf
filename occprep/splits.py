"""Which output split (train, val, test, ...) each scene's infos go to.

Official nuScenes versions use the scene lists of nuscenes-devkit's `nuscenes.utils.splits` and
the reference rule: scenes in the train list go to train, every other scene to val (test
versions: everything to test). `--splits FILE` gives explicit lists for other datasets.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from occprep.errors import OccprepError
from occprep.fileio import read_json
from occprep.names import check_names

OFFICIAL_VERSIONS: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "v1.0-trainval": (("train", "train"), ("val", "val")),
    "v1.0-test": (("test", "test"),),
    "v1.0-mini": (("train", "mini_train"), ("val", "mini_val")),
}
"""Version -> (output split, devkit scene list) pairs; the first output is the reference's "train"
bucket, and scenes in no list go to the last output."""


@dataclass(frozen=True)
class SplitPlan:
    """Output splits (in writing order), the split of each listed scene, and where others go."""

    outputs: Tuple[str, ...]
    scene_split: Dict[str, str]
    fallback: Optional[str]
    """Split of scenes in no list (the reference: val, or test); None leaves them out."""
    source: str
    """Where the lists come from, for messages."""
    list_names: Dict[str, str] = field(default_factory=dict)
    """Output split -> the name of its list in `source` (when it differs from the split's)."""

    def assign(self, scene_names: Sequence[str]) -> Tuple[List[Optional[str]], List[str]]:
        """The split of each scene (None: left out) and the scenes that are in no list."""
        splits = [self.scene_split.get(name, self.fallback) for name in scene_names]
        unlisted = sorted(name for name in scene_names if name not in self.scene_split)
        return splits, unlisted

    def describe(self, split: str) -> str:
        """Where the scenes of output `split` are listed, for messages ('nuscenes-devkit list mini_val')."""
        return f"{self.source}: list {self.list_names.get(split, split)!r}"

    def check_scenes(self, present: Sequence[str], tables: str) -> None:
        """Raise an error naming every listed scene that is not in `present` (the scenes of `tables`),
        with the closest existing names; nothing is dropped silently."""
        check_names(self.scene_split, set(present), "scene", self.source,
                    f"{tables} hold {len(set(present))} scene(s); fix the names in {self.source}")


def devkit_scene_lists() -> Dict[str, List[str]]:
    """The scene lists of nuscenes-devkit's `nuscenes.utils.splits` (train, val, test, mini_*, ...).

    Importing that module imports the whole devkit (about 2 s: NuScenes, matplotlib, ...), longer
    than a whole create-infos run, so the module's own source is located without importing it and
    only its top-level assignments are evaluated.
    """
    spec = importlib.util.find_spec("nuscenes")
    if spec is None or not spec.submodule_search_locations:
        raise OccprepError("nuscenes-devkit is not installed: it provides the official scene lists "
                           "(pip install nuscenes-devkit), or pass --splits FILE")
    path = Path(next(iter(spec.submodule_search_locations))) / "utils" / "splits.py"
    tree = ast.parse(path.read_text(), str(path))
    namespace: dict = {"__builtins__": {"list": list, "sorted": sorted, "set": set}}
    assignments = ast.Module(body=[node for node in tree.body if isinstance(node, ast.Assign)], type_ignores=[])
    exec(compile(assignments, str(path), "exec"), namespace)
    return {name: value for name, value in namespace.items() if isinstance(value, list)}


def official_plan(version: str) -> SplitPlan:
    """The reference split rule for an official nuScenes version."""
    lists = devkit_scene_lists()
    pairs = OFFICIAL_VERSIONS[version]
    scene_split = {}
    for output, list_name in pairs:
        for scene in lists[list_name]:
            scene_split.setdefault(scene, output)
    outputs = tuple(output for output, _ in pairs)
    return SplitPlan(outputs, scene_split, fallback=outputs[-1], source="nuscenes-devkit's official scene lists",
                     list_names=dict(pairs))


def plan_from_file(path: Path) -> SplitPlan:
    """Explicit lists from a JSON file `{split name: [scene name, ...]}`; scenes in no list are left out."""
    try:
        lists = read_json(Path(path), Dict[str, List[str]])
    except OccprepError as exc:
        raise OccprepError(f"{exc}; a splits file is a JSON object of scene-name lists, e.g. "
                           '{"train": ["scene-0061"], "val": ["scene-0103"]}') from None
    if not lists:
        raise OccprepError(f"{path}: no splits; give {{\"train\": [scene names], \"val\": [...]}}")
    scene_split: Dict[str, str] = {}
    for split, scenes in lists.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", split):
            raise OccprepError(f"{path}: split name {split!r} is not usable in a file name "
                               "(letters, digits, '_', '.', '-')")
        for scene in scenes:
            if scene_split.setdefault(scene, split) != split:
                raise OccprepError(f"{path}: scene {scene!r} is in both {scene_split[scene]!r} and {split!r}")
    return SplitPlan(tuple(lists), scene_split, fallback=None, source=str(path))
