"""initsweep entry point: `python train.py -m init=xavier,he,zeros seed=0,1,2`.

A thin Hydra wrapper; a job's whole life is src/initsweep/training/job.py. Typed config schemas are
registered before Hydra composes, and a bad command line is one line with exit code 2.
``--dry-run`` prints the sweep's plan (runs to skip, resume, start; job placement) and exits.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from initsweep.launch.entry import one_line_config_errors
from initsweep.launch.interrupt import exit_on_interrupt
from initsweep.launch.schema import register_schemas

CONF = Path(__file__).resolve().parent / "conf"
register_schemas()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from initsweep.training.job import run_job  # after composition: a bad command line fails fast

    run_job(cfg)


if __name__ == "__main__":
    if "--dry-run" in sys.argv[1:]:  # the sweep's plan, creating nothing (initsweep.launch.plan)
        from initsweep.launch.plan import main as plan

        sys.exit(plan([a for a in sys.argv[1:] if a != "--dry-run"], CONF))
    with one_line_config_errors(CONF), exit_on_interrupt():  # Ctrl-C: exit 130, nothing RUNNING
        main()
