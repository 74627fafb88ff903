"""Synth: plan, then execute each rollout against the real tools; the local/Ray runner; imports.

The agent loop is this stage's public face: evaluation drives the very same executor.
"""

from stages.synth.execute import Executor
from stages.synth.system_prompts import PROMPT_FOR_MODE, executor_prompt, fill_shipped, system_prompt

__all__ = ["PROMPT_FOR_MODE", "Executor", "executor_prompt", "fill_shipped", "system_prompt"]
