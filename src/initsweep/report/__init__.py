"""``initsweep report``: read a sweep back from MLflow and show how much of a result is the seed.

- ``runs``: select runs (experiment, sweep id / parent run, filter) into one pandas row per run,
  grouped by every varying param except the seed keys;
- ``stats``: per-group statistics with bootstrap intervals and the test-set noise floor, paired
  P(A > B) verdicts, the init-seed x data-seed variance split;
- ``tuning``: the tuning trap (flip rate, regret, optimism, Kendall tau, P(best), regret vs k);
- ``plots``: the figures; ``render``: report.md / report.html / CSVs, logged on the parent run.
"""
