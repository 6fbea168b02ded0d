"""Networks: ``zoo`` (the built-in MLP, CNN and ResNet factories that ``conf/model/`` names),
``layers`` (what the rest of the package asks of any network: its weight, norm and residual
layers) and ``build`` (a config's ``_target_`` located, checked and called).

Imports torch, Hydra (``build``) and the base modules only.
"""
