"""One client engine running the engines bench's batch, in its own process (see bench_engines.py).

Runs inside whichever virtual environment has the engine installed, so it imports nothing at
module level beyond the standard library: trajforge and the bare loops run under trajforge's
environment, curator and DataDesigner under their own (their openai pins differ from ours).
Imports and set-up are not timed; the batch is. Prints one JSON line: requests answered, wall
seconds of the batch, the process's CPU seconds over the batch (itself and reaped children, user
+ system) and its peak RSS (imports included: what the engine costs to hold).

    python bench/engine_driver.py ENGINE --url http://127.0.0.1:PORT/v1 --n 3000 --in-flight 256
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MODEL = "bench-model"
Batch = Callable[[], int]  # an engine set up (imports, clients, configs): calling it runs the batch
MAX_TOKENS = 16


def prompt(i: int) -> str:
    """Distinct prompts, so no engine can answer one request from another's reply."""
    return f"Question {i}: name one prime number greater than {i}."


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# ------------------------------------------------------------------------------------ engines


def run_trajforge(url: str, n: int, in_flight: int, *, slow_start: bool = False) -> Batch:
    """trajforge's TeacherClient as the synth workers use it: `in_flight` callers, cache off."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipeline.config import TeacherConfig
    from pipeline.teacher import TeacherClient

    async def go() -> int:
        cfg = TeacherConfig(
            model=MODEL, concurrency=in_flight, cache=False, max_tokens=MAX_TOKENS, slow_start=slow_start
        )
        client = TeacherClient(cfg, base_url=url)
        queue = iter(range(n))
        done = 0

        async def worker() -> None:
            nonlocal done
            for i in queue:
                await client.chat([{"role": "user", "content": prompt(i)}])
                done += 1

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        await client.aclose()
        return done

    return lambda: asyncio.run(go())


def run_trajforge_slow_start(url: str, n: int, in_flight: int) -> Batch:
    """The same with `teacher.slow_start` (a ramp from 16/s): what the unpaced start saves."""
    return run_trajforge(url, n, in_flight, slow_start=True)


def _bare(url: str, n: int, in_flight: int, http_client: Callable[[], object] | None) -> Batch:
    """The loop a user writes: a semaphore, `chat.completions.create`, gather."""
    import openai

    async def go() -> int:
        client = openai.AsyncOpenAI(
            base_url=url, api_key="bench", max_retries=2, http_client=http_client() if http_client else None
        )
        slots = asyncio.Semaphore(in_flight)

        async def one(i: int) -> int:
            async with slots:
                reply = await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": prompt(i)}], max_tokens=MAX_TOKENS
                )
                return int(bool(reply.choices))

        done = sum(await asyncio.gather(*(one(i) for i in range(n))))
        await client.close()
        return done

    return lambda: asyncio.run(go())


def run_bare_httpx(url: str, n: int, in_flight: int) -> Batch:
    return _bare(url, n, in_flight, None)


def run_bare_aiohttp(url: str, n: int, in_flight: int) -> Batch:
    import openai

    return _bare(url, n, in_flight, openai.DefaultAioHttpClient)


def run_curator(url: str, n: int, in_flight: int) -> Batch:
    """bespokelabs-curator's `LLM` on the OpenAI backend, its limits set far above the workload
    (`max_requests_per_minute`, `max_tokens_per_minute`) and concurrency capped at `in_flight`;
    its cache is off (CURATOR_DISABLE_CACHE) and its working dir a fresh temp dir."""
    os.environ["CURATOR_DISABLE_CACHE"] = "1"
    os.environ.setdefault("OPENAI_API_KEY", "bench")
    # curator counts tokens with tiktoken, which downloads its encoding on first use; offline,
    # point it at the copy litellm (a curator dependency) ships
    litellm = importlib.util.find_spec("litellm")
    if litellm is not None and litellm.origin and "TIKTOKEN_CACHE_DIR" not in os.environ:
        shipped = Path(litellm.origin).parent / "litellm_core_utils" / "tokenizers"
        os.environ["TIKTOKEN_CACHE_DIR"] = str(shipped)
    from bespokelabs import curator

    llm = curator.LLM(
        model_name=MODEL,
        backend="openai",
        generation_params={"max_tokens": MAX_TOKENS},
        backend_params={
            "base_url": url,
            "api_key": "bench",
            "max_requests_per_minute": 1_000_000,
            "max_tokens_per_minute": 1_000_000_000,
            "max_concurrent_requests": in_flight,
            "max_retries": 2,
            "require_all_responses": False,
        },
    )
    prompts = [prompt(i) for i in range(n)]

    def batch() -> int:
        with tempfile.TemporaryDirectory(prefix="curator-") as work:
            result = llm(prompts, working_dir=work)
        return len(getattr(result, "dataset", result))

    return batch


def run_datadesigner(url: str, n: int, in_flight: int) -> Batch:
    """NeMo DataDesigner: one LLM text column over a seed column of the prompts (a DataFrame
    seed source), its model provider pointed at the endpoint, `max_parallel_requests` =
    `in_flight`, one row group of `n` (`buffer_size`), early shutdown off, its adaptive
    concurrency at its defaults (no start-up ramp); artifacts go to a fresh temp dir."""
    import data_designer.config as dd
    import pandas as pd
    from data_designer.interface import DataDesigner

    os.environ.setdefault("BENCH_API_KEY", "bench")
    provider = dd.ModelProvider(name="bench", endpoint=url, provider_type="openai", api_key="BENCH_API_KEY")
    model = dd.ModelConfig(
        alias="bench",
        model=MODEL,
        provider="bench",
        inference_parameters=dd.ChatCompletionInferenceParams(
            max_tokens=MAX_TOKENS, max_parallel_requests=in_flight, temperature=0.0
        ),
    )
    work = tempfile.mkdtemp(prefix="datadesigner-")
    designer = DataDesigner(artifact_path=work, model_providers=[provider])
    designer.set_run_config(dd.RunConfig(buffer_size=n, disable_early_shutdown=True))
    builder = dd.DataDesignerConfigBuilder(model_configs=[model])
    builder.with_seed_dataset(
        dd.DataFrameSeedSource(df=pd.DataFrame({"question": [prompt(i) for i in range(n)]}))
    )
    builder.add_column(dd.LLMTextColumnConfig(name="answer", prompt="{{ question }}", model_alias="bench"))

    def batch() -> int:
        try:
            frame = designer.create(builder, num_records=n).load_dataset()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return int(frame["answer"].notna().sum())

    return batch


ENGINES: dict[str, Callable[[str, int, int], Batch]] = {
    "trajforge": run_trajforge,
    "trajforge-slow-start": run_trajforge_slow_start,
    "bare-httpx": run_bare_httpx,
    "bare-aiohttp": run_bare_aiohttp,
    "curator": run_curator,
    "datadesigner": run_datadesigner,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("engine", choices=sorted(ENGINES))
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=256)
    args = parser.parse_args()
    batch = ENGINES[args.engine](args.url, args.n, args.in_flight)  # set-up is not timed
    cpu, start = _cpu(), time.perf_counter()
    done = batch()
    wall, cpu = time.perf_counter() - start, _cpu() - cpu
    peak_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    print(
        json.dumps(
            {"engine": args.engine, "done": done, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak_kb / 1024}
        )
    )


if __name__ == "__main__":
    main()
