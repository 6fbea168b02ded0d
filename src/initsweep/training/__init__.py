"""A job's life and its training: the job, its failure guard, the builders, the Lightning module,
the single and stacked fits and what they share, the logger, optimizers, schedules and data.

The only layer that drives Lightning. It may import every layer below it (``models``, ``init``,
``diagnostics``, ``tracking``, ``launch``'s console and status files, the base modules); nothing
but the entry point (``train.py``) and the benchmarks import it.
"""
