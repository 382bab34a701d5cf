"""Test data for the whole suite: where the real sample data is, and the generated datasets.

Real sample data (read-only; tests that change tables work on copies):
- `OCCPREP_TEST_DATA=/path/to/data` names the data folder; without it, `<repo>/../shared/data` when
  that exists. A test whose data is not there skips with a one-line reason saying how to enable it.
- `OCCPREP_REQUIRE_TEST_DATA=1` (CI, where the data is present) turns each such skip into a failure
  (pytest reports it as an ERROR at setup, with the same reason).
- The real nuScenes v1.0-mini is found in either layout: the shared one,
  `DATA/nuscenes-mini-scene-0916/{v1.0-mini,maps,can_bus}`, or the standard one of a full download,
  `DATA/nuscenes/v1.0-mini/` (13 tables) + `DATA/can_bus/`.

Everything else runs on datasets `occprep.synth` generates, so a fresh clone passes on its own.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from nuscenes.utils import splits

from helpers import create_infos_in
from occprep.synth import synthesize
from occprep.tables import TABLE_TYPES

DATA_VARIABLE = "OCCPREP_TEST_DATA"
REQUIRE_VARIABLE = "OCCPREP_REQUIRE_TEST_DATA"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""`<repo>/../shared/data`: where developers and CI have the real sample data."""
SHARED_MINI = "nuscenes-mini-scene-0916"
"""The shared layout's nuScenes folder: v1.0-mini/, maps/ and can_bus/ of one real mini scene."""
MINI_SPLITS = {"train": splits.mini_train, "val": splits.mini_val}
"""The devkit's v1.0-mini split lists."""
_START = Path.cwd()
"""The folder pytest was started in: a relative OCCPREP_TEST_DATA is taken from here (tests chdir)."""


