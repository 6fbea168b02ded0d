"""The built-in networks (MLP, CNN, ResNet) and what the rest of the package asks of any network:
its weight, norm and residual layers, and a user's factory loaded from ``_target_``.

Imports torch and the base modules only.
"""
