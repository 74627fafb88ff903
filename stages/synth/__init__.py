"""Synth: plan, then execute each rollout against the real tools; the local/Ray runner; imports.

The agent loop is this stage's public face: evaluation drives the very same executor.
"""

from stages.synth.execute import Executor, executor_prompt

__all__ = ["Executor", "executor_prompt"]
