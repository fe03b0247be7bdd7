"""smile_data: object banks, overlaid-motion rendering and webdataset shards for SMILE.

Pipeline: vocabulary -> objects/ (build or import a bank) -> render/ (clips with moving
objects) -> shards/ (write, validate, read, preview).
"""

import importlib.metadata

__version__ = "0.1.0"


def installed_version(distribution: str, missing: str = "unknown") -> str:
    """The version of an installed distribution (e.g. "numpy"), `missing` where it is not installed;
    cards record these to say what made a bank or a dataset."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return missing