def missing_real_data(what: str) -> NoReturn:
    """Skip the test (fail it under OCCPREP_REQUIRE_TEST_DATA=1) with a one-line reason naming `what`."""
    reason = f"real data not found: {what}; set {DATA_VARIABLE}=/path/to/data (see README, Development)"
    if os.environ.get(REQUIRE_VARIABLE, "") not in ("", "0"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def real_data_root() -> Path:
    """The real sample data folder: $OCCPREP_TEST_DATA, else `<repo>/../shared/data` if it exists."""
    value = os.environ.get(DATA_VARIABLE, "")
    if not value:
        if DEFAULT_DATA.is_dir():
            return DEFAULT_DATA
        missing_real_data(f"{DATA_VARIABLE} is not set and {DEFAULT_DATA} does not exist")
    root = _START / Path(value).expanduser()
    if not root.is_dir():
        missing_real_data(f"{DATA_VARIABLE}={value} is not a folder")
    return root


def real_data(name: str) -> Path:
    """The folder `name` of the real sample data (e.g. 'occ3d-nuscenes-one-frame'), or skip/fail."""
    folder = real_data_root() / name
    if not folder.is_dir():
        missing_real_data(f"no {name}/ in {folder.parent}")
    return folder


@dataclass(frozen=True)
class NuScenesData:
    """A nuScenes-format dataset on disk: `root/<version>/` holds the 13 tables (and `root/maps/`
    the map masks), `canbus/can_bus/` the CAN bus expansion files."""

    root: Path
    canbus: Path
    version: str = "v1.0-mini"

    def table(self, name: str) -> list:
        """The records of table `name` as the JSON gives them."""
        return json.loads((self.root / self.version / f"{name}.json").read_text())

    def split_samples(self, split: str) -> dict:
        """Scene name -> its sample tokens (table order), for the scenes in the devkit's mini_<split> list."""
        scenes = {s["token"]: s["name"] for s in self.table("scene") if s["name"] in MINI_SPLITS[split]}
        tokens = {name: [] for name in scenes.values()}
        for sample in self.table("sample"):
            if sample["scene_token"] in scenes:
                tokens[scenes[sample["scene_token"]]].append(sample["token"])
        return tokens

    def lay_out(self, base: Path) -> Path:
        """`base/data/nuscenes` and `base/data/can_bus` symlinks to this dataset, as the docs lay data
        out (create-infos' defaults then find it from `base`); returns `base`."""
        (base / "data").mkdir(parents=True)
        (base / "data" / "nuscenes").symlink_to(self.root)
        (base / "data" / "can_bus").symlink_to(self.canbus / "can_bus")
        return base

    def copy_to(self, base: Path) -> "NuScenesData":
        """A writable copy of the tables, maps and CAN bus (no blobs) laid out under `base/data`."""
        root = base / "data" / "nuscenes"
        for folder in (self.version, "maps"):
            shutil.copytree(self.root / folder, root / folder, copy_function=shutil.copyfile)
        shutil.copytree(self.canbus / "can_bus", base / "data" / "can_bus", copy_function=shutil.copyfile)
        return NuScenesData(root, base / "data", self.version)


def real_nuscenes() -> NuScenesData:
    """The real nuScenes v1.0-mini in the shared layout or the standard one of a full download, or skip/fail."""
    data = real_data_root()
    shared = data / SHARED_MINI
    if (shared / "v1.0-mini").is_dir():
        return NuScenesData(shared, shared)
    standard = NuScenesData(data / "nuscenes", data)
    if all((standard.root / "v1.0-mini" / f"{t}.json").is_file() for t in TABLE_TYPES) and (data / "can_bus").is_dir():
        return standard
    missing_real_data(f"{data} holds neither {SHARED_MINI}/ nor nuscenes/v1.0-mini/ (13 tables) beside can_bus/")


@pytest.fixture(scope="session")
def real_mini() -> NuScenesData:
    """The real nuScenes v1.0-mini (one scene in the shared data, all ten in a full download); read-only."""
    return real_nuscenes()


@pytest.fixture(scope="session")
def real_occ3d_frame() -> Path:
    """The real Occ3D-nuScenes release folder holding one `gts/scene-1077/<token>/labels.npz`."""
    return real_data("occ3d-nuscenes-one-frame")


@pytest.fixture(scope="session")
def real_unity_solo() -> Path:
    """Genuine Unity Perception SOLO output (pysolotools test data)."""
    return real_data("unity-solo-sample")


@pytest.fixture(scope="session")
def real_unity_mockup() -> Path:
    """The legacy (captures 0.0.1) Unity Perception mockup dataset with fake values (datasetinsights)."""
    return real_data("unity-perception-mockup")


GENERATED_SCENES = 3
"""Two mini_train scenes, so one can be left out without emptying its split, and one mini_val scene."""
GENERATED_SAMPLES_PER_SCENE = 40
"""A nuScenes scene's length; the val scene's 240 camera paths also exceed inspect's 200-path sample."""


@pytest.fixture(scope="session")
def generated_mini(tmp_path_factory) -> NuScenesData:
    """A generated v1.0-mini of three 40-sample scenes (scene-0061 and scene-0553 in mini_train, scene-0103
    in mini_val) with CAN bus, maps, no blobs and no occupancy. Shared by the session: do not change it,
    copy it (`writable_mini`)."""
    out = tmp_path_factory.mktemp("generated-mini")
    synthesize(out, "v1.0-mini", scenes=GENERATED_SCENES, samples_per_scene=GENERATED_SAMPLES_PER_SCENE,
               occ=(), blobs="none")
    return NuScenesData(out / "nuscenes", out)


@pytest.fixture
def writable_mini(generated_mini, tmp_path) -> NuScenesData:
    """A writable copy of the generated mini laid out under `tmp_path/data` (nuscenes/ and can_bus/)."""
    return generated_mini.copy_to(tmp_path)


@pytest.fixture(scope="session")
def mini_infos(generated_mini, tmp_path_factory) -> Path:
    """The val pickle of a default create-infos run (no file check: there are no blobs) on the
    generated mini, run from a folder where it is laid out as data/nuscenes + data/can_bus."""
    base = generated_mini.lay_out(tmp_path_factory.mktemp("mini-infos"))
    create_infos_in(base, "--out-dir", "out")
    return base / "out" / "nuscenes_infos_temporal_val.pkl"
