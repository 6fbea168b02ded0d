"""Generic statistics shared by the report and the race: intervals and tests of a difference of
means (``differences``: paired t, Welch, with a defined interval when a group is a point), Holm's
step-down adjustment and its e-value form (``multiple_testing``), and the anytime-valid betting
e-process the race eliminates with (``confidence_sequences``). Every module here imports only
numpy, scipy and the standard library, nothing from initsweep above it, so any part of the
package (a sweeper in the launching process, the report, a script) can use it without pulling
in torch, Lightning or MLflow. The methods' measured calibration and power are in
docs/report.md and docs/race.md.
"""
