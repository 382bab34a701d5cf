"""`bevformer`: the temporal infos of BEVFormer's `tools/create_data.py` (OccNet's flavour, with
`scene_name`), as /docs infos-format describes them: the neutral info itself. Read by BEVFormer,
OccNet, the Occ3D baselines and their forks. Legacy box convention.
"""

from __future__ import annotations

from occprep.infos import NEUTRAL_KEYS
from occprep.targets import Target, legacy_infos, select_needed


TARGET = Target(
    name="bevformer",
    file_pattern="{tag}_infos_temporal_{split}.pkl",
    readers="BEVFormer, OccNet, the Occ3D challenge baseline, SurroundOcc",
    box_convention="legacy",
    needs=NEUTRAL_KEYS,
    writes=NEUTRAL_KEYS,
    assemble=select_needed("bevformer"),
    neutral=legacy_infos,
)
