"""The race sweeper, a Hydra plugin shipped with initsweep: ``hydra/sweeper=race`` (docs/race.md).

Hydra finds it by importing every module of the ``hydra_plugins`` namespace package (``src/
hydra_plugins`` has no ``__init__.py`` on purpose: other plugins share the namespace). Its
modules import only Hydra and OmegaConf at import time, since every Hydra process scans them.
"""
