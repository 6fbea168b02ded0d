"""Weight initialization: ``registry`` (register, get_scheme, list_schemes), ``schemes`` (the
per-layer fills), ``passes`` (LSUV, zero-init residual, Fixup: schemes with a pass over the whole
network), ``rules`` (layer specs, selection by index, path or type, the bias and norm rules),
``apply`` (``initialize_``, which applies a config to a network) and ``checks`` (the parameter
checks, raised like ``torch.nn.init``'s).

Importing the package registers the built-in schemes (below), so ``get_scheme`` and
``initialize_`` see them whichever module is imported first. Imports torch, ``models`` (to find a
network's layers) and the base modules only.
"""

from initsweep.init import passes, schemes  # noqa: F401  (registers the built-in schemes)
