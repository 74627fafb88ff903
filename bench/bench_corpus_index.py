"""Text index build memory and query speed, one index against shards (not a test).

Writes N synthetic pages (3,800 characters of Zipf-like words each, like a Wikipedia lead), then
in a fresh process each builds the BM25 index of `stages/tools/search/text_index.py` twice: as
one index (`SHARD_PAGES` >= N, the layout before sharding) and in shards of `--shard` pages,
printing each build's time and peak memory (ru_maxrss) and the mean latency of 200 searches.

    python bench/bench_corpus_index.py [--pages 100000] [--shard 50000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, random, resource, sys, time
from pathlib import Path
import stages.tools.search.text_index as ti
corpus, index, shard = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
ti.SHARD_PAGES = shard
search = ti.LocalTextIndex(corpus, index)
start = time.perf_counter()
search.search("warm", 1)
build_s = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
rng = random.Random(1)
queries = [" ".join(f"w{rng.randrange(200000)}x" for _ in range(4)) for _ in range(200)]
start = time.perf_counter()
for query in queries:
    search.search(query, 5)
print(json.dumps({"build_s": build_s, "peak_mb": peak_mb,
                  "query_ms": (time.perf_counter() - start) / len(queries) * 1000,
                  "shards": len(list(index.glob("text-v2-*/shard-*")))}))
"""


def write_pages(path: Path, n: int) -> None:
    rng = random.Random(0)
    words = [f"w{i}x" for i in range(200_000)]
    with path.open("w") as handle:
        for i in range(n):
            text = " ".join(
                rng.choice(words) if rng.random() < 0.5 else words[int(rng.paretovariate(1.1)) % 200_000]
                for _ in range(600)
            )
            handle.write(json.dumps({"title": f"Page {i}", "url": f"http://x/{i}", "text": text}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=100_000)
    parser.add_argument("--shard", type=int, default=50_000)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-index-"))
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    if not (corpus / "pages.jsonl").exists():
        write_pages(corpus / "pages.jsonl", args.pages)
    for label, shard in (("one index", args.pages), (f"shards of {args.shard:,}", args.shard)):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(corpus), str(root / f"index-{shard}"), str(shard)],
            capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        if out.returncode != 0:
            sys.exit(out.stderr[-2000:])
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{args.pages:,} pages, {label:18s}: build {r['build_s']:.0f} s ({args.pages / r['build_s']:.0f} pages/s), "
              f"peak {r['peak_mb']:.0f} MB, {r['shards']} shard(s), search {r['query_ms']:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
