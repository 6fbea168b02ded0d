"""Where a run's time goes: initsweep versus a plain PyTorch loop, and the demo sweep end to end.

    python scripts/benchmark.py                          # S1 workload, 3 alternating repetitions
    python scripts/benchmark.py --mnist-root ../shared/data --repeats 5 --json bench.json
    python scripts/benchmark.py --workload digits --skip-sweep
    python scripts/benchmark.py --workload digits --model resnet --skip-sweep   # any built-in model
    python scripts/benchmark.py --profile run.html       # where one run's time goes, then exit
    python scripts/benchmark.py --heartbeat              # the owner heartbeat's cost, then exit

Also: seeds per second for K init seeds trained sequentially versus as one batched job
(``seeds_per_job=K``), with the default diagnostics and plots (what a user gets) and without
them (the training alone).

Workloads: ``s1`` = MLP 784-256-128-10 ReLU, Adam 1e-3, batch 128, 2 epochs over 55,000 x 784
inputs (real MNIST when ``--mnist-root`` has it, random tensors of that shape otherwise);
``digits`` = the default job (bundled digits, 10 epochs). ``--model cnn`` or ``resnet`` trains that
built-in model (its conf/model defaults, He init) instead of the MLP, in the plain loop too; the
CNN and ResNet need images (digits, or real MNIST for s1). ``--mlp-vmap`` runs the MLP's stacked
seeds under ``torch.func.vmap`` instead of its batched matmuls (to compare the two paths).

Each repetition runs, in this order, the plain loop, Lightning alone (the same module and data
in a bare Trainer: no logger, callbacks or diagnostics: the floor any Lightning run stands on), an
initsweep run (Lightning + diagnostics at the default cadence + MLflow logging to a sqlite store),
and the same run without diagnostics; the ratios are computed per repetition. MLflow's share is
the time the job waits on MLflow (``mlflow_clock``: every ``MlflowClient`` call from the job's
thread, and the metric logger's waits for its writer thread). The diagnosis in words
(``diagnostics.findings``: the findings computed from the diagnostics' records, its tag and note
written in one MLflow call) is timed on its own: ``diagnosis_ms`` per run and ``diagnosis_share``
of the run (part of ``artifacts_share``).

The seeds-per-second figures time what a multirun gets: plots drawn by the worker process while
the next job trains (``diagnostics.background_plots``), the clock stopped once every run has
ended with its plots logged.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from hydra import compose, initialize_config_dir  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from initsweep.diagnostics.pending import complete_pending  # noqa: E402
from initsweep.init.apply import initialize_  # noqa: E402
from initsweep.launch.console import quiet_third_parties  # noqa: E402
from initsweep.launch.schema import register_schemas  # noqa: E402
from initsweep.models.build import build_network  # noqa: E402
from initsweep.training.builders import build, build_trainer  # noqa: E402
from initsweep.training.job import run_job  # noqa: E402
from initsweep.training.logger import BufferedMlflowLogger  # noqa: E402
from initsweep.training.optimizers import make_optimizer  # noqa: E402


def workload_overrides(name: str, mnist_root: str | None, model: str = "mlp") -> list[str]:
    models = [] if model == "mlp" else [f"model={model}", "init=he"]
    if name == "digits":
        return models
    data = (
        ["data=mnist", f"data.root={mnist_root}"]
        if mnist_root and (Path(mnist_root) / "MNIST" / "raw").exists()
        else ["data=synthetic"]
    )
    mlp = ["model.hidden_sizes=[256,128]", "model.activation=relu"] if model == "mlp" else []
    return [
        *data,
        "data.batch_size=128",
        *mlp,
        *models,
        "optim=adam",
        "optim.lr=0.001",
        "trainer.max_epochs=2",
        "init=he",
    ]


def compose_cfg(overrides: list[str]):
    register_schemas()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def plain_loop(cfg) -> tuple[float, float]:
    """The same steps with nothing around them: preloaded tensors, slices, Adam, val each epoch."""
    datamodule, _ = build(cfg)
    (x, y), (xv, yv), (xt, yt) = datamodule.train, datamodule.val, datamodule.test
    start, cpu = time.perf_counter(), time.process_time()
    net = build_network(cfg.model, datamodule.input_shape, datamodule.num_classes, cfg.init_seed)
    activation = cfg.model.get("activation", "relu")
    initialize_(
        net,
        dict(cfg.init),
        cfg.init_seed,
        activation,
        draw_batch=lambda n: datamodule.probe_batch(n, cfg.init_seed)[0],
    )
    optimizer = make_optimizer(net.parameters(), cfg.optim)  # the run's optimizer, fused or not
    generator = torch.Generator().manual_seed(cfg.data_seed)
    batch = cfg.data.batch_size
    for _ in range(cfg.trainer.max_epochs):
        net.train()  # BatchNorm: batch statistics while training, running ones to evaluate
        order = torch.randperm(len(y), generator=generator)
        xs, ys = x[order], y[order]
        for i in range(0, len(y), batch):
            loss = F.cross_entropy(net(xs[i : i + batch]), ys[i : i + batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            (net(xv).argmax(1) == yv).float().mean().item()
    with torch.no_grad():
        (net(xt).argmax(1) == yt).float().mean().item()
    return time.perf_counter() - start, time.process_time() - cpu


def lightning_alone(cfg) -> tuple[float, float]:
    """The same module and data in a bare Trainer (fit + test): what Lightning itself costs."""
    quiet_third_parties()
    datamodule, module = build(cfg)
    start, cpu = time.perf_counter(), time.process_time()
    trainer = build_trainer(cfg, False, [])
    trainer.fit(module, datamodule=datamodule)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return time.perf_counter() - start, time.process_time() - cpu


@contextlib.contextmanager
def mlflow_clock():
    """Time the job spends waiting on MLflow: inside every public ``MlflowClient`` method called
    from the main thread, and in the metric logger's ``flush`` (which waits for its writer
    thread). The writer thread's own calls overlap training and are not counted: what they cost
    the training shows in the run's time. Nested calls count once; the wrapped methods still run.
    """
    spent = {"s": 0.0, "cpu_s": 0.0}
    depth = [0]
    originals = [
        (cls, name, fn)
        for cls in (MlflowClient, BufferedMlflowLogger)
        for name, fn in vars(cls).items()
        if callable(fn) and not name.startswith("_") and (cls is MlflowClient or name == "flush")
    ]

    def timed(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():
                return fn(*args, **kwargs)
            depth[0] += 1
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent["s"] += time.perf_counter() - start
                    spent["cpu_s"] += time.process_time() - cpu

        return call

    for cls, name, fn in originals:
        setattr(cls, name, timed(fn))
    try:
        yield spent
    finally:
        for cls, name, fn in originals:
            setattr(cls, name, fn)


class HookTimer:
    """A Lightning profiler that sums the wall time of every hook and loop action it is handed
    (``[Callback]DiagnosticsCallback.on_train_batch_end``, ``[LightningModule]...training_step``,
    ``save_checkpoint``, ...): inclusive times, so a loop action contains its hooks."""

    def __init__(self) -> None:
        from lightning.pytorch.profilers import Profiler

        class _Timer(Profiler):
            def __init__(inner) -> None:
                super().__init__()
                inner.open: dict[str, float] = {}

            def start(inner, action_name: str) -> None:
                inner.open[action_name] = time.perf_counter()

            def stop(inner, action_name: str) -> None:
                begun = inner.open.pop(action_name, None)
                if begun is not None:
                    spent, calls = self.totals.get(action_name, (0.0, 0))
                    self.totals[action_name] = (spent + time.perf_counter() - begun, calls + 1)

            def summary(inner) -> str:
                return ""

        self.totals: dict[str, tuple[float, int]] = {}
        self.profiler = _Timer()


@contextlib.contextmanager
def hook_timer():
    """Every Trainer that ``training.fit_single`` (a run) or this script builds gets the timer."""
    from initsweep.training import fit_single as fitting

    timer = HookTimer()
    original = fitting.build_trainer

    def timed_trainer(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.profiler = timer.profiler
        return trainer

    fitting.build_trainer = globals()["build_trainer"] = timed_trainer
    try:
        yield timer
    finally:
        fitting.build_trainer = globals()["build_trainer"] = original


def print_hooks(label: str, totals: dict[str, tuple[float, int]], top: int = 25) -> None:
    print(f"\n{label}: Lightning actions by inclusive wall time (ms total, calls, ms/call)")
    for name, (spent, calls) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {1000 * spent:9.1f} {calls:6d} {1000 * spent / calls:8.3f}  {name}")


def initsweep_run(cfg) -> dict:
    """One run's timing (``run_job``'s, from the runs' start: after the data is loaded) with
    MLflow's share and the CPU time of this process over the same span."""
    from initsweep.training import job

    planned = {}
    plan_runs = job.plan_runs

    def timed_plan(*args, **kwargs):
        try:
            return plan_runs(*args, **kwargs)
        finally:
            planned["cpu"] = time.process_time()

    job.plan_runs = timed_plan
    try:
        with mlflow_clock() as mlflow_spent:
            status = run_job(cfg)
    finally:
        job.plan_runs = plan_runs
    cpu = time.process_time() - planned["cpu"]
    assert status["outcome"] == "ok", status
    return {
        **status["timing"],
        "run_id": status["run_id"],
        "mlflow_s": mlflow_spent["s"],
        "run_cpu_s": cpu,
        "mlflow_cpu_s": mlflow_spent["cpu_s"],
    }


