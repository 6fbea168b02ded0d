"""The ``initsweep`` console script: ``initsweep report [options]``, ``initsweep ui-link``,
``initsweep plan OVERRIDES`` (``initsweep.launch.plan``), ``initsweep doctor [--fix]``.

Bad input (an unknown experiment, sweep, metric or tuning key, a malformed filter, a missing
store) stops with one line that names the flag and what is allowed, and exit code 2, before
anything is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from initsweep.vocab import PRIMARY_METRIC


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors as ``error: <message>`` on one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def int_at_least(least: int):
    """argparse type: an integer >= ``least``, with a one-line message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"{text!r}: must be an integer >= {least}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def parser() -> argparse.ArgumentParser:
    """The command line: sub-commands ``report`` and ``ui-link``."""
    top = OneLineParser(prog="initsweep", description="initsweep tools.")
    commands = top.add_subparsers(
        dest="command",
        required=True,
        parser_class=OneLineParser,
        metavar="{report,ui-link,plan,doctor}",
    )
    rep = commands.add_parser(
        "report",
        help="seed-sensitivity report of a sweep",
        description="Read a sweep back from MLflow; per-group statistics over seeds, paired "
        "P(A>B) verdicts, the init/data seed variance split and the tuning trap; "
        "writes report.md, report.html, CSVs and plots, and logs them on the "
        "sweep's parent run.",
    )
    rep.add_argument(
        "--experiment",
        help="experiment name (default: the sweep's own with --sweep / --latest, else initsweep)",
    )
    which = rep.add_mutually_exclusive_group()
    which.add_argument("--sweep", metavar="ID", help="sweep id (tag sweep_id) or parent run id")
    which.add_argument("--latest", action="store_true", help="the newest sweep of the experiment")
    rep.add_argument(
        "--filter",
        metavar="FILTER",
        help="MLflow filter string, e.g. \"params.`optim.name` = 'sgd'\"",
    )
    rep.add_argument(
        "--metric", default=PRIMARY_METRIC, help=f"metric to compare ({PRIMARY_METRIC})"
    )
    rep.add_argument("--tune", metavar="KEY", help="param to analyse as tuned, e.g. optim.lr")
    rep.add_argument(
        "--select-metric",
        metavar="METRIC",
        help="metric the tuning trap chooses on (default: the val/ counterpart of "
        "--metric, e.g. val/acc; --metric itself when the runs have none)",
    )
    rep.add_argument(
        "--all-pairs",
        action="store_true",
        help="compare every pair of groups (default: groups that differ in one "
        "key, neighbouring values of numeric keys)",
    )
    rep.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="output folder (default: <sweep dir>/report, else outputs/report-<id>)",
    )
    add_tracking_uri(rep)
    rep.add_argument(
        "--n-test",
        type=positive_int,
        metavar="N",
        help="test-set size for the noise floor when runs did not log n_test",
    )
    rep.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seed of the bootstrap and subset draws (0)",
    )
    rep.add_argument(
        "--no-log",
        action="store_true",
        help="write the files but do not log them on the parent run",
    )
    link = commands.add_parser(
        "ui-link",
        help="print the MLflow UI link of a sweep (its saved view)",
        description="Print the link that opens a sweep in the MLflow UI: the runs page in the "
        "model-training view, on the sweep's saved view (grouped by init config, "
        "test/acc per run as bars). Writes the view first if the sweep has none.",
    )
    link.add_argument("--experiment", help="experiment name (default: any experiment)")
    link.add_argument(
        "--sweep", metavar="ID", help="sweep id or parent run id (default: the newest sweep)"
    )
    add_tracking_uri(link)
    link.add_argument(
        "--base-url",
        metavar="URL",
        help="where the UI is served (default: $INITSWEEP_UI_URL, else the "
        "tracking server, else http://127.0.0.1:5000)",
    )
    plan = commands.add_parser(
        "plan",
        help="what a sweep would do, creating nothing (train.py -m ... --dry-run)",
        description="Compose the sweep as `python train.py -m OVERRIDES` would and print how "
        "many runs it makes, which are FINISHED (skipped), which resume from a "
        "checkpoint, which start, and how its jobs are placed. Creates nothing.",
    )
    plan.add_argument("--list", action="store_true", help="one line per run")
    plan.add_argument(
        "--config-dir",
        metavar="DIR",
        type=Path,
        help="the conf/ folder (default: the repository's, beside train.py)",
    )
    plan.add_argument(
        "overrides",
        nargs=argparse.REMAINDER,
        metavar="OVERRIDES",
        help="the sweep's overrides, as on train.py's command line",
    )
    doctor = commands.add_parser(
        "doctor",
        help="list runs left open by a process that is gone (--fix: adopt them)",
        description="List the orphans of a store: runs left RUNNING by a process that died "
        "(checked by PID on this host, by heartbeat elsewhere), and runs an "
        "interrupted sweep handed over. --fix applies the rules a launch applies: "
        "complete a run whose training finished, mark one with a checkpoint "
        "resumable, close the rest and dead sweeps' parents KILLED.",
    )
    doctor.add_argument("--experiment", help="experiment name (default: every experiment)")
    add_tracking_uri(doctor)
    doctor.add_argument("--fix", action="store_true", help="adopt the orphans (no launch)")
    doctor.add_argument(
        "--stale-after",
        type=float,
        metavar="S",
        help="seconds without a heartbeat after which a run of another host "
        "counts as orphaned (default: $INITSWEEP_STALE_AFTER_S, else 600)",
    )
    return top


