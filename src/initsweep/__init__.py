"""initsweep: reproducible sweeps over neural-network weight initialization."""

import os

__version__ = "0.1.0"

# MLflow settings for every entry point (train.py, the report, the tests), set here because the
# package is imported before any of them imports mlflow: no telemetry threads (there is no
# network), and no "View run at ..." line breaking the one-line-per-job console.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
