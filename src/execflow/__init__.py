"""execflow: the provider pipeline of a retail FX/CFD broker.

Importing this package (or any module in it) configures nothing and creates no file:
logging, settings and backends are set up by the entry point (``execflow.cli``).
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
