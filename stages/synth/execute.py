"""Execute: the agent loop that turns a task (and its plan) into one trajectory.

Each turn: the teacher sees the conversation so far (images as data URIs under the pixel
budget) and replies in whatever shape its server sends (R1V4 text, a reasoning field, native
tool calls); `pipeline.format.read_reply` reads it leniently and names every repair. A reply
that cannot be read, or was cut at max_tokens mid-action, is shown back with its error and
asked again (`synth.format_retries`); a tool call from a reply cut at max_tokens is never run,
in either protocol, however well its arguments read (a cut call is one whose end is missing); a refusal ends the rollout as `refused`. A tool call runs
the real tool against the original images and its observation (text and images) is appended;
an answer ends the rollout. The history sent back holds each turn as the renderer writes it
from the parsed parts, so every server's chat template sees well-formed turns; the raw reply
stays on the step for audit. A turn limit and a context-token limit bound every rollout.
Nothing here raises for one rollout's trouble: teacher failures, unknown tools and unreadable
turns become recorded steps or a status with the reason.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.chat import (
    ImageEncoder,
    Message,
    ToolProtocol,
    UriCache,
    assistant_message,
    image_names,
    image_refs,
    observation_message,
    prompt_messages,
    to_openai_messages,
)
from pipeline.config import SynthConfig, TeacherConfig
from pipeline.format import read_reply
from pipeline.plan_format import render_plan
from pipeline.schema import Plan, Step, Task, Trajectory, canonical_json
from pipeline.store import RunStore
from pipeline.teacher import TeacherClient, TeacherError, TeacherReply, refusal_of
from pipeline.tool_spec import ToolTable
from prompts import Prompt
from stages.synth.system_prompts import executor_prompt
from stages.tools.base import Tool, ToolContext


def reask_text(problem: str, protocol: ToolProtocol) -> str:
    """What the teacher is told about a reply that could not be used."""
    if protocol == "native":
        form = "think, then call exactly one of the tools you were given, or give the final answer as <answer>...</answer>"
    else:
        form = (
            'write <think>...</think> followed by exactly one <tool_call>{"name": ..., "arguments": {...}}'
            "</tool_call> or <answer>...</answer>, and nothing else"
        )
    return f"Your last reply could not be used: {problem}. Reply again: {form}."


class PlanTracker:
    """Which plan step each turn serves: tool calls advance to the next step with that tool.

    A repeated call of the same tool (a second crop, a refined search) serves the step it already
    served unless the very next step wants that tool: it does not jump over steps of other tools
    still to come (a refined search is no later search step). An answer serves the final step.
    Without a plan every turn serves none (None).
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
        upcoming = self.tools[self.position] if self.position < len(self.tools) else None
        if upcoming != tool_name and self.last is not None and self.tools[self.last - 1] == tool_name:
            return self.last  # a repeat of the step just served, not a jump over the steps between
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
    repairs: collections.Counter[str] = field(default_factory=collections.Counter)  # by kind
    repaired_turns: int = 0
    normalisations: collections.Counter[str] = field(default_factory=collections.Counter)  # by kind
    normalised_turns: int = 0
    estimated_token_replies: int = 0  # replies without usage (their tokens estimated)
    cut_calls: int = 0  # tool calls from replies cut at max_tokens (re-asked, never run)
    reasks: int = 0
    refusals: int = 0
    truncations: int = 0  # replies cut at max_tokens (re-asked or not)
    trajectory_wall_s: float = 0.0  # summed over trajectories: the run's sizing reads it
    trajectories_timed: int = 0

    def summary(self) -> dict[str, int]:
        """Reply-reading counters, flat (`repairs.<kind>`) so workers' figures add up."""
        out = {
            "repaired_turns": self.repaired_turns,
            "repairs": sum(self.repairs.values()),
            "normalised_turns": self.normalised_turns,
            "normalisations": sum(self.normalisations.values()),
            "reasks": self.reasks,
            "refusals": self.refusals,
            "truncations": self.truncations,
            "cut_calls": self.cut_calls,
            "estimated_token_replies": self.estimated_token_replies,
            "trajectories_timed": self.trajectories_timed,
        }
        out.update({f"repairs.{kind}": n for kind, n in sorted(self.repairs.items())})
        out.update({f"normalisations.{kind}": n for kind, n in sorted(self.normalisations.items())})
        return out


