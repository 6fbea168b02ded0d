"""initsweep: reproducible sweeps over neural-network weight initialization.

Importing the package has no side effects: entry points (train.py, the ``initsweep`` command)
set up what they need, and MLflow's settings are applied where a client is made
(``initsweep.tracking.store.open_client``).
"""

__version__ = "0.1.0"
