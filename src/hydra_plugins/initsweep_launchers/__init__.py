"""initsweep's Hydra launchers (``hydra/launcher=slurm``: ``slurm_launcher.SlurmLauncher``).

``hydra_plugins`` is a namespace package shared with other Hydra plugins: no ``__init__.py`` there.
"""
