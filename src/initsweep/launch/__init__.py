"""Launching sweeps: the Hydra sweep callback, the console, job status files, GPU slots, SLURM,
adopting what a dead sweep left, Ctrl-C, and the pause points tests hold a process at.

Everything here runs in the process that launches a multirun (and is also imported by jobs), so it
is torch-free: a launcher that only submits jobs (joblib, SLURM) never pays for torch or
Lightning. It may import ``tracking``, ``diagnostics.pending`` (torch-free), ``report`` and the
package's base modules (``vocab``, ``naming``, ``errors``), never ``training``, ``models`` or
``init``.
"""
