"""Instructions per store, which no other load on the machine changes.

    python3 -m uv run --frozen python -m benchmarks.store_instructions [--base <git rev>]
        [--backends memory] [--callers 1 8] [--stores 600] [--keep DIR]

Stores/s and CPU time on this shared machine swing 2-3x with what else runs; the number
of instructions a store executes does not. This runs `ab_store`'s kind of child (stores
into one tenant through `spiral_tasks.open_engine`, configured by environment variables,
defaults otherwise: audit on) under valgrind's callgrind with `PYTHONMALLOC=malloc`,
once with `--stores` stores after a warm-up and once with the warm-up alone, and prints
the difference divided by `--stores`: what one store costs, start-up and warm-up left
out. With `--base` the same is measured on that revision, checked out into a temporary
git worktree, and the ratio base/head printed. `--keep DIR` leaves callgrind's output
files there, for `callgrind_annotate` (per-function costs).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Runs in a child process with PYTHONPATH set to the version under test.
MEASURE = """
import sys, threading
from spiral_tasks import open_engine
stores, callers, warm_up = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
engine = open_engine()
for i in range(warm_up):
    engine.store(f"warm-up {i}", depth=("surface", "shallow", "deep")[i % 3], tenant="bench")
counter, lock = iter(range(stores)), threading.Lock()
def caller():
    while True:
        with lock:
            i = next(counter, None)
        if i is None:
            return
        engine.store(f"memory {i}", depth=("surface", "shallow", "deep")[i % 3],
                     tenant="bench")
threads = [threading.Thread(target=caller) for _ in range(callers)]
for t in threads: t.start()
for t in threads: t.join()
engine.close()
"""


def instructions(tree: Path, backend: str, callers: int, stores: int, warm_up: int,
                 workdir: Path, keep: Path | None, label: str) -> int:
    """The instructions (callgrind's Ir total) of one child run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPIRAL_", "REDIS_"))}
    db = workdir / f"db-{label}-{backend}-{callers}-{stores}"
    out = (keep or workdir) / f"callgrind.{label}.{backend}.{callers}.{stores}"
    env.update(PYTHONPATH=str(tree), PYTHONMALLOC="malloc", SPIRAL_STORAGE=backend,
               SPIRAL_DB_PATH=str(db))
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                    sys.executable, "-c", MEASURE, str(stores), str(callers), str(warm_up)],
                   env=env, cwd=workdir, capture_output=True, text=True, check=True,
                   timeout=3600)
    shutil.rmtree(db, ignore_errors=True)
    totals = re.search(r"^(?:totals|summary): (\d+)", out.read_text(), re.MULTILINE)
    if totals is None:
        raise RuntimeError(f"no totals in {out}")
    return int(totals.group(1))


def per_store(tree: Path, args: argparse.Namespace, backend: str, callers: int,
              workdir: Path, label: str) -> float:
    empty = instructions(tree, backend, callers, 0, args.warm_up, workdir, args.keep, label)
    full = instructions(tree, backend, callers, args.stores, args.warm_up, workdir,
                        args.keep, label)
    return (full - empty) / args.stores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="git revision to compare against")
    parser.add_argument("--backends", nargs="+", default=["memory"],
                        choices=("memory", "level"))
    parser.add_argument("--callers", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--stores", type=int, default=600)
    parser.add_argument("--warm-up", type=int, default=50)
    parser.add_argument("--keep", type=Path, help="leave callgrind's files in this folder")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        trees = {"head": ROOT}
        if args.base:
            trees["base"] = workdir / "base"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                            str(trees["base"]), args.base], check=True)
        try:
            print(f"instructions per store ({args.stores} stores less a run of the "
                  f"{args.warm_up} warm-up stores alone)")
            for backend in args.backends:
                for callers in args.callers:
                    found = {name: per_store(tree, args, backend, callers, workdir, name)
                             for name, tree in trees.items()}
                    line = f"{backend:<8}{callers:>3} callers  head {found['head']:>10,.0f}"
                    if "base" in found:
                        line += (f"  base {found['base']:>10,.0f}"
                                 f"  base/head {found['base'] / found['head']:.2f}")
                    print(line, flush=True)
        finally:
            if args.base:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(trees["base"])], check=False)


if __name__ == "__main__":
    main()
