"""Which scenes a synthetic version holds (official names and splits) and when and where they were driven."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
from nuscenes.utils import splits

from occprep.errors import OccprepError
from occprep.synth.spec import Location, SynthSpec

VERSIONS = ("v1.0-mini", "v1.0-trainval", "v1.0-test")

SCENE_ORDER_HELP = (
    "v1.0-mini: the 10 mini scenes; v1.0-trainval: the official train (700) and val (150) lists "
    "interleaved in proportion, starting with one of each, so --scenes 2 already holds both splits; "
    "v1.0-test: the official test list (150).")


@dataclass(frozen=True)
class ScenePlan:
    """One scene to synthesise: its official name and split, and its log slot."""

    name: str
    """'scene-0061'."""
    split: str
    """'train', 'val' or 'test' (mini_train/mini_val count as train/val)."""

    @property
    def number(self) -> int:
        return int(self.name[-4:])


def _interleave(train: Sequence[str], val: Sequence[str]) -> List[ScenePlan]:
    """Both lists in proportion: each scene keyed by its fractional position in its own list."""
    keyed = [(i / len(train), 0, i, ScenePlan(name, "train")) for i, name in enumerate(train)]
    keyed += [(i / len(val), 1, i, ScenePlan(name, "val")) for i, name in enumerate(val)]
    return [plan for *_, plan in sorted(keyed, key=lambda k: k[:3])]


def official_scenes(version: str) -> List[ScenePlan]:
    """All scenes of `version` in occprep's order (see SCENE_ORDER_HELP), names from nuscenes.utils.splits."""
    if version == "v1.0-mini":
        return _interleave(splits.mini_train, splits.mini_val)
    if version == "v1.0-trainval":
        return _interleave(splits.train, splits.val)
    if version == "v1.0-test":
        return [ScenePlan(name, "test") for name in splits.test]
    raise OccprepError(f"--version {version!r}: use one of {', '.join(VERSIONS)}")


def select_scenes(version: str, scenes: Optional[int]) -> List[ScenePlan]:
    """The first `scenes` scenes of `version` (all when None)."""
    plans = official_scenes(version)
    if scenes is None:
        return plans
    if not 1 <= scenes <= len(plans):
        raise OccprepError(f"--scenes {scenes}: {version} has 1 to {len(plans)} scenes")
    return plans[:scenes]


@dataclass(frozen=True)
class LogPlan:
    """A drive that several scenes belong to: where and when."""

    index: int
    location: Location
    start_us: int
    """UTC timestamp of the log start, µs."""
    logfile: str
    """'n015-2018-07-24-11-22-45+0800': vehicle, local start time, UTC offset."""

    @property
    def date_captured(self) -> str:
        return self.logfile[5:15]


def plan_log(spec: SynthSpec, index: int, seed: int) -> LogPlan:
    """Log `index` (scene number // scenes_per_log): location by weight, a daytime start in 2018."""
    rng = np.random.default_rng([seed, 1, index])
    weights = np.array([loc.weight for loc in spec.locations])
    location = spec.locations[int(rng.choice(len(weights), p=weights / weights.sum()))]
    local = dt.datetime(2018, 7, 1) + dt.timedelta(days=int(rng.integers(0, 120)),
                                                   seconds=int(rng.integers(8 * 3600, 17 * 3600)))
    sign = 1 if location.utc_offset[0] == "+" else -1
    offset = dt.timedelta(hours=int(location.utc_offset[1:3]), minutes=int(location.utc_offset[3:5])) * sign
    utc = (local - offset).replace(tzinfo=dt.timezone.utc)
    start_us = int(utc.timestamp()) * 1_000_000 + int(rng.integers(0, 1_000_000))
    return LogPlan(index, location, start_us, f"{location.vehicle}-{local:%Y-%m-%d-%H-%M-%S}{location.utc_offset}")


def tokens(rng: np.random.Generator, n: int) -> List[str]:
    """`n` random 32-hex tokens drawn from `rng`."""
    text = rng.bytes(16 * n).hex()
    return [text[32 * i: 32 * (i + 1)] for i in range(n)]