def peer_run(cfg, tmp: str) -> tuple[float, float]:
    """The same network, data and steps as users would otherwise write them, in the
    lightning-hydra-template style: automatic optimization, ``self.log`` of the loss every step
    and of the validation/test metrics each epoch, Lightning's own ``MLFlowLogger`` into a
    sqlite store (hyperparameters logged), and a ``ModelCheckpoint`` keeping the best and last
    by ``val/acc``. Timed like a run: fit + test, after the data is loaded."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import MLFlowLogger
    from omegaconf import OmegaConf

    quiet_third_parties()
    datamodule, module = build(cfg)
    net = module.net

    class PeerModule(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
            return loss

        def _shared_eval(self, batch, stage):
            x, y = batch
            logits = self.net(x)
            self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_epoch=True)
            self.log(
                f"{stage}/acc", (logits.argmax(1) == y).float().mean(), on_epoch=True, prog_bar=True
            )

        def validation_step(self, batch, batch_idx):
            self._shared_eval(batch, "val")

        def test_step(self, batch, batch_idx):
            self._shared_eval(batch, "test")

        def configure_optimizers(self):
            return make_optimizer(self.parameters(), cfg.optim)

    start, cpu = time.perf_counter(), time.process_time()
    logger = MLFlowLogger(experiment_name="peer", tracking_uri=f"sqlite:///{tmp}/mlflow.db")
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    checkpoint = ModelCheckpoint(
        dirpath=f"{tmp}/peer_checkpoints", monitor="val/acc", mode="max", save_last=True
    )
    trainer = L.Trainer(
        logger=logger,
        callbacks=[checkpoint],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        max_epochs=cfg.trainer.max_epochs,
        deterministic=True,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        accelerator="auto",
        devices=1,
        default_root_dir=tmp,
    )
    model = PeerModule()
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, ckpt_path="best", datamodule=datamodule, verbose=False)
    return time.perf_counter() - start, time.process_time() - cpu


def profile_one_run(cfg, path: Path) -> None:
    """A sampling profile (pyinstrument) of one initsweep run: HTML or text by ``path``'s suffix."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.002)
    with profiler:
        initsweep_run(cfg)
    html = path.suffix == ".html"
    path.write_text(profiler.output_html() if html else profiler.output_text(show_all=True))
    print(f"profile of one run written to {path}")


