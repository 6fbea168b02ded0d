"""Where a run's time goes: initsweep versus a plain PyTorch loop, and the demo sweep end to end.

    python scripts/benchmark.py                          # S1 workload, 3 alternating repetitions
    python scripts/benchmark.py --mnist-root ../shared/data --repeats 5 --json bench.json
    python scripts/benchmark.py --workload digits --skip-sweep
    python scripts/benchmark.py --workload digits --model resnet --skip-sweep   # any built-in model
    python scripts/benchmark.py --profile run.html       # where one run's time goes, then exit

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
(``initsweep.diagnosis``: the findings computed from the diagnostics' records, its tag and note
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

from initsweep.artifacts import complete_pending  # noqa: E402
from initsweep.builders import build, build_trainer  # noqa: E402
from initsweep.config_schema import register_schemas  # noqa: E402
from initsweep.console import quiet_third_parties  # noqa: E402
from initsweep.initializers import initialize_  # noqa: E402
from initsweep.job import run_job  # noqa: E402
from initsweep.mlflow_logger import BufferedMlflowLogger  # noqa: E402
from initsweep.networks import build_network  # noqa: E402
from initsweep.optimizers import make_optimizer  # noqa: E402


def workload_overrides(name: str, mnist_root: str | None, model: str = "mlp") -> list[str]:
    models = [] if model == "mlp" else [f"model={model}", "init=he"]
    if name == "digits":
        return models
    data = (["data=mnist", f"data.root={mnist_root}"]
            if mnist_root and (Path(mnist_root) / "MNIST" / "raw").exists() else ["data=synthetic"])
    mlp = ["model.hidden_sizes=[256,128]", "model.activation=relu"] if model == "mlp" else []
    return [*data, "data.batch_size=128", *mlp, *models, "optim=adam", "optim.lr=0.001",
            "trainer.max_epochs=2", "init=he"]


def compose_cfg(overrides: list[str]):
    register_schemas()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def plain_loop(cfg) -> float:
    """The same steps with nothing around them: preloaded tensors, slices, Adam, val each epoch."""
    datamodule, _ = build(cfg)
    (x, y), (xv, yv), (xt, yt) = datamodule.train, datamodule.val, datamodule.test
    start = time.perf_counter()
    net = build_network(cfg.model, datamodule.input_shape, datamodule.num_classes, cfg.init_seed)
    activation = cfg.model.get("activation", "relu")
    initialize_(net, dict(cfg.init), cfg.init_seed, activation,
                draw_batch=lambda n: datamodule.probe_batch(n, cfg.init_seed)[0])
    optimizer = make_optimizer(net.parameters(), cfg.optim)  # the run's optimizer, fused or not
    generator = torch.Generator().manual_seed(cfg.data_seed)
    batch = cfg.data.batch_size
    for _ in range(cfg.trainer.max_epochs):
        net.train()  # BatchNorm: batch statistics while training, running ones to evaluate
        order = torch.randperm(len(y), generator=generator)
        xs, ys = x[order], y[order]
        for i in range(0, len(y), batch):
            loss = F.cross_entropy(net(xs[i:i + batch]), ys[i:i + batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            (net(xv).argmax(1) == yv).float().mean().item()
    with torch.no_grad():
        (net(xt).argmax(1) == yt).float().mean().item()
    return time.perf_counter() - start


def lightning_alone(cfg) -> float:
    """The same module and data in a bare Trainer (fit + test): what Lightning itself costs."""
    quiet_third_parties()
    datamodule, module = build(cfg)
    start = time.perf_counter()
    trainer = build_trainer(cfg, False, [])
    trainer.fit(module, datamodule=datamodule)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return time.perf_counter() - start


@contextlib.contextmanager
def mlflow_clock():
    """Time the job spends waiting on MLflow: inside every public ``MlflowClient`` method called
    from the main thread, and in the metric logger's ``flush`` (which waits for its writer
    thread). The writer thread's own calls overlap training and are not counted: what they cost
    the training shows in the run's time. Nested calls count once; the wrapped methods still run.
    """
    spent = {"s": 0.0}
    depth = [0]
    originals = [(cls, name, fn) for cls in (MlflowClient, BufferedMlflowLogger)
                 for name, fn in vars(cls).items()
                 if callable(fn) and not name.startswith("_")
                 and (cls is MlflowClient or name == "flush")]

    def timed(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():
                return fn(*args, **kwargs)
            depth[0] += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent["s"] += time.perf_counter() - start
        return call

    for cls, name, fn in originals:
        setattr(cls, name, timed(fn))
    try:
        yield spent
    finally:
        for cls, name, fn in originals:
            setattr(cls, name, fn)


def initsweep_run(cfg) -> dict:
    with mlflow_clock() as mlflow_spent:
        status = run_job(cfg)
    assert status["outcome"] == "ok", status
    return {**status["timing"], "mlflow_s": mlflow_spent["s"]}


def profile_one_run(cfg, path: Path) -> None:
    """A sampling profile (pyinstrument) of one initsweep run: HTML or text by ``path``'s suffix."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.002)
    with profiler:
        initsweep_run(cfg)
    html = path.suffix == ".html"
    path.write_text(profiler.output_html() if html else profiler.output_text(show_all=True))
    print(f"profile of one run written to {path}")


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def demo_sweep_wall() -> float:
    """``make sweep`` without the install: the process, imports included, in a temp store."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(REPO / "train.py"), "-m", "init=xavier,he,zeros",
               "seed=0,1,2", f"tracking.uri=sqlite:///{tmp}/mlflow.db",
               f"hydra.sweep.dir={tmp}/multirun"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=tmp)
        return time.perf_counter() - start


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
    return {"k": k, "sequential_s": sequential, "batched_s": batched,
            "sequential_seeds_per_s": k / sequential, "batched_seeds_per_s": k / batched,
            "speedup": sequential / batched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("s1", "digits"), default="s1")
    parser.add_argument("--model", choices=("mlp", "cnn", "resnet"), default="mlp")
    parser.add_argument("--mlp-vmap", action="store_true",
                        help="stack the MLP's seeds with vmap instead of batched matmuls")
    parser.add_argument("--mnist-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--seeds", type=int, default=8, help="K for the vectorized-seeds test")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, help="profile one run into this file and exit")
    args = parser.parse_args()
    if args.mlp_vmap:
        from initsweep import stacked_seeds

        stacked_seeds.MLP_BATCHED_MATMUL = False

    with tempfile.TemporaryDirectory() as tmp:
        # force: the same config runs again and again here; never skip it as already finished
        store = [f"tracking.uri=sqlite:///{tmp}/mlflow.db", "experiment_name=benchmark",
                 "force=true"]
        base = [*workload_overrides(args.workload, args.mnist_root, args.model), *store]
        with_diag = compose_cfg(base)
        without_diag = compose_cfg([*base, "diagnostics.enabled=false"])
        initsweep_run(compose_cfg([*base, "trainer.max_epochs=1"]))  # warm-up: store, caches
        if args.profile:
            profile_one_run(with_diag, args.profile)
            return
        rows = []
        for _ in range(args.repeats):
            plain = plain_loop(with_diag)
            alone = lightning_alone(without_diag)
            full = initsweep_run(with_diag)
            bare = initsweep_run(without_diag)
            rows.append({"plain_s": plain, "lightning_alone_s": alone, "run_s": full["run_s"],
                         "fit_test_s": full["fit_test_s"],
                         "mlflow_s": full["mlflow_s"], "diagnostics_s": full["diagnostics_s"],
                         "artifacts_s": full["artifacts_s"], "diagnosis_s": full["diagnosis_s"],
                         "run_no_diag_s": bare["run_s"]})
        vectorized = seeds_per_second(base, args.seeds)
        vectorized_bare = seeds_per_second([*base, "diagnostics.enabled=false"], args.seeds)
    result = {
        "workload": args.workload, "model": args.model, "mlp_vmap": args.mlp_vmap,
        "dataset": with_diag.data._target_.rsplit(".", 1)[-1],
        "repeats": args.repeats, "threads": torch.get_num_threads(),
        "plain_loop_s": summary([r["plain_s"] for r in rows]),
        "initsweep_run_s": summary([r["run_s"] for r in rows]),
        "ratio_run_to_plain": summary([r["run_s"] / r["plain_s"] for r in rows]),
        "ratio_lightning_alone_to_plain": summary([r["lightning_alone_s"] / r["plain_s"]
                                                   for r in rows]),
        "ratio_fit_to_plain": summary([r["fit_test_s"] / r["plain_s"] for r in rows]),
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
        result["demo_sweep_wall_s"] = demo_sweep_wall()
    print(f"{'measure':30s} {'median':>9s} {'min':>9s} {'max':>9s}")
    for key, value in result.items():
        if isinstance(value, dict) and "median" in value:
            print(f"{key:30s} {value['median']:9.3f} {value['min']:9.3f} {value['max']:9.3f}")
    for label, seeds in (("seeds/s seq., batched", vectorized),
                         ("  the same, no diagnostics", vectorized_bare)):
        print(f"{label:30s} {seeds['sequential_seeds_per_s']:9.3f} "
              f"{seeds['batched_seeds_per_s']:9.3f}  (K={seeds['k']}, "
              f"speed-up {seeds['speedup']:.2f}x)")
    if "demo_sweep_wall_s" in result:
        print(f"{'demo_sweep_wall_s':30s} {result['demo_sweep_wall_s']:9.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
