"""A run on object storage, killed with -9 mid-synth and rerun from another disk, against the same
run on a local folder: counts of what was lost or duplicated, digests, and the time ratio.

A real S3-compatible server (moto's server mode) runs on loopback; trajforge reaches it with
pyarrow's S3 client exactly as a cloud bucket. The local run and the S3 run use one config (the
offline world, oracle teacher, local search, Ray); the S3 run's synth is killed with SIGKILL (its
whole process group, Ray's processes included) once some shards are in the bucket, then rerun with a
fresh scratch folder (another node: no replay cache, no local copies), and filtered from a third.

    python bench/bench_object_store.py                 # 40 world tasks x 2 rollouts
    python bench/bench_object_store.py --tasks 100 --rollouts 4

What it does not show: moto is a Python server on the same 2 cores, so the time ratio says what
the store's extra requests cost here, not what a cloud bucket's latency would.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run_digest import STAGES, stage_digest  # noqa: E402
from pipeline.store import RunStore  # noqa: E402
from tests.object_store import bucket_keys, moto_server, new_bucket, pairs_in_shards, s3_environment  # noqa: E402

TRAJFORGE = [sys.executable, "-m", "pipeline.cli"]


def _cli(args: list[str], env: dict[str, str], *, wait: bool = True) -> subprocess.Popen | float:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*TRAJFORGE, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if not wait:
        return proc
    out, _ = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"trajforge {' '.join(args)} failed:\n{out.decode()[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--rollouts", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument(
        "--kill-after", type=int, default=2, help="kill once this many raw shards are in the bucket"
    )
    args = parser.parse_args()
    sets = ["--set", f"seeds.limit={args.tasks}", "--set", f"synth.rollouts={args.rollouts}",
            "--set", f"synth.shard_size={args.shard_size}", "--set", "synth.flush_s=2"]  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench-object-store-"))
    base_env = {**os.environ, "PYTHONPATH": str(ROOT)}

    local = str(work / "local")
    local_synth = _cli(["synth", "--run", local, *sets], base_env)
    local_filter = _cli(["filter", "--run", local, "--no-progress"], base_env)

    with moto_server() as endpoint:
        bucket = new_bucket(endpoint)
        address = f"s3://{bucket}/runs/bench"

        def node(name: str) -> dict[str, str]:
            return {**base_env, **s3_environment(endpoint), "TRAJFORGE_SCRATCH": str(work / name)}

        os.environ.update(s3_environment(endpoint))
        store = RunStore(address)
        started = time.perf_counter()
        proc = _cli(["synth", "--run", address, *sets], node("node-1"), wait=False)
        assert isinstance(proc, subprocess.Popen)
        while len(store.shard_paths("raw")) < args.kill_after and proc.poll() is None:
            time.sleep(0.1)
        killed_at = time.perf_counter() - started
        if proc.poll() is not None:
            sys.exit("the synth finished before it could be killed; lower --kill-after or raise --tasks")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(2)  # Ray's own processes notice their driver is gone
        before = pairs_in_shards(store)
        shards_before = len(store.shard_paths("raw"))
        rerun = _cli(["synth", "--run", address, *sets], node("node-2"))
        s3_filter = _cli(["filter", "--run", address, "--no-progress"], node("node-3"))
        after = pairs_in_shards(store)
        expected = pairs_in_shards(RunStore(local))
        keys = bucket_keys(endpoint, bucket)
        digests = {stage: (stage_digest(local, stage), stage_digest(store, stage)) for stage in STAGES}

    print(f"{args.tasks} world tasks x {args.rollouts} rollouts, shards of {args.shard_size}; work in {work}")
    print(f"killed -9 at {killed_at:.1f}s with {len(before)} pairs in {shards_before} shards "
          f"(duplicates then: {sum(v - 1 for v in before.values())})")  # fmt: skip
    print(f"after the rerun from another disk: {len(after)} pairs of {len(expected)} expected, "
          f"missing {len(set(expected) - set(after))}, extra {len(set(after) - set(expected))}, "
          f"duplicated {sum(1 for v in after.values() if v > 1)}")  # fmt: skip
    print("| stage | local rows | S3 rows | same digest |")
    print("|---|---|---|---|")
    for stage, ((lr, ld), (sr, sd)) in digests.items():
        print(f"| {stage} | {lr} | {sr} | {'yes' if ld == sd else 'NO'} |")
    temporaries = [k for k in keys if ".tmp-" in k]
    print(f"objects in the bucket: {len(keys)}, temporaries: {len(temporaries)}")
    s3_total = killed_at + rerun
    print(f"synth wall: local {local_synth:.1f}s, S3 killed+rerun {s3_total:.1f}s (ratio {s3_total / local_synth:.2f}); "
          f"filter: local {local_filter:.1f}s, S3 {s3_filter:.1f}s (ratio {s3_filter / local_filter:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
