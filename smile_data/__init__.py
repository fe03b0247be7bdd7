"""smile_data: object banks, overlaid-motion rendering and webdataset shards for SMILE.

Pipeline: vocabulary -> objects/ (build or import a bank) -> render/ (clips with moving
objects) -> shards/ (write, validate, read, preview).
"""

__version__ = "0.1.0"
