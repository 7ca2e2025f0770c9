"""Data: bundled offline sets, user CSV/.npz/Datasets, checks, splits, normalization, loaders."""

from steepest.data._registry import DATASETS
from steepest.data.bundle import load_data
from steepest.data.containers import DataBundle, DataInfo, DatasetSplit, Split
from steepest.data.loader import DeviceLoader, eval_batches
from steepest.data.normalize import Standardizer
from steepest.data.raw import RawData
from steepest.data.splits import default_fractions, split_indices

__all__ = [
    "DATASETS",
    "DataBundle",
    "DataInfo",
    "DatasetSplit",
    "DeviceLoader",
    "RawData",
    "Split",
    "Standardizer",
    "default_fractions",
    "eval_batches",
    "load_data",
    "split_indices",
]