def doctor_command(args: argparse.Namespace) -> int:
    """Run ``initsweep doctor``; returns the exit code."""
    # MLflow loads once the arguments parsed (as in ui_link_command)
    from initsweep.launch.adoption import doctor
    from initsweep.report.select import ReportInputError, default_tracking_uri, open_existing_store

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    client = open_existing_store(args.tracking_uri or default_tracking_uri())
    if args.experiment:
        experiment = client.get_experiment_by_name(args.experiment)
        if experiment is None:
            raise ReportInputError("--experiment", f"{args.experiment!r}: not in the store")
        ids = [experiment.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    lines = doctor(client, ids, args.fix, args.stale_after)
    print("\n".join(lines) if lines else "no orphans")
    return 0


def add_tracking_uri(parser: argparse.ArgumentParser) -> None:
    """The store option every command that reads runs has."""
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlruns/mlflow.db)",
    )


def ui_link_command(args: argparse.Namespace) -> int:
    """Run ``initsweep ui-link``; returns the exit code."""
    # MLflow and pandas load once the arguments parsed: --help and a usage error stay instant
    from initsweep.report.select import (
        ReportInputError,
        default_tracking_uri,
        open_existing_store,
        select,
    )
    from initsweep.tracking.ui import sweep_link, ui_base_url

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = args.tracking_uri or default_tracking_uri()
    client = open_existing_store(uri)
    selection = select(client, args.experiment, sweep=args.sweep, latest=not args.sweep)
    if not selection.parent_run_id:
        raise ReportInputError("--sweep", f"{args.sweep!r}: its parent run is not in the store")
    parent = client.get_run(selection.parent_run_id)
    print(sweep_link(client, parent, args.base_url or ui_base_url(uri)))
    return 0


def report_command(args: argparse.Namespace) -> int:
    """Run ``initsweep report``; returns the exit code."""
    # pandas, scipy, matplotlib and MLflow load once the arguments parsed (as in ui_link_command)
    from initsweep.launch.progress import spinner
    from initsweep.report.publish import make_report
    from initsweep.report.render import ARTIFACT_PATH, terminal
    from initsweep.report.select import default_tracking_uri, open_existing_store, select

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = args.tracking_uri or default_tracking_uri()
    client = open_existing_store(uri)
    selection = select(
        client, args.experiment, sweep=args.sweep, latest=args.latest, filter_string=args.filter
    )
    with spinner("report: reading the runs and computing"):  # on a terminal only
        report, files, folder, logged = make_report(
            client,
            selection,
            args.out,
            metric=args.metric,
            tune=args.tune,
            n_test=args.n_test,
            seed=args.seed,
            log=not args.no_log,
            select_metric=args.select_metric,
            all_pairs=args.all_pairs,
        )
    print(terminal(report))
    print(f"\nwrote {len(files)} files to {folder}: report.md, report.html, runs.csv, ...")
    if logged:
        print(f"logged them under {ARTIFACT_PATH}/ on the sweep's parent run {logged}")
    elif not args.no_log:
        print("not logged: no parent run selected (use --sweep or --latest)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``initsweep`` script; exit code 2 on bad input."""
    top = parser()
    args, unknown = top.parse_known_args(argv)
    if args.command == "plan":  # train.py's flags (-m) pass through with the overrides
        from initsweep.launch.plan import main as plan

        return plan(
            [*unknown, *args.overrides, *(["--list"] if args.list else [])], args.config_dir
        )
    if unknown:
        top.error(f"unrecognized arguments: {' '.join(unknown)}")
    from initsweep.report.select import ReportInputError  # pandas, MLflow: after parsing (above)

    try:
        command = {"ui-link": ui_link_command, "doctor": doctor_command}.get(
            args.command, report_command
        )
        return command(args)
    except ReportInputError as err:
        print(f"error: {err.flag} {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