@dataclass
class Executor:
    """Everything a rollout needs; one per worker, shared by all trajectories in flight."""

    teacher: TeacherClient
    tools: Mapping[str, Mapping[str, Tool]]  # mode -> tool name -> tool
    store: RunStore
    synth: SynthConfig
    teacher_cfg: TeacherConfig
    work_root: Path
    tool_table: ToolTable | None = None  # the tools the prompts list (default: the built-in ones)
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

    @property
    def protocol(self) -> ToolProtocol:
        return self.teacher_cfg.tool_protocol

    async def run(self, task: Task, rollout: int, plan: Plan | None) -> Trajectory:
        """One rollout, start to finish; never raises for the rollout's own trouble."""
        prompt = executor_prompt(task.mode, self.protocol, self.tool_table)
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
        # on a thread: finding an image's file stats the disk, and on a run in object storage
        # its first use downloads it, which on the loop would hold every trajectory in flight
        paths = await asyncio.to_thread(lambda: [self.store.images.path(ref) for ref in task.images])
        ctx = ToolContext(  # its folder is made only if a tool writes a file
            trajectory_id=traj.trajectory_id,
            workdir=self.work_root / traj.trajectory_id,
            images=dict(zip(image_names(len(task.images)), paths, strict=True)),
            question=task.question,
            goal=task.question,
        )
        started_at = time.time()
        start = time.perf_counter()
        try:
            await self._loop(traj, task, plan, prompt, ctx)
        except Exception as exc:  # a bug or an unexpected tool crash: one failed rollout, not a dead run
            traj.status, traj.failure_reason = "failed", f"executor: {type(exc).__name__}: {exc}"
        finally:
            await self._cleanup(traj.trajectory_id, ctx)
        traj.wall_s = time.perf_counter() - start
        self.stats.trajectory_wall_s += traj.wall_s
        self.stats.trajectories_timed += 1
        # when it ran (unix seconds): provenance, and what the synth bench's steady-state window reads
        traj.meta = canonical_json({"started_at": round(started_at, 3), "finished_at": round(time.time(), 3)})
        traj.prompt_tokens = sum(s.prompt_tokens for s in traj.steps)
        traj.completion_tokens = sum(s.completion_tokens for s in traj.steps)
        traj.format_errors = [f"step {s.index}: {e}" for s in traj.steps for e in s.format_errors]
        self.stats.statuses[traj.status] = self.stats.statuses.get(traj.status, 0) + 1
        return traj

    async def _loop(
        self, traj: Trajectory, task: Task, plan: Plan | None, prompt: Prompt, ctx: ToolContext
    ) -> None:
        tools = self.tools.get(task.mode, {})
        for tool in tools.values():  # e.g. the code tool's fast input copies, hidden by turn one
            tool.warm(ctx)
        # the plan as `run` rendered it for the record (rendering it again cost as much)
        messages: list[Message] = prompt_messages(prompt.text, task.question, list(task.images), traj.plan)
        encoder = self.encoder()
        tracker = PlanTracker(plan)
        request = self.rollout_request(traj.rollout, traj.trajectory_id)
        if self.protocol == "native":
            request["tools"] = [{"type": "function", "function": tool.schema()} for tool in tools.values()]
        traj.status = "turn_limit"
        for index in range(self.synth.max_turns):
            asked = await self._ask(traj, messages, encoder, request, index)
            if asked is None:
                break  # the teacher failed for good: status and reason are set
            step, reply = asked
            step.plan_step = tracker.serve(step.action, step.tool_name)
            traj.steps.append(step)
            if (refusal := refusal_of(reply)) is not None and step.action == "invalid":
                traj.status, traj.failure_reason = "refused", f"teacher refused: {refusal[:200]}"
                self.stats.refusals += 1
                break
            if reply.truncated and _cut_short(step):
                traj.status = "truncated"
                traj.failure_reason = (
                    f"reply cut at max_tokens ({self.teacher_cfg.max_tokens}) after {step.reasks} re-asks"
                )
                break
            messages.append(self._history_turn(step, reply))
            if step.action == "answer":
                traj.final_answer = step.answer
                traj.status = "answered"
                break
            if step.action == "tool_call":
                await self._run_tool(step, tools, ctx)
            else:
                step.error = "unreadable turn: " + "; ".join(step.format_errors or ["no action"])
            role = "tool" if step.call_id else self.synth.observation_role
            messages.append(observation_message(step, role))
            if reply.prompt_tokens + reply.completion_tokens >= self.synth.max_tokens:
                traj.status = "token_limit"
                traj.failure_reason = (
                    f"context reached {reply.prompt_tokens + reply.completion_tokens} tokens"
                )
                break
        if traj.status == "turn_limit":
            traj.failure_reason = f"no answer within {self.synth.max_turns} turns"

    async def _ask(
        self,
        traj: Trajectory,
        messages: list[Message],
        encoder: ImageEncoder,
        request: dict,
        index: int,
    ) -> tuple[Step, TeacherReply] | None:
        """One turn from the teacher, re-asked while unusable (within synth.format_retries)."""
        attempt = messages
        reasks = 0
        while True:
            await encoder.prepare(attempt)
            try:
                reply = await self.teacher.chat(to_openai_messages(attempt, encoder.data_uri), **request)
            except TeacherError as exc:
                traj.status, traj.failure_reason = "failed", f"teacher: {exc}"
                return None
            finally:
                self.stats.images_sent += len(image_refs(attempt))
            traj.teacher_calls += 1
            self.stats.turns += 1
            step = step_from_reply(index, reply)
            step.reasks = reasks
            self.stats.truncations += reply.truncated
            self.stats.cut_calls += reply.truncated and step.action == "tool_call"
            self.stats.estimated_token_replies += reply.tokens_estimated
            problem = _problem(step, reply)
            if (
                problem is None
                or refusal_of(reply) is not None
                or reasks >= self.synth.format_retries
                or (reply.truncated and self.teacher_cfg.on_truncated == "fail")
            ):
                self._count(step)
                return step, reply
            reasks += 1
            self.stats.reasks += 1
            said = reply.text or (f"<think>{reply.reasoning}</think>" if reply.reasoning else "")
            attempt = [
                *messages,
                {"role": "assistant", "content": [{"type": "text", "text": said or "(empty reply)"}]},
                {"role": "user", "content": [{"type": "text", "text": reask_text(problem, self.protocol)}]},
            ]

    def _count(self, step: Step) -> None:
        if step.repairs:
            self.stats.repaired_turns += 1
            self.stats.repairs.update(step.repairs)
        if step.normalisations:
            self.stats.normalised_turns += 1
            self.stats.normalisations.update(step.normalisations)

    def _history_turn(self, step: Step, reply: TeacherReply) -> Message:
        """The step as the teacher sees it next time: rendered from its parsed parts."""
        if step.action != "invalid":
            return assistant_message(step, self.protocol)
        said = reply.text or step.think or "(empty reply)"
        return {"role": "assistant", "content": [{"type": "text", "text": said}]}

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

    async def _cleanup(self, trajectory_id: str, ctx: ToolContext) -> None:
        for tools in self.tools.values():
            for tool in tools.values():
                end = getattr(tool, "end_session", None)
                if end is not None:
                    with contextlib.suppress(Exception):
                        await end(trajectory_id)
        if ctx.workdir_made:  # most trajectories never made one
            await asyncio.to_thread(shutil.rmtree, ctx.workdir, True)


