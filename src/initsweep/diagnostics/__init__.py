"""What a run measures about its network and what it makes of it: the probe and its Lightning
callback (torch), the findings in words, the per-run plots, the plot workers and the pending ends
of runs whose plots are being drawn.

``findings``, ``plots``, ``plot_worker`` and ``pending`` are torch-free (the sweep callback and
the report import them); ``probe`` (the measurements) imports torch and ``models``, ``callback``
(when they are taken during a fit) Lightning too. Nothing here imports ``training`` or
``launch.sweep``.
"""
