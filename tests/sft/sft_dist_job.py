"""A torchrun job for the SFT tests: train uninterrupted, and stopped + resumed, in one launch.

torchrun --nproc_per_node 2 tests/sft/sft_dist_job.py RUN_A RUN_B CONFIG RESULT.json
torchrun --nproc_per_node 1 tests/sft/sft_dist_job.py --resume-only RUN_C CONFIG RESULT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

from stages.sft.train import train

OVERRIDES = {"optim.max_steps": 4, "checkpoint.every_steps": 0, "checkpoint.keep": 3}


def main() -> None:
    args = sys.argv[1:]
    result: dict = {}
    if args[0] == "--resume-only":
        run_c, config, out = Path(args[1]), Path(args[2]), Path(args[3])
        result["resumed_other_world"] = train(run_c, config, overrides=OVERRIDES, export=False)
    else:
        run_a, run_b, config, out = Path(args[0]), Path(args[1]), Path(args[2]), Path(args[3])
        result["uninterrupted"] = train(run_a, config, overrides=OVERRIDES)
        result["first_half"] = train(run_b, config, overrides=OVERRIDES, max_steps=2, export=False)
        result["resumed"] = train(run_b, config, overrides=OVERRIDES, export=False)
    if dist.get_rank() == 0:
        out.write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
