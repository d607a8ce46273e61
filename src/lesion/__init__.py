"""lesion: lesion studies for neural networks as one rebuildable Snakemake DAG."""

__version__ = "0.1.0"
