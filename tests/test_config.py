import pytest
from nuscenes.can_bus.can_bus_api import NuScenesCanBus

from occprep.config import dataset_config, occupancy_format
from occprep.errors import OccprepError


def test_nuscenes_config_blacklist_matches_devkit(tmp_path):
    (tmp_path / "can_bus").mkdir()
    devkit = NuScenesCanBus(dataroot=str(tmp_path))
    assert list(dataset_config("nuscenes").can_bus_blacklist) == devkit.can_blacklist


def test_nuscenes_config_detection_names_cover_the_ten_classes():
    names = set(dataset_config("nuscenes").detection_names.values())
    assert names == {"barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
                     "traffic_cone", "trailer", "truck"}


def test_occupancy_grids():
    openocc, occ3d = occupancy_format("openocc-v1"), occupancy_format("occ3d")
    assert openocc.grid == occ3d.grid == (200, 200, 16)
    assert len(openocc.classes) == openocc.free_label == 16
    assert len(occ3d.classes) == occ3d.free_label == 17


def test_unknown_config_names_the_choices():
    with pytest.raises(OccprepError, match="one of occ3d, openocc-v1"):
        occupancy_format("semantickitti")


def test_every_subpackage_is_packaged():
    """pyproject's explicit package list names every folder of occprep/ with an __init__.py (the tests
    import the source tree, so a missing entry would only show in an installed copy)."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    listed = set(re.search(r"^packages = \[(.*)\]$", (repo / "pyproject.toml").read_text(), re.M).group(1)
                 .replace('"', "").replace(" ", "").split(","))
    found = {".".join(p.parent.relative_to(repo).parts) for p in (repo / "occprep").rglob("__init__.py")}
    assert found <= listed
