"""The race: configurations compete over seeds; the clearly worse stop getting seeds early.

- ``rule``: the elimination rule (paired t-test against the leader, Holm over the live ones);
- ``engine``: the race as a state machine without I/O (``Race``, ``replay``);
- ``plan``: the sweeper's keys and the command line -> checked settings, configurations, jobs;
- ``collect``: a round's results from its jobs' status files;
- ``publish``: the round table, the intervals plot and the winners, on the sweep's parent run.

The Hydra plugin that drives it is ``hydra_plugins.initsweep_race`` (``hydra/sweeper=race``);
docs/race.md explains the rule and its measured numbers.
"""