def heartbeat_cost(base: list[str], repeats: int, every: float = 0.5) -> dict:
    """The owner's heartbeat (``tracking.ownership``): runs with it off and beating every
    ``every`` seconds (120x the default rate at 0.5 s), alternating. ``beat_ms`` is one beat's
    write (its thread's own clock, per run beaten); ``share_at_default`` is that write once per
    default interval, as a share of the time it covers; ``slowdown_at_every`` compares the runs'
    wall times (noise included: on busy cores it can be negative)."""
    from initsweep.tracking.ownership import HEARTBEAT_S, heartbeat
    from initsweep.vocab import HEARTBEAT_ENV

    previous = os.environ.get(HEARTBEAT_ENV)
    rows = []
    try:
        for _ in range(repeats):
            row = {}
            for label, seconds in (("off", "0"), ("on", str(every))):
                os.environ[HEARTBEAT_ENV] = seconds
                beats, spent = heartbeat.beats, heartbeat.seconds
                row[f"run_{label}_s"] = initsweep_run(compose_cfg(base))["run_s"]
                row[f"beats_{label}"] = heartbeat.beats - beats
                row[f"beat_s_{label}"] = heartbeat.seconds - spent
            rows.append(row)
    finally:
        if previous is None:
            os.environ.pop(HEARTBEAT_ENV, None)
        else:
            os.environ[HEARTBEAT_ENV] = previous
    beat_ms = [1000 * r["beat_s_on"] / r["beats_on"] for r in rows if r["beats_on"]]
    return {
        "every_s": every,
        "default_every_s": HEARTBEAT_S,
        "rows": rows,
        "beats_per_run": summary([r["beats_on"] for r in rows]),
        "beat_ms": summary(beat_ms or [math.nan]),
        "share_at_default": summary([ms / 1000 / HEARTBEAT_S for ms in beat_ms or [math.nan]]),
        "run_off_s": summary([r["run_off_s"] for r in rows]),
        "run_on_s": summary([r["run_on_s"] for r in rows]),
        "slowdown_at_every": summary([r["run_on_s"] / r["run_off_s"] - 1 for r in rows]),
    }


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# Runs the demo sweep in its own process, as ``python train.py -m ...`` would, with clocks on its
# phases: interpreter start, the imports train.py makes, the job's imports (Lightning, torch: made
# by the first job), the store and parent run (the sweep callback's start), the jobs, the sweep's
# end (summary, seed-sensitivity report); what is left is Hydra's own (composing, launching).
SWEEP_DRIVER = """
import json, runpy, sys, time
clock = {"imports_s": time.perf_counter()}
sys.argv = ["train.py", *json.loads(sys.argv[1])]
sys.path.insert(0, %(src)r)
import hydra, omegaconf, initsweep.launch.schema, initsweep.launch.console, initsweep.launch.sweep
clock["imports_s"] = time.perf_counter() - clock["imports_s"]
tick = time.perf_counter()
import initsweep.training.job
clock["job_imports_s"] = time.perf_counter() - tick
from initsweep.launch import sweep
from initsweep.training import job

def timed(owner, name, key):
    original = getattr(owner, name)
    def call(*args, **kwargs):
        tick = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            clock[key] = clock.get(key, 0.0) + time.perf_counter() - tick
    setattr(owner, name, call)

timed(sweep.SweepCallback, "on_multirun_start", "store_s")
timed(job, "run_job", "jobs_s")
timed(sweep.SweepCallback, "on_multirun_end", "sweep_end_s")
try:
    runpy.run_path(%(train)r, run_name="__main__")
finally:
    print("SWEEP_CLOCK " + json.dumps(clock), file=sys.stderr, flush=True)
"""


