"""`bevformer`: the temporal infos of BEVFormer's `tools/create_data.py` (OccNet's flavour, with
`scene_name`), as /docs infos-format describes them: the neutral info itself. Read by BEVFormer,
OccNet, the Occ3D baselines and their forks. Legacy box convention.
"""

from __future__ import annotations

from typing import List

from occprep.infos import NEUTRAL_KEYS
from occprep.targets import Build, BuildOptions, Target, legacy_infos, legacy_pickle


def assemble(neutral: List[dict], build: Build, options: BuildOptions) -> dict:
    """`{'infos': [...], 'metadata': {'version': ...}}` with the neutral keys, in their order."""
    keys = TARGET.required(build.annotations)
    return legacy_pickle([{key: info[key] for key in keys} for info in neutral], build)


TARGET = Target(
    name="bevformer",
    file_pattern="{tag}_infos_temporal_{split}.pkl",
    readers="BEVFormer, OccNet, the Occ3D challenge baseline, SurroundOcc",
    box_convention="legacy",
    needs=NEUTRAL_KEYS,
    writes=NEUTRAL_KEYS,
    assemble=assemble,
    neutral=legacy_infos,
)
