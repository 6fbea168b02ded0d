"""vocab.py's MLflow tag names are MLflow's own (spelled out there to stay import-light)."""

from __future__ import annotations

import subprocess
import sys

from mlflow.utils import mlflow_tags

from initsweep import vocab


def test_mlflow_tag_names_are_mlflows_constants():
    assert vocab.PARENT_TAG == mlflow_tags.MLFLOW_PARENT_RUN_ID
    assert vocab.NOTE_TAG == mlflow_tags.MLFLOW_RUN_NOTE
    # what the UI's "Save view" writes and viewStateShareKey reads (docs/mlflow_ui.md)
    assert vocab.VIEW_TAG_PREFIX == "mlflow.sharedViewState."
    assert vocab.PRIMARY_METRIC_TAG == mlflow_tags.MLFLOW_EXPERIMENT_PRIMARY_METRIC_NAME


def test_the_vocabulary_and_the_entry_point_import_no_mlflow():
    code = (
        "import sys, initsweep.vocab, initsweep.launch.entry, initsweep.launch.console, "
        "initsweep.diagnostics.findings; assert 'mlflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
