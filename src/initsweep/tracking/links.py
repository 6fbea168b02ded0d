"""Deep links into the MLflow UI: the UI's address for a store, the runs page on a saved view, a
run's page, an artifact's download URL.

MLflow 3.17's GenAI / model-training switch follows the URL's ``workflowType``, so every link
carries ``workflowType=machine_learning`` (docs/mlflow_ui.md). Torch-free.
"""

from __future__ import annotations

import os
import re

from initsweep.vocab import UI_URL_ENV

DEFAULT_UI_URL = "http://127.0.0.1:5000"  # `make ui` / `mlflow ui` defaults


def ui_base_url(tracking_uri: str | None = None) -> str:
    """The address of the UI that shows this store: ``$INITSWEEP_UI_URL``; else the tracking
    server itself (an ``http(s)://`` tracking URI serves the UI); else ``make ui``'s default."""
    configured = os.environ.get(UI_URL_ENV)
    if configured:
        return configured.rstrip("/")
    if tracking_uri and re.match(r"^https?://", tracking_uri):
        return re.sub(r"//[^/@]+@", "//", tracking_uri).rstrip("/")  # never print credentials
    return DEFAULT_UI_URL


def runs_page_link(
    base_url: str, experiment_id: str, key: str | None = None, mode: str = "CHART"
) -> str:
    """The runs page of an experiment in the model-training view, on saved view ``key``.

    Only ``workflowType``, ``compareRunsMode`` and ``viewStateShareKey`` go in the link: the UI
    ignores a saved view when the link also names a search facet (``searchFilter``, ...).
    ``mode``: ``CHART`` (the charts beside the run list) or ``TABLE`` (the columns).
    """
    query = f"workflowType=machine_learning&compareRunsMode={mode}"
    if key:
        query += f"&viewStateShareKey={key}"
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def run_page_link(base_url: str, experiment_id: str, run_id: str) -> str:
    """A run's overview page (its note, metrics, tags) in the model-training view."""
    return (
        f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        "?workflowType=machine_learning"
    )


def artifact_url(base_url: str, run_id: str, path: str) -> str:
    """The server's download URL of a run artifact (what an ``<img>`` in the UI can load)."""
    return f"{base_url.rstrip('/')}/get-artifact?path={path}&run_uuid={run_id}"


def absolute_image_links(markdown: str, base_url: str, run_id: str, artifact_dir: str) -> str:
    """``![alt](plots/x.png)`` -> ``![alt](<server>/get-artifact?path=<dir>/plots/x.png&...)``.

    MLflow 3.17's markdown artifact viewer draws an image only from an absolute ``http(s)`` URL:
    a relative path is shown as the text ``[alt](path)`` and a ``data:`` URI is stripped. The
    copy of report.md logged on a run therefore points at the server; the copy on disk keeps
    relative paths (they render on GitHub and in editors).
    """

    def absolute(match: re.Match) -> str:
        alt, path = match.group(1), match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", path, re.IGNORECASE):
            return match.group(0)  # already absolute
        return f"![{alt}]({artifact_url(base_url, run_id, f'{artifact_dir}/{path}')})"

    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", absolute, markdown)
