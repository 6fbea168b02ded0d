"""Time initializing the S3 network (100 bias-free Linear(256, 256) layers) with every scheme.

    python scripts/benchmark_init.py                    # table on stdout
    python scripts/benchmark_init.py --json init.json   # and the numbers as JSON

Each scheme gets one untimed warm-up, then ``--repeats`` timed calls of ``initialize_`` (the
median is reported). LSUV's data batch is ``--batch`` standard-normal inputs, drawn inside the
timed call as a training run would draw them.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from initsweep.errors import ConfigError
from initsweep.init.apply import initialize_
from initsweep.init.registry import list_schemes
from initsweep.models.zoo import build_mlp


def time_scheme(
    net: torch.nn.Module, scheme: str, repeats: int, width: int, activation: str
) -> list[float]:
    def draw_batch(n: int) -> torch.Tensor:
        return torch.randn(n, width, generator=torch.Generator().manual_seed(0))

    times = []
    for seed in range(repeats + 1):  # seed 0 is the warm-up
        start = time.perf_counter()
        initialize_(net, {"scheme": scheme}, seed, activation, draw_batch=draw_batch)
        times.append(time.perf_counter() - start)
    return times[1:]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=100, help="number of Linear layers")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per scheme")
    parser.add_argument("--activation", default="relu", help="the model activation (for gains)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    net = build_mlp(
        args.width, args.width, [args.width] * (args.depth - 1), args.activation, bias=False
    )
    results, skipped = {}, {}
    for name in list_schemes():
        try:
            times = time_scheme(net, name, args.repeats, args.width, args.activation)
        except ConfigError as err:  # the residual schemes: an MLP has no residual blocks
            skipped[name] = str(err)
            continue
        results[name] = {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "times_s": times,
        }

    print(
        f"init of a {args.depth}-layer, {args.width}-wide bias-free MLP "
        f"({torch.get_num_threads()} threads, median of {args.repeats})"
    )
    print(f"{'scheme':<18}{'median ms':>11}{'min ms':>10}{'max ms':>10}")
    for name, r in results.items():
        print(
            f"{name:<18}{1e3 * r['median_s']:>11.1f}{1e3 * r['min_s']:>10.1f}"
            f"{1e3 * r['max_s']:>10.1f}"
        )
    for name, reason in skipped.items():
        print(f"{name:<18}  skipped: {reason}")

    report = {
        "depth": args.depth,
        "width": args.width,
        "repeats": args.repeats,
        "activation": args.activation,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
        "skipped": skipped,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
