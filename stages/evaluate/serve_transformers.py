"""`transformers serve` as trajforge starts it: the CLI with an image-only Qwen3-VL processor.

A Qwen3-VL processor also builds a video processor, which needs torchvision; trajforge does not
depend on torchvision (on a CPU-only machine the index offers no CPU build matching the CPU
torch, and PyPI's CUDA build does not load against it), so the stock server cannot load a
student there. This entry point registers the image-only processor trajforge trains with (the
same tokenizer, chat template and image processor) under `IMAGE_ONLY_PROCESSOR`, which the
serving view (`stages.evaluate.serve.text_reply_view`) names, then runs the stock CLI unchanged.

    python -m stages.evaluate.serve_transformers serve MODEL --host 127.0.0.1 --port N ...
"""

from __future__ import annotations

import sys


def register_image_only_processor() -> type:
    """Make AutoProcessor resolve `IMAGE_ONLY_PROCESSOR` (and Qwen3-VL configs) to our class."""
    from transformers import AutoProcessor, Qwen3VLConfig, Qwen3VLMoeConfig

    from stages.sft import image_only_processor_class

    cls = image_only_processor_class()
    for config in (Qwen3VLConfig, Qwen3VLMoeConfig):
        AutoProcessor.register(config, cls, exist_ok=True)
    return cls


def main() -> int:
    register_image_only_processor()
    from transformers.cli.transformers import main as transformers_main

    sys.argv = ["transformers", *sys.argv[1:]]
    return transformers_main() or 0


if __name__ == "__main__":
    sys.exit(main())
