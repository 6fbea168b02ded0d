"""Weight initialization: the scheme registry, the schemes, the network passes (LSUV, Fixup,
zero-init residual), the per-layer rules and ``initialize_``, which applies a config to a network.

Imports torch, ``models`` (to find a network's layers) and the base modules only.
"""