def _store_images(store: RunStore, paths: list[str]) -> tuple[list[str], float]:
    start = time.thread_time()
    refs = [store.images.put_file(path, verified=True) for path in paths]  # the tool read them
    return refs, time.thread_time() - start


def step_from_reply(index: int, reply: TeacherReply) -> Step:
    """A Step from one teacher reply, through the one (lenient) reader of the format."""
    parsed = read_reply(reply.text, reasoning=reply.reasoning, tool_calls=reply.tool_calls)
    turn = parsed.turns[0]
    split = bool(reply.reasoning or reply.tool_calls or reply.refusal)
    raw = reply.text
    if split:  # the server split the turn: keep every part as sent
        raw = canonical_json(
            {
                "content": reply.text or None,
                "reasoning": reply.reasoning or None,
                "tool_calls": reply.tool_calls or None,
                "refusal": reply.refusal,
            }
        )
    step = Step(
        index=index,
        raw=raw,
        think=turn.think or "",
        format_errors=list(parsed.errors),
        repairs=list(turn.repairs),
        normalisations=list(dict.fromkeys([*reply.normalisations, *turn.normalisations])),
        tokens_estimated=reply.tokens_estimated,
        finish_reason=reply.finish_reason,
        teacher_latency_s=reply.latency_s,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
    )
    step.action = turn.action if not parsed.errors else "invalid"  # type: ignore[assignment]
    if step.action == "tool_call":
        step.tool_name = turn.tool_name
        step.arguments = canonical_json(turn.arguments or {})
        if reply.tool_calls:
            step.call_id = reply.tool_calls[0]["id"]
    elif step.action == "answer":
        step.answer = (turn.answer or "").strip()
    return step


def _cut_short(step: Step) -> bool:
    """A reply cut at max_tokens before its action was complete (its end is missing).

    A tool call from a cut reply counts as cut whatever it looks like: json-repair closes
    `{"code": "crop = crop.resize` into valid JSON, and a native call's arguments carry no
    closing tag to tell a whole call from a cut one. Only an answer whose tag closed is whole.
    """
    return step.action in ("invalid", "tool_call") or "unclosed_action" in step.repairs


def _problem(step: Step, reply: TeacherReply) -> str | None:
    """Why a reply cannot be used as it is (None: use it)."""
    if reply.truncated and _cut_short(step):
        return "it was cut off at the token limit before it was complete; write a shorter turn"
    if step.action == "invalid":
        return "; ".join(step.format_errors) or "no <tool_call> or <answer> found"
    return None
