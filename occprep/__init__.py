"""occprep: nuScenes-format datasets to temporal info pickles, plus occupancy/flow ground truth."""

__version__ = "0.1.0"
