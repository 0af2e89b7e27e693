"""A print spooler with failover routing: the package version and nothing else."""

__version__ = "0.1.0"
