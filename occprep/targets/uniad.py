"""`uniad`: UniAD's `{tag}_infos_temporal_{split}.pkl` as its v1 converter writes it
(`tools/data_converter/uniad_nuscenes_converter.py`, OpenDriveLab/UniAD 532fc33): the BEVFormer info
without `scene_name` (legacy boxes), plus on train/val, per box:

| key | dtype, shape | content |
|---|---|---|
| `gt_inds` | int64 (N,) | row of the box's instance in instance.json (its track id; depends on which scenes the tables hold) |
| `gt_ins_tokens` | str (N,) | the instance tokens |
| `fut_traj` | float64 (N, 16, 2) | `PredictHelper.get_future_for_agent(..., seconds=8, in_agent_frame=True)`: the next positions, m, in the agent's frame (heading along +y), zero-padded |
| `fut_traj_valid_mask` | float64 (N, 16, 2) | 1 where `fut_traj` holds a position |
| `visibility_tokens` | int64 (N,) | visibility level 1-4 |

It shares BEVFormer's file names, so it goes to `--out-dir/uniad/` unless it is the only target and
`--out-dir` is given. For a sample without boxes the arrays are typed empties (the reference writes
float64 `np.array([])` for `gt_inds`, `gt_ins_tokens` and `visibility_tokens`).
"""

from __future__ import annotations

from typing import List

import numpy as np

from occprep.errors import OccprepError
from occprep.futures import agent_futures
from occprep.infos import GT_KEYS, SAMPLE_KEYS, InfoParts
from occprep.targets import BuildOptions, box_column, key_selecting_target

FUTURE_SECONDS = 8
UNIAD_KEYS = ("gt_inds", "gt_ins_tokens", "fut_traj", "fut_traj_valid_mask", "visibility_tokens")
KEYS = (*SAMPLE_KEYS, *GT_KEYS, *UNIAD_KEYS)


class _Tracks:
    """The per-box arrays of every box of one `InfoParts` (rows as `Scan.annotations`)."""

    def __init__(self, parts: InfoParts) -> None:
        scan = parts.scan
        positions, valid = agent_futures(scan, FUTURE_SECONDS)
        self.fut_traj = positions
        self.fut_traj_valid_mask = np.repeat(valid[..., None], 2, axis=2).astype(np.float64)
        self.gt_inds = scan.annotations.instance
        self.visibility_tokens = _visibility_levels(scan.annotations.visibility)


def _visibility_levels(tokens: List[str]) -> np.ndarray:
    """(A,) int64 visibility levels of `visibility_token`s; one that is not a number is an error."""
    bad = next((token for token in tokens if not token.isdigit()), None)
    if bad is not None:
        raise OccprepError(f"sample_annotation.visibility_token {bad!r} is not a visibility level (1-4); UniAD's "
                           "visibility_tokens need one on every box: fix the tables or choose another target")
    return np.array([int(token) for token in tokens], dtype=np.int64)


def _tracks(parts: InfoParts, options: BuildOptions) -> _Tracks:
    return parts.memo("uniad tracks", lambda: _Tracks(parts))


def gt_ins_tokens(parts: InfoParts, s: int, options: BuildOptions) -> np.ndarray:
    """(N,) str: the instance token of each box of keyframe `s` (dtype as `np.array` of them gives)."""
    instances = parts.scan.annotations.instance[parts.box_rows(s)].tolist()
    return np.array([parts.scan.instance_tokens[i] for i in instances], dtype=str)


TARGET = key_selecting_target(
    "uniad", "{tag}_infos_temporal_{split}.pkl",
    "UniAD (v1 pickles; its v2.0 docs point at them too) and the planners on its converter", KEYS,
    extras={key: gt_ins_tokens if key == "gt_ins_tokens" else box_column(_tracks, key) for key in UNIAD_KEYS},
    details=True,
    own_folder=True,
)
