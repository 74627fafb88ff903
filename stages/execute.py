"""Execute: the agent loop that turns a task (and its plan) into one trajectory.

Each turn: the teacher sees the conversation so far (images as data URIs under the pixel
budget), writes one R1V4 turn; `pipeline.format.parse_turn` reads it; a tool call runs the real
tool against the original images and its observation (text and images) is appended; an answer
ends the rollout. A turn limit and a context-token limit bound every rollout. Nothing here
raises for one rollout's trouble: teacher failures, unknown tools and unreadable turns become
recorded steps or a `failed` status with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.chat import Message, observation_message, prompt_messages
from pipeline.config import SynthConfig, TeacherConfig
from pipeline.format import parse_turn
from pipeline.plan_format import render_plan
from pipeline.schema import Plan, Step, Task, Trajectory, canonical_json
from pipeline.store import RunStore
from pipeline.teacher import (
    ImageEncoder,
    TeacherClient,
    TeacherError,
    UriCache,
    image_refs,
    to_openai_messages,
)
from prompts import Prompt, load_prompt
from stages.tools.base import Tool, ToolContext

EXECUTOR_PROMPTS = {"deepresearch": "executor_deepresearch", "general": "executor_general"}


def executor_prompt(mode: str) -> Prompt:
    """The system prompt of an executor mode (its id is the trajectory's prompt_version)."""
    return load_prompt(EXECUTOR_PROMPTS.get(mode, EXECUTOR_PROMPTS["deepresearch"]))


def image_names(count: int) -> list[str]:
    """Names the model uses for the task's input images (the tools resolve the same names)."""
    return [f"image_{i}.png" for i in range(count)]


def user_text(task: Task, plan: Plan | None) -> str:
    """The first user turn's text: the question verbatim, the image names, then the plan."""
    parts = [task.question]
    if task.images:
        parts.append("Images: " + ", ".join(image_names(len(task.images))))
    if plan is not None and plan.valid and plan.steps:
        parts.append("Plan:\n" + render_plan(plan.steps))
    return "\n\n".join(parts)


class PlanTracker:
    """Which plan step each turn serves: tool calls advance to the next step with that tool.

    A repeated call of the same tool (a second crop) serves the step it already served; an
    answer serves the final step. Without a plan every turn serves none (None).
    """

    def __init__(self, plan: Plan | None):
        self.tools = [s.tool_name for s in plan.steps] if plan is not None and plan.valid else []
        self.position = 0  # steps before this index are served
        self.last: int | None = None

    def serve(self, action: str, tool_name: str | None) -> int | None:
        if not self.tools:
            return None
        if action == "answer":
            self.position = len(self.tools)
            self.last = len(self.tools)
            return self.last
        if action != "tool_call" or tool_name is None:
            return self.last
        for index in range(self.position, len(self.tools)):
            if self.tools[index] == tool_name:
                self.position = index + 1
                self.last = index + 1
                return self.last
        if self.last is not None and self.tools[self.last - 1] == tool_name:
            return self.last
        return None


@dataclass
class ExecStats:
    """What the executor spent, for the run summary and the bench's CPU split."""

    turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    tool_s: float = 0.0
    store_cpu_s: float = 0.0
    images_sent: int = 0  # image parts sent over all teacher calls
    statuses: dict[str, int] = field(default_factory=dict)


@dataclass
class Executor:
    """Everything a rollout needs; one per worker, shared by all trajectories in flight."""

    teacher: TeacherClient
    tools: Mapping[str, Mapping[str, Tool]]  # mode -> tool name -> tool
    store: RunStore
    synth: SynthConfig
    teacher_cfg: TeacherConfig
    work_root: Path
    stats: ExecStats = field(default_factory=ExecStats)
    # images encoded once per worker, not per rollout; it counts every encoding (and its CPU)
    # by this worker's encoders, the planner's included
    uris: UriCache = field(default_factory=UriCache)

    def encoder(self) -> ImageEncoder:
        """A trajectory's image encoder, sharing this worker's encoded images."""
        return ImageEncoder(self.store.images, self.teacher_cfg.image_max_pixels, shared=self.uris)

    def rollout_request(self, rollout: int, trajectory_id: str) -> dict[str, Any]:
        """Request fields that make rollouts differ (and let the oracle salt its choices)."""
        if self.synth.send_rollout_as == "seed":
            return {"seed": rollout}
        if self.synth.send_rollout_as == "user":
            return {"user": trajectory_id}
        return {}

    async def run(self, task: Task, rollout: int, plan: Plan | None) -> Trajectory:
        """One rollout, start to finish; never raises for the rollout's own trouble."""
        prompt = executor_prompt(task.mode)
        traj = Trajectory(
            task_id=task.task_id,
            rollout=rollout,
            teacher=self.teacher_cfg.model,
            prompt_version=prompt.id,
            source=task.source,
            source_id=task.source_id,
            category=task.category,
            mode=task.mode,
            question=task.question,
            images=list(task.images),
            gold_answer=task.gold_answer,
            answer_aliases=list(task.answer_aliases),
            gold_region=task.gold_region,
            plan=render_plan(plan.steps) if plan is not None and plan.valid else None,
            plan_valid=plan.valid if plan is not None else None,
        )
        workdir = self.work_root / traj.trajectory_id
        started_at = time.time()
        start = time.perf_counter()
        try:
            await self._loop(traj, task, plan, prompt, workdir)
        except Exception as exc:  # a bug or an unexpected tool crash: one failed rollout, not a dead run
            traj.status, traj.failure_reason = "failed", f"executor: {type(exc).__name__}: {exc}"
        finally:
            await self._cleanup(traj.trajectory_id, workdir)
        traj.wall_s = time.perf_counter() - start
        # when it ran (unix seconds): provenance, and what the synth bench's steady-state window reads
        traj.meta = canonical_json({"started_at": round(started_at, 3), "finished_at": round(time.time(), 3)})
        traj.prompt_tokens = sum(s.prompt_tokens for s in traj.steps)
        traj.completion_tokens = sum(s.completion_tokens for s in traj.steps)
        traj.format_errors = [f"step {s.index}: {e}" for s in traj.steps for e in s.format_errors]
        self.stats.statuses[traj.status] = self.stats.statuses.get(traj.status, 0) + 1
        return traj

    async def _loop(
        self, traj: Trajectory, task: Task, plan: Plan | None, prompt: Prompt, workdir: Path
    ) -> None:
        tools = self.tools.get(task.mode, {})
        workdir.mkdir(parents=True, exist_ok=True)
        names = image_names(len(task.images))
        ctx = ToolContext(
            trajectory_id=traj.trajectory_id,
            workdir=workdir,
            images={name: self.store.images.path(ref) for name, ref in zip(names, task.images, strict=True)},
            question=task.question,
            goal=task.question,
        )
        for tool in tools.values():  # e.g. the code tool's fast input copies, hidden by turn one
            tool.warm(ctx)
        messages: list[Message] = prompt_messages(prompt.text, user_text(task, plan), list(task.images))
        encoder = self.encoder()
        tracker = PlanTracker(plan)
        request = self.rollout_request(traj.rollout, traj.trajectory_id)
        defects: set[str] = set()
        traj.status = "turn_limit"
        for index in range(self.synth.max_turns):
            await encoder.prepare(messages)
            try:
                reply = await self.teacher.chat(to_openai_messages(messages, encoder.data_uri), **request)
            except TeacherError as exc:
                traj.status, traj.failure_reason = "failed", f"teacher: {exc}"
                break
            finally:
                self.stats.images_sent += len(image_refs(messages))
            traj.teacher_calls += 1
            self.stats.turns += 1
            defects.update(_defects(reply.extra))
            step = _step_from(index, reply.text)
            step.teacher_latency_s = reply.latency_s
            step.prompt_tokens, step.completion_tokens = reply.prompt_tokens, reply.completion_tokens
            step.plan_step = tracker.serve(step.action, step.tool_name)
            traj.steps.append(step)
            messages.append({"role": "assistant", "content": [{"type": "text", "text": reply.text}]})
            if step.action == "answer":
                traj.final_answer = step.answer
                traj.status = "answered"
                break
            if step.action == "tool_call":
                await self._run_tool(step, tools, ctx)
            else:
                step.error = "unreadable turn: " + "; ".join(step.format_errors or ["no action"])
            messages.append(observation_message(step, self.synth.observation_role))
            if reply.prompt_tokens + reply.completion_tokens >= self.synth.max_tokens:
                traj.status = "token_limit"
                traj.failure_reason = (
                    f"context reached {reply.prompt_tokens + reply.completion_tokens} tokens"
                )
                break
        if traj.status == "turn_limit":
            traj.failure_reason = f"no answer within {self.synth.max_turns} turns"
        traj.injected_defects = sorted(defects)

    async def _run_tool(self, step: Step, tools: Mapping[str, Tool], ctx: ToolContext) -> None:
        tool = tools.get(step.tool_name or "")
        self.stats.tool_calls += 1
        if tool is None:
            step.error = f"unknown tool {step.tool_name!r}; available: {sorted(tools)}"
            self.stats.tool_errors += 1
            return
        observation = await tool.run(step.arguments_dict(), ctx)
        step.tool_latency_s = observation.latency_s
        step.observation_text = observation.text
        step.error = observation.error
        self.stats.tool_s += observation.latency_s
        if observation.error:
            self.stats.tool_errors += 1
        if observation.images:
            refs, cpu = await asyncio.to_thread(_store_images, self.store, observation.images)
            step.observation_images = refs
            self.stats.store_cpu_s += cpu

    async def _cleanup(self, trajectory_id: str, workdir: Path) -> None:
        for tools in self.tools.values():
            for tool in tools.values():
                end = getattr(tool, "end_session", None)
                if end is not None:
                    with contextlib.suppress(Exception):
                        await end(trajectory_id)
        await asyncio.to_thread(shutil.rmtree, workdir, True)


def _store_images(store: RunStore, paths: list[str]) -> tuple[list[str], float]:
    start = time.thread_time()
    refs = [store.images.put_file(path, verified=True) for path in paths]  # the tool read them
    return refs, time.thread_time() - start


def _defects(extra: dict[str, Any]) -> list[str]:
    info = extra.get("trajforge")
    if not isinstance(info, dict):
        return []
    defects = info.get("defects") or []
    return [str(d) for d in defects] if isinstance(defects, list) else []


def _step_from(index: int, text: str) -> Step:
    """A Step from one teacher message, through the one R1V4 parser."""
    parsed = parse_turn(text)
    turn = parsed.turns[0] if parsed.turns else None
    step = Step(index=index, raw=text, format_errors=list(parsed.errors))
    if turn is None:
        return step
    step.think = turn.think or ""
    action = turn.action if len(parsed.turns) == 1 else "invalid"
    step.action = action  # type: ignore[assignment]
    if action == "tool_call":
        step.tool_name = turn.tool_name
        step.arguments = canonical_json(turn.arguments or {})
    elif action == "answer":
        step.answer = (turn.answer or "").strip()
    return step
