"""`bevformer`: the temporal infos of BEVFormer's `tools/create_data.py` (OccNet's flavour, with
`scene_name`), as /docs infos-format describes them: the neutral info itself. Read by BEVFormer,
OccNet, the Occ3D baselines and their forks. Legacy box convention.
"""

from __future__ import annotations

from occprep.infos import NEUTRAL_KEYS
from occprep.targets import key_selecting_target


TARGET = key_selecting_target("bevformer", "{tag}_infos_temporal_{split}.pkl",
                              "BEVFormer, OccNet, the Occ3D challenge baseline, SurroundOcc", NEUTRAL_KEYS)
