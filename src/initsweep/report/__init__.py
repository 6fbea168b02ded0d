"""``initsweep report``: read a sweep back from MLflow and show how much of a result is the seed.

- ``select``: which runs (experiment, sweep id / parent run, filter); ``table``: one pandas row
  per run, grouped by every varying param except the seed keys;
- ``stats``: per-group statistics (t / bootstrap-t intervals, the test-set noise floor) and what
  the verdicts rest on; ``pairs``: the verdicts themselves (difference of means, paired t or
  Welch, Holm; P(A > B) and the sign test as the second line; seeds that would settle a pair;
  ASO); Holm and the tests live in
  ``initsweep.stats`` (numpy/scipy only, importable anywhere);
- ``aso``: almost stochastic order (numpy only);
- ``variance_split``: the init-seed x data-seed variance components with their intervals;
- ``tuning``: the tuning trap (flip rate, regret, optimism, Kendall tau, P(best), regret vs k);
- ``figures``: the plots; ``render``: report.md / report.html / CSVs;
- ``publish``: the report logged on the sweep's parent run and shown in the MLflow UI (summary
  metrics, description, saved view); ``options``: the root config's ``report`` value, typed.

docs/report.md states each statistic's method, measured coverage or error rate and assumptions.
"""
