"""The framework settings that train exactly trajforge's text on an export, written next to the data.

An export alone does not fix what a framework trains: its template, think handling, agent
template, cutoff and image resizing all rewrite or cut the text. These are the settings under
which LLaMA-Factory and ms-swift produce the same tokens and labels as `trajforge sft`
(`make test-interop` checks them with the real frameworks):

- LLaMA-Factory: `template: qwen3_vl_nothink`. R1V4 writes think inline (`<think>...</think>`, no
  newlines); the `qwen3_vl` reasoning template's think handling (`enable_thinking: false`,
  `mask_history`'s history-think removal) only matches `<think>\\n...\\n</think>\\n\\n`, so there it
  would silently do nothing; the nothink template trains every turn as written. `mask_history:
  false` (trajforge trains every assistant turn), `image_max_pixels` at least the largest image so
  LLaMA-Factory never pre-shrinks one (the processor's own pixel budget then applies, as in trajforge).
- ms-swift: `--template qwen3_vl` with no `--agent_template` (the assistant text already holds the
  R1V4 tool call; no tool-role messages), `--loss_scale default`. ms-swift resizes images with
  qwen_vl_utils before the processor (which then runs with `do_resize=False`), so the processor's
  pixel budget must reach qwen_vl_utils. Its environment variables only carry whole image tokens
  (`IMAGE_MIN_TOKEN_NUM` x 32x32 px; `MIN_PIXELS` is converted to that, rounded down), which is not
  the budget when it is not a multiple of 1024 px (the 30B-A3B config's min 3136 px: a 96x32 image
  gets 3 image tokens there against trajforge's 8). So each row carries the exact budget in
  `chat_template_kwargs` (`min_pixels`/`max_pixels`), which qwen_vl_utils reads per image; the
  environment is written as well, for rows that lack it. ms-swift's Qwen-VL templates also
  expand only the media-pad token ids of Qwen's vocabulary (`<|image_pad|>` = 151655), which every
  real Qwen3-VL student has.
- Both: a cutoff covering the longest sample and `delete` rather than cut (trajforge drops a sample
  that is too long: cutting would cut through an image or the answer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.store import atomic_write_bytes

LLAMAFACTORY_ARGS = "llamafactory_data_args.yaml"
MS_SWIFT_ARGS = "ms_swift_args.json"
README = "README.md"
QWEN3_VL_TOKEN_PIXELS = 32 * 32


@dataclass
class TextStats:
    """What the settings depend on: image sizes, and, when a student processor was given, its budget
    and the longest sample in its tokens."""

    max_image_pixels: int = 0
    min_image_pixels: int = 0
    processor_min_pixels: int | None = None
    processor_max_pixels: int | None = None
    max_tokens: int | None = None

    def add_image(self, width: int, height: int) -> None:
        pixels = width * height
        self.max_image_pixels = max(self.max_image_pixels, pixels)
        self.min_image_pixels = pixels if not self.min_image_pixels else min(self.min_image_pixels, pixels)

    @property
    def cutoff(self) -> int | None:
        """The longest sample rounded up to a multiple of 256 (None: no processor, no token count)."""
        return None if self.max_tokens is None else -(-self.max_tokens // 256) * 256


def llamafactory_args(out: Path, datasets: list[str], stats: TextStats) -> dict[str, Any]:
    """LLaMA-Factory data arguments (a `llamafactory-cli train` YAML fragment)."""
    args: dict[str, Any] = {
        "dataset_dir": str(out),
        "dataset": ",".join(datasets),
        "template": "qwen3_vl_nothink",
        "mask_history": False,
        "train_on_prompt": False,
        "image_max_pixels": max(stats.max_image_pixels, 1024),
        "image_min_pixels": 1,
    }
    if stats.cutoff is not None:
        args["cutoff_len"] = stats.cutoff
    return args


def ms_swift_args(out: Path, files: list[str], stats: TextStats) -> dict[str, Any]:
    """ms-swift arguments (`swift sft` flags) and the environment its image loader reads."""
    args: dict[str, Any] = {
        "dataset": [str(out / name) for name in files],
        "template": "qwen3_vl",
        "agent_template": None,
        "loss_scale": "default",
        "truncation_strategy": "delete",
    }
    if stats.cutoff is not None:
        args["max_length"] = stats.cutoff
    env = {}
    if stats.processor_max_pixels is not None and stats.processor_min_pixels is not None:
        # ms-swift reads the budget as image tokens for Qwen3-VL (one token = 32x32 px after merge)
        env = {
            "MAX_PIXELS": str(stats.processor_max_pixels),
            "MIN_PIXELS": str(stats.processor_min_pixels),
            "IMAGE_MAX_TOKEN_NUM": str(stats.processor_max_pixels // QWEN3_VL_TOKEN_PIXELS),
            "IMAGE_MIN_TOKEN_NUM": str(max(1, stats.processor_min_pixels // QWEN3_VL_TOKEN_PIXELS)),
        }
    return {"args": args, "env": env}


def ms_swift_row_kwargs(stats: TextStats) -> dict[str, Any]:
    """Per-row `chat_template_kwargs`: the processor's exact pixel budget for qwen_vl_utils (empty
    when no processor was given)."""
    if stats.processor_max_pixels is None or stats.processor_min_pixels is None:
        return {}
    return {
        "chat_template_kwargs": {
            "min_pixels": stats.processor_min_pixels,
            "max_pixels": stats.processor_max_pixels,
        }
    }


def _yaml(args: dict[str, Any]) -> str:
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in args.items())


def _readme(fmt: str, settings: dict[str, Any], stats: TextStats) -> str:
    lines = [
        f"# trajforge export ({fmt})",
        "",
        "The conversations are trajforge's training text: R1V4 assistant turns",
        "(`<think>...</think><tool_call>{json}</tool_call>` or `<answer>`) and observations as user turns",
        "(`<observation>...</observation>`). These settings train exactly that text:",
        "",
    ]
    if fmt == "llamafactory":
        lines += ["```yaml", _yaml(settings).rstrip(), "```", "", f"(also in `{LLAMAFACTORY_ARGS}`)"]
    else:
        args = settings["args"]
        flags = " ".join(
            f"--{k} {' '.join(v) if isinstance(v, list) else v}" for k, v in args.items() if v is not None
        )
        env = " ".join(f"{k}={v}" for k, v in settings["env"].items())
        lines += [
            "```bash",
            f"{env + ' ' if env else ''}swift sft --model STUDENT {flags}",
            "```",
            "",
            "No `--agent_template`: the tool calls are in the assistant text already.",
            "Each row's `chat_template_kwargs` holds the exact pixel budget (`min_pixels`/`max_pixels`),",
            "which ms-swift's image loader (qwen_vl_utils) applies per image; the environment above only",
            "carries whole image tokens (32x32 px each).",
            f"(also in `{MS_SWIFT_ARGS}`)",
        ]
    if stats.cutoff is None:
        lines += ["", "No student processor was given: set the cutoff to cover the longest sample."]
    if stats.processor_max_pixels is None:
        lines += [
            "",
            "Image budget: use the student processor's min/max pixels (trajforge's `data.image_*_pixels`).",
        ]
    return "\n".join(lines) + "\n"


def write_settings(out: Path, fmt: str, files: list[str], stats: TextStats) -> dict[str, Any]:
    """Write the settings next to the data; returns them (LLaMA-Factory: also into dataset_info.json)."""
    if fmt == "llamafactory":
        datasets = [Path(name).stem for name in files]
        settings = llamafactory_args(out, datasets, stats)
        atomic_write_bytes(out / LLAMAFACTORY_ARGS, _yaml(settings).encode("utf-8"))
    else:
        settings = ms_swift_args(out, files, stats)
        atomic_write_bytes(out / MS_SWIFT_ARGS, (json.dumps(settings, indent=2) + "\n").encode("utf-8"))
    atomic_write_bytes(out / README, _readme(fmt, settings, stats).encode("utf-8"))
    return settings
