"""The in-process store path of two versions of the code, side by side in one run.

    python3 -m uv run --frozen python -m benchmarks.ab_store --base <git rev> [--rounds 3]

This machine's speed varies 2-3x from day to day, so a figure is only comparable with
another taken in the same run. This checks out `--base` into a temporary git worktree
and measures it and the working tree alternately, round after round, through the API
both share (`spiral_tasks.open_engine` configured by environment variables): stores
into one tenant from 1 and 8 threads (`--callers`), per backend, the two versions
alternating, each first in turns. It prints the median stores/s of each version and
their ratio (head / base), a ratio near 1 being no regression, and the CPU time each
spent per store (on a busy machine, less sensitive than stores/s to what else runs).
Then each version's tails:
the median over the rounds of p50, p99 and p99/p50 (with its spread).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

from benchmarks.common import backend_arguments, redis_server

ROOT = Path(__file__).resolve().parent.parent

#: Runs in a child process with PYTHONPATH set to the version under test.
MEASURE = """
import json, resource, sys, threading, time
from spiral_tasks import open_engine
ops, callers = int(sys.argv[1]), int(sys.argv[2])
engine = open_engine()
engine.store("warm-up", tenant="bench")
latencies, counter, lock = [], iter(range(ops)), threading.Lock()
def caller():
    while True:
        with lock:
            i = next(counter, None)
        if i is None:
            return
        t0 = time.perf_counter()
        engine.store(f"memory {i}", depth=("surface", "shallow", "deep")[i % 3],
                     tenant="bench")
        latencies.append(time.perf_counter() - t0)
def cpu():
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime
threads = [threading.Thread(target=caller) for _ in range(callers)]
cpu_started, started = cpu(), time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
elapsed, cpu_used = time.perf_counter() - started, cpu() - cpu_started
assert engine.stats("bench").consistent
latencies.sort()
print(json.dumps({"rate": ops / elapsed, "cpu_us": cpu_used / ops * 1e6,
                  "p50_ms": latencies[ops // 2] * 1000,
                  "p99_ms": latencies[int(0.99 * ops)] * 1000}))
engine.close()
"""


def measure(tree: Path, backend: str, callers: int, ops: int, redis_url: str,
            workdir: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPIRAL_", "REDIS_"))}
    env.update(PYTHONPATH=str(tree), SPIRAL_STORAGE=backend,
               SPIRAL_MAX_MEMORY_NODES="1000000",
               SPIRAL_DB_PATH=str(workdir / f"db-{tree.name}-{backend}-{callers}"))
    if backend == "redis":
        env["REDIS_URL"] = redis_url
        client = redis.Redis.from_url(redis_url)
        client.flushall()
        client.close()
    out = subprocess.run([sys.executable, "-c", MEASURE, str(ops), str(callers)], env=env,
                         cwd=workdir, capture_output=True, text=True, check=True, timeout=600)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = backend_arguments(__doc__)
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--callers", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_server() as server:
        workdir = Path(tmp)
        base = workdir / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                        str(base), args.base], check=True)
        try:
            trees = {"base": base, "head": ROOT}
            runs: dict[tuple[str, str, int], list[dict[str, float]]] = {}
            for round_ in range(args.rounds):
                for backend in args.backends:
                    for callers in args.callers:
                        order = list(trees.items())
                        for name, tree in order if round_ % 2 else order[::-1]:
                            runs.setdefault((name, backend, callers), []).append(
                                measure(tree, backend, callers, args.ops, server.url,
                                        workdir))
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(base)], check=False)
    print(f"stores/s, median of {args.rounds} rounds ({args.ops} stores each); "
          f"base {args.base}, head = working tree")
    print(f"{'backend':<8}{'callers':>8}{'base':>10}{'head':>10}{'head/base':>11}"
          f"{'spread head':>14}{'CPU µs/store base':>19}{'head':>6}{'base/head':>11}")
    for backend in args.backends:
        for callers in args.callers:
            base_rate = statistics.median(r["rate"] for r in runs[("base", backend, callers)])
            head = [r["rate"] for r in runs[("head", backend, callers)]]
            spread = f"{min(head):,.0f}-{max(head):,.0f}"
            # CPU per store: what the process spent, whatever else the machine ran.
            cpu_base = statistics.median(r["cpu_us"] for r in runs[("base", backend, callers)])
            cpu_head = statistics.median(r["cpu_us"] for r in runs[("head", backend, callers)])
            print(f"{backend:<8}{callers:>8}{base_rate:>10,.0f}{statistics.median(head):>10,.0f}"
                  f"{statistics.median(head) / base_rate:>11.2f}{spread:>14}"
                  f"{cpu_base:>19,.0f}{cpu_head:>6,.0f}{cpu_base / cpu_head:>11.2f}")
    print("tails, median of the rounds: p50 ms, p99 ms, p99/p50 (spread)")
    for backend in args.backends:
        for callers in args.callers:
            cells = []
            for name in ("base", "head"):
                found = runs[(name, backend, callers)]
                ratios = sorted(r["p99_ms"] / r["p50_ms"] for r in found)
                cells.append(f"{name} {statistics.median(r['p50_ms'] for r in found):6.2f} "
                             f"{statistics.median(r['p99_ms'] for r in found):6.2f} "
                             f"{statistics.median(ratios):5.2f} "
                             f"({ratios[0]:.2f}-{ratios[-1]:.2f})")
            print(f"{backend:<8}{callers:>4}  " + "   ".join(cells))


if __name__ == "__main__":
    main()
