"""Datasets as in-memory uint8 tensors: specs, registry and loaders for the supported formats."""

from rdskd_dist.data.loader import SPLITS, load_split
from rdskd_dist.data.probe import load_probe
from rdskd_dist.data.paths import ENV_DATA_ROOT, resolve_data_root
from rdskd_dist.data.registry import DatasetSpec, get_spec, input_spec, list_datasets
from rdskd_dist.data.tensors import ImageTensors

__all__ = [
    "ENV_DATA_ROOT",
    "SPLITS",
    "DatasetSpec",
    "ImageTensors",
    "get_spec",
    "input_spec",
    "list_datasets",
    "load_probe",
    "load_split",
    "resolve_data_root",
]
