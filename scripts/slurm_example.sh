#!/usr/bin/env bash
# Example: the demo sweep on a SLURM cluster, one array task (1 GPU, 4 CPUs) per job, logging into
# a shared MLflow server. Run it on the login node, from the repository, with the project installed
# in .venv (the same path must exist on the compute nodes: a shared file system).
#
#   MLFLOW_TRACKING_URI=http://mlflow.internal:5000 PARTITION=gpu scripts/slurm_example.sh
#
# The launching process stays alive while the jobs run (it waits for them to collect the summary):
# run it inside tmux/screen, or submit this script itself as a small CPU job
# (sbatch -p cpu -c 1 -t 24:00:00 scripts/slurm_example.sh).
# Per-job logs: multirun/<date>/<time>/.submitit/<job id>/; Hydra outputs: multirun/<date>/<time>/<n>/.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${PARTITION:?set PARTITION to the GPU partition of your cluster}"
: "${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to the shared server (scripts/start_tracking_server.sh)}"
export MLFLOW_TRACKING_URI   # credentials, if any, in MLFLOW_TRACKING_USERNAME / _PASSWORD, never in the URI

.venv/bin/python train.py -m \
    hydra/launcher=slurm \
    hydra.launcher.partition="$PARTITION" \
    hydra.launcher.timeout_min="${TIMEOUT_MIN:-30}" \
    hydra.launcher.cpus_per_task="${CPUS_PER_TASK:-4}" \
    hydra.launcher.array_parallelism="${ARRAY_PARALLELISM:-32}" \
    'hydra.launcher.setup=["source .venv/bin/activate"]' \
    tracking=server \
    init=xavier,he,zeros seed=0,1,2 "$@"
