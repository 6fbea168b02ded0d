"""The MLflow store: opening and checking it, retries, resumable runs, redaction, notes, UI views,
who owns an open run and which runs are orphans.

Torch-free. It imports only MLflow, OmegaConf and the package's base modules (``vocab``,
``naming``, ``errors``); every other layer may import it, and it imports none of them.
"""