def demo_sweep_wall() -> dict:
    """``make sweep`` without the install: the process, imports included, in a temp store, with
    the split of its wall time (``SWEEP_DRIVER``)."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "-m",
            "init=xavier,he,zeros",
            "seed=0,1,2",
            f"tracking.uri=sqlite:///{tmp}/mlflow.db",
            f"hydra.sweep.dir={tmp}/multirun",
        ]
        driver = SWEEP_DRIVER % {"src": str(REPO / "src"), "train": str(REPO / "train.py")}
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", driver, json.dumps(args)],
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        wall = time.perf_counter() - start
    line = [x for x in proc.stderr.splitlines() if x.startswith("SWEEP_CLOCK ")][-1]
    clock = json.loads(line.split(" ", 1)[1])
    clock["wall_s"] = wall
    clock["rest_s"] = wall - sum(v for k, v in clock.items() if k != "wall_s")
    return clock


def seeds_per_second(base: list[str], k: int) -> dict:
    """Throughput of K init seeds: K sequential jobs versus one ``seeds_per_job=K`` job.

    Both as in a multirun: plots drawn in the worker process (while the next job trains), the
    clock stopped once all runs have ended with their plots logged.
    """
    base = [*base, "diagnostics.background_plots=true"]
    start = time.perf_counter()
    for seed in range(k):
        run_job(compose_cfg([*base, f"seed={seed}"]))
    complete_pending()
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    run_job(compose_cfg([*base, "seed=0", f"seeds_per_job={k}"]))
    complete_pending()
    batched = time.perf_counter() - start
    return {
        "k": k,
        "sequential_s": sequential,
        "batched_s": batched,
        "sequential_seeds_per_s": k / sequential,
        "batched_seeds_per_s": k / batched,
        "speedup": sequential / batched,
    }


def ecosystem_costs(base: list[str], repeats: int, interval: float) -> dict:
    """What MLflow's datasets and system metrics cost a run: the time ``log_datasets`` takes
    inside each run, and a run with system metrics (a sample every ``interval`` s) against the
    same run without, alternating which goes first."""
    from initsweep.training import job

    log_datasets, spent = job.log_datasets, {"s": 0.0}

    def timed(*args, **kwargs):
        tick = time.perf_counter()
        try:
            return log_datasets(*args, **kwargs)
        finally:
            spent["s"] += time.perf_counter() - tick

    job.log_datasets = timed
    rows = []
    on_cfg = [*base, f"tracking.system_metrics_interval_s={interval}"]
    try:
        for rep in range(repeats):
            timing = {}
            for label, overrides in sorted((("off", base), ("on", on_cfg)), reverse=bool(rep % 2)):
                spent["s"] = 0.0
                timing[label] = initsweep_run(compose_cfg(overrides))
                timing[label]["datasets_s"] = spent["s"]
            uri = next(o for o in base if o.startswith("tracking.uri="))
            client = MlflowClient(uri.removeprefix("tracking.uri="))
            samples = len(
                client.get_metric_history(
                    timing["on"]["run_id"], "system/cpu_utilization_percentage"
                )
            )
            rows.append(
                {
                    "run_s": timing["off"]["run_s"],
                    "run_on_s": timing["on"]["run_s"],
                    "cpu_s": timing["off"]["run_cpu_s"],
                    "cpu_on_s": timing["on"]["run_cpu_s"],
                    "datasets_s": timing["off"]["datasets_s"],
                    "samples": samples,
                }
            )
    finally:
        job.log_datasets = log_datasets
    return {
        "system_metrics_interval_s": interval,
        "run_s": summary([r["run_s"] for r in rows]),
        "run_with_system_metrics_s": summary([r["run_on_s"] for r in rows]),
        "system_metrics_ratio": summary([r["run_on_s"] / r["run_s"] for r in rows]),
        "system_metrics_cpu_ratio": summary([r["cpu_on_s"] / r["cpu_s"] for r in rows]),
        "system_metrics_samples": summary([float(r["samples"]) for r in rows]),
        "datasets_ms": summary([1000 * r["datasets_s"] for r in rows]),
        "datasets_share": summary([r["datasets_s"] / r["run_s"] for r in rows]),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("s1", "digits"), default="s1")
    parser.add_argument("--model", choices=("mlp", "cnn", "resnet"), default="mlp")
    parser.add_argument(
        "--mlp-vmap",
        action="store_true",
        help="stack the MLP's seeds with vmap instead of batched matmuls",
    )
    parser.add_argument("--mnist-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--seeds", type=int, default=8, help="K for the vectorized-seeds test")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, help="profile one run into this file and exit")
    parser.add_argument(
        "--hooks",
        action="store_true",
        help="time Lightning's hooks in one run and in Lightning alone, then exit",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads for everything timed (default: torch's own); 1 keeps "
        "the figures steadier on cores that other processes also use",
    )
    parser.add_argument("--skip-seeds", action="store_true", help="no K-seeds throughput")
    parser.add_argument("--skip-peer", action="store_true", help="no lightning-hydra-template row")
    parser.add_argument(
        "--heartbeat",
        action="store_true",
        help="the owner heartbeat's cost (off versus every 0.5 s), then exit",
    )
    parser.add_argument(
        "--ecosystem",
        action="store_true",
        help="only what MLflow's datasets and system metrics cost a run, then exit",
    )
    parser.add_argument(
        "--system-metrics-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="--ecosystem: seconds between system-metrics samples (1)",
    )
    args = parser.parse_args()
    if args.mlp_vmap:
        from initsweep.training import fit_stacked as stacked_seeds

        stacked_seeds.MLP_BATCHED_MATMUL = False

    if args.threads:
        from initsweep.launch.devices import THREADS_ENV

        os.environ[THREADS_ENV] = str(args.threads)  # jobs (and the demo sweep's) keep it
        torch.set_num_threads(args.threads)
    load_at_start = list(os.getloadavg())  # other processes on the cores skew every figure
    with tempfile.TemporaryDirectory() as tmp:
        # force: the same config runs again and again here; never skip it as already finished
        store = [
            f"tracking.uri=sqlite:///{tmp}/mlflow.db",
            "experiment_name=benchmark",
            "force=true",
        ]
        base = [*workload_overrides(args.workload, args.mnist_root, args.model), *store]
        with_diag = compose_cfg(base)
        without_diag = compose_cfg([*base, "diagnostics.enabled=false"])
        initsweep_run(compose_cfg([*base, "trainer.max_epochs=1"]))  # warm-up: store, caches
        if args.profile:
            profile_one_run(with_diag, args.profile)
            return
        if args.heartbeat:
            cost = heartbeat_cost(base, args.repeats)
            for key, value in cost.items():
                if isinstance(value, dict):
                    print(
                        f"heartbeat {key:20s} median {value['median']:.6g} "
                        f"(min {value['min']:.6g}, max {value['max']:.6g})"
                    )
            if args.json:
                args.json.write_text(json.dumps(cost, indent=2))
            return
        if args.ecosystem:
            costs = {
                "workload": args.workload,
                "dataset": with_diag.data._target_,
                "threads": torch.get_num_threads(),
                "load_average_at_start": load_at_start,
                **ecosystem_costs(base, args.repeats, args.system_metrics_interval),
                "load_average_at_end": list(os.getloadavg()),
            }
            for key, value in costs.items():
                if isinstance(value, dict) and "median" in value:
                    print(
                        f"{key:36s} {value['median']:9.3f} {value['min']:9.3f} {value['max']:9.3f}"
                    )
            if args.json:
                args.json.write_text(json.dumps(costs, indent=2))
            return
        if args.hooks:
            hooks = {}
            for label, run in (
                ("lightning alone", lambda: lightning_alone(without_diag)),
                ("initsweep run", lambda: initsweep_run(with_diag)),
            ):
                with hook_timer() as timer:
                    run()
                print_hooks(label, timer.totals)
                hooks[label] = {k: {"s": v[0], "calls": v[1]} for k, v in timer.totals.items()}
            if args.json:
                args.json.write_text(json.dumps(hooks, indent=2))
            return
        rows = []
        for _ in range(args.repeats):
            plain, plain_cpu = plain_loop(with_diag)
            alone, alone_cpu = lightning_alone(without_diag)
            full = initsweep_run(with_diag)
            bare = initsweep_run(without_diag)
            peer, peer_cpu = (None, None) if args.skip_peer else peer_run(with_diag, tmp)
            rows.append(
                {
                    "plain_s": plain,
                    "lightning_alone_s": alone,
                    "run_s": full["run_s"],
                    "plain_cpu_s": plain_cpu,
                    "lightning_alone_cpu_s": alone_cpu,
                    "run_cpu_s": full["run_cpu_s"],
                    "peer_cpu_s": peer_cpu,
                    "mlflow_cpu_s": full["mlflow_cpu_s"],
                    "diagnostics_cpu_s": full.get("diagnostics_cpu_s", math.nan),
                    "fit_test_s": full["fit_test_s"],
                    "mlflow_s": full["mlflow_s"],
                    "diagnostics_s": full["diagnostics_s"],
                    "artifacts_s": full["artifacts_s"],
                    "diagnosis_s": full["diagnosis_s"],
                    "run_no_diag_s": bare["run_s"],
                    "peer_s": peer,
                }
            )
        vectorized = None if args.skip_seeds else seeds_per_second(base, args.seeds)
        vectorized_bare = (
            None
            if args.skip_seeds
            else seeds_per_second([*base, "diagnostics.enabled=false"], args.seeds)
        )
    result = {
        "workload": args.workload,
        "model": args.model,
        "mlp_vmap": args.mlp_vmap,
        "dataset": with_diag.data._target_.rsplit(".", 1)[-1],
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": list(os.getloadavg()),
        "plain_loop_s": summary([r["plain_s"] for r in rows]),
        "initsweep_run_s": summary([r["run_s"] for r in rows]),
        "ratio_run_to_plain": summary([r["run_s"] / r["plain_s"] for r in rows]),
        "ratio_lightning_alone_to_plain": summary(
            [r["lightning_alone_s"] / r["plain_s"] for r in rows]
        ),
        "ratio_fit_to_plain": summary([r["fit_test_s"] / r["plain_s"] for r in rows]),
        "ratio_run_to_lightning_alone": summary(
            [r["run_s"] / r["lightning_alone_s"] for r in rows]
        ),
        **(
            {}
            if args.skip_peer
            else {
                "ratio_peer_to_plain": summary([r["peer_s"] / r["plain_s"] for r in rows]),
                "ratio_run_to_peer": summary([r["run_s"] / r["peer_s"] for r in rows]),
            }
        ),
        # CPU time of this process (the plots of a run alone are drawn in it): steadier than
        # wall time when other processes share the cores
        "cpu_ratio_run_to_plain": summary([r["run_cpu_s"] / r["plain_cpu_s"] for r in rows]),
        "cpu_ratio_lightning_alone_to_plain": summary(
            [r["lightning_alone_cpu_s"] / r["plain_cpu_s"] for r in rows]
        ),
        "cpu_ratio_run_to_lightning_alone": summary(
            [r["run_cpu_s"] / r["lightning_alone_cpu_s"] for r in rows]
        ),
        **(
            {}
            if args.skip_peer
            else {
                "cpu_ratio_peer_to_plain": summary(
                    [r["peer_cpu_s"] / r["plain_cpu_s"] for r in rows]
                )
            }
        ),
        "cpu_mlflow_share": summary([r["mlflow_cpu_s"] / r["run_cpu_s"] for r in rows]),
        "cpu_diagnostics_share": summary([r["diagnostics_cpu_s"] / r["run_cpu_s"] for r in rows]),
        "mlflow_share": summary([r["mlflow_s"] / r["run_s"] for r in rows]),
        "diagnostics_share": summary([r["diagnostics_s"] / r["run_s"] for r in rows]),
        "artifacts_share": summary([r["artifacts_s"] / r["run_s"] for r in rows]),
        "diagnosis_share": summary([r["diagnosis_s"] / r["run_s"] for r in rows]),
        "diagnosis_ms": summary([1000 * r["diagnosis_s"] for r in rows]),
        "vectorized_seeds": vectorized,
        "vectorized_seeds_no_diagnostics": vectorized_bare,
        "rows": rows,
    }
    if not args.skip_sweep:
        result["demo_sweep"] = demo_sweep_wall()
        result["demo_sweep_wall_s"] = result["demo_sweep"]["wall_s"]
    print(
        f"load average (1, 5, 15 min): at start {load_at_start}, at end "
        f"{result['load_average_at_end']}"
    )
    print(f"{'measure':36s} {'median':>9s} {'min':>9s} {'max':>9s}")
    for key, value in result.items():
        if isinstance(value, dict) and "median" in value:
            print(f"{key:36s} {value['median']:9.3f} {value['min']:9.3f} {value['max']:9.3f}")
    for label, seeds in (
        ("seeds/s seq., batched", vectorized),
        ("  the same, no diagnostics", vectorized_bare),
    ):
        if seeds is None:
            continue
        print(
            f"{label:36s} {seeds['sequential_seeds_per_s']:9.3f} "
            f"{seeds['batched_seeds_per_s']:9.3f}  (K={seeds['k']}, "
            f"speed-up {seeds['speedup']:.2f}x)"
        )
    if "demo_sweep" in result:
        print(
            "demo sweep (s): " + ", ".join(f"{k} {v:.2f}" for k, v in result["demo_sweep"].items())
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
