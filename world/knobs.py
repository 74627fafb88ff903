"""Knobs of the world server for tests and benchmarks: latency, rate limit, errors, defects, style.

Latency is a distribution spec: `"0"`, `"5"` / `"const:5"` (seconds), `"uniform:1,3"`,
`"exp:2"` (mean), `"lognormal:1,0.5"` (median, sigma). Error rates are per request (random);
defect rates are per trajectory (deterministic: a hash of the question and the rollout salt).
`teacher_style` makes the oracle answer the way real servers and real models do (reasoning
fields, native tool calls, formatting slips, refusals, truncation); its draws are hashes too.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.format import SLIPS

#: Defects the world can inject into executor replies (its truth for scoring the filters).
DEFECTS = (
    "off_target_crop",
    "unsupported_claim",
    "skipped_plan_step",
    "wrong_answer",
    "format_error",
    "sandbox_error",
    "recrop_loop",
)
#: 503: an overloaded server; drop: the connection closed before any response (a proxy restart)
ERRORS = ("429", "500", "503", "drop", "hang", "malformed", "truncated")
#: the task walk's faults (world.walk_oracle): rates per walk request
WALK_FAULTS = ("unreadable", "leak", "not_unique", "generic")


def parse_latency(spec: str) -> tuple[str, tuple[float, ...]]:
    """`"uniform:1,3"` -> ("uniform", (1.0, 3.0)); a bare number is a constant."""
    text = str(spec).strip() or "0"
    kind, _, args = text.partition(":") if ":" in text else ("const", "", text)
    try:
        values = tuple(float(v) for v in args.split(",") if v.strip())
    except ValueError:
        raise ValueError(
            f"latency {spec!r}: numbers expected, e.g. 'const:5', 'uniform:1,3', 'exp:2', 'lognormal:1,0.5'"
        ) from None
    need = {"const": 1, "uniform": 2, "exp": 1, "lognormal": 2}
    if kind not in need or len(values) != need[kind]:
        raise ValueError(
            f"latency {spec!r}: use const:S, uniform:A,B, exp:MEAN or lognormal:MEDIAN,SIGMA (seconds)"
        )
    return kind, values


def _rate(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} = {value}: a rate is a probability between 0 and 1")
    return value


def named_rates(
    value: dict[str, float],
    known: tuple[str, ...],
    what: str,
    *,
    label: str | None = None,
    expand_all: bool = True,
    check: bool = True,
) -> dict[str, float]:
    """`{name: rate}` against the names a knob knows: `all` sets every name (others override
    it), an unknown name is an error that lists the known ones, each rate is a probability."""
    if expand_all and "all" in value:
        rate = value.pop("all")
        value = {name: rate for name in known} | value
    unknown = set(value) - set(known)
    if unknown:
        also = ", or 'all'" if expand_all else ""
        raise ValueError(f"unknown {label or what} {sorted(unknown)}; known: {list(known)}{also}")
    return {name: _rate(f"{what}.{name}", rate) for name, rate in value.items()} if check else value


class TeacherStyle(BaseModel):
    """How the oracle's replies are shaped, like a real server and a real model would shape them.

    reasoning_field: none | reasoning_content | reasoning: the think goes into that message field
        (as vLLM/SGLang with a reasoning parser), content keeps only the action.
    tool_protocol: text | native: native + a request with `tools` answers tool calls as
        `message.tool_calls` (OpenAI function calling); without `tools`, text as always.
    slips: {kind: rate}: per executor turn, formatting slips (names: pipeline.format.SLIPS).
    judge_prose: rate per judge request of prose before the JSON verdict (fenced or bare).
    refusal: rate per trajectory of a refused first executor turn.
    truncate: rate per executor request of a reply cut at half (finish_reason "length").
    think_in_prompt: a thinking model (Qwen3 Thinking) served without a reasoning parser: its
        chat template opens the think in the prompt, so every turn starts inside it (no <think>).
    special_tokens: rate per executor turn of leaked template tokens: GLM-4.5V's answer box
        (<|begin_of_box|>...<|end_of_box|>) on answers, an end-of-turn marker after the action.
    two_calls: rate per tool-call turn of a second call in the same reply (text or native).
    reasoning_only: rate per tool-call turn of the call made before the think closed: at the very
        end of the reasoning field (content empty), or inside <think> with nothing after it.
    quoted_call: rate per executor turn of a draft <tool_call> quoted inside the think.
    no_usage: rate per reply of a response without `usage`.
    judge_sentence: rate per judge request of a one-sentence verdict, no JSON ("Yes, ...").
    judge_vague: rate per judge request of a first reply with no verdict (a re-ask gets JSON).
    cluster: once a conversation's turn has slipped (any per-turn behaviour above), that
        behaviour's rate on its next turn is multiplied by this (1: independent turns).
    mixed: per conversation, the server shape is drawn (no reasoning parser, reasoning_content,
        reasoning, or a thinking model without a parser), as a fleet of real endpoints differs.
    """

    model_config = ConfigDict(extra="forbid")

    reasoning_field: Literal["none", "reasoning_content", "reasoning"] = "none"
    tool_protocol: Literal["text", "native"] = "text"
    slips: dict[str, float] = Field(default_factory=dict)
    judge_prose: float = 0.0
    refusal: float = 0.0
    truncate: float = 0.0
    think_in_prompt: bool = False
    special_tokens: float = 0.0
    two_calls: float = 0.0
    reasoning_only: float = 0.0
    quoted_call: float = 0.0
    no_usage: float = 0.0
    judge_sentence: float = 0.0
    judge_vague: float = 0.0
    cluster: float = 1.0
    mixed: bool = False

    @field_validator("slips")
    @classmethod
    def _slips(cls, value: dict[str, float]) -> dict[str, float]:
        return named_rates(value, SLIPS, "slips")

    @field_validator(
        "judge_prose",
        "refusal",
        "truncate",
        "special_tokens",
        "two_calls",
        "reasoning_only",
        "quoted_call",
        "no_usage",
        "judge_sentence",
        "judge_vague",
    )
    @classmethod
    def _rates(cls, value: float) -> float:
        return _rate("rate", value)


class Knobs(BaseModel):
    """Everything tests and benchmarks can turn; also settable live at POST /admin/knobs."""

    model_config = ConfigDict(extra="forbid")

    latency: str = "0"  # distribution of added latency per chat request (seconds)
    rate_limit: float | None = None  # admit R requests/s (token bucket, burst R); 429 beyond
    rate_limit_headers: bool = True  # state the bucket in OpenAI's x-ratelimit-*-requests headers
    errors: dict[str, float] = Field(
        default_factory=dict
    )  # "429"|"500"|"hang"|"malformed"|"truncated" -> rate
    defects: dict[str, float] = Field(default_factory=dict)  # a DEFECTS name -> rate
    hang_s: float = 600.0  # how long a 'hang' holds the request
    retry_after_s: float = 1.0  # Retry-After for injected 429s
    stream: bool = True  # advertise and serve stream=True
    seed: int = 0  # seeds the per-request error draws and the latency samples
    log_path: str | None = None  # defect log (JSONL); default <world>/logs/oracle.jsonl
    teacher_style: TeacherStyle = Field(default_factory=TeacherStyle)  # reply shapes and slips
    walk: dict[str, float] = Field(default_factory=dict)  # WALK_FAULTS name -> rate per walk request
    # per text_search step of a walked task: a first, too-broad query (the hop's clue alone)
    # before the gold one, as a real agent searches in vain and refines (world.oracle)
    refine: float = 0.5

    @field_validator("latency")
    @classmethod
    def _latency(cls, value: str) -> str:
        parse_latency(value)
        return value

    @field_validator("refine")
    @classmethod
    def _refine(cls, value: float) -> float:
        return _rate("refine", value)

    @field_validator("errors")
    @classmethod
    def _errors(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - set(ERRORS)
        if unknown:
            raise ValueError(f"unknown error kinds {sorted(unknown)}; known: {list(ERRORS)}")
        return value

    @field_validator("walk")
    @classmethod
    def _walk(cls, value: dict[str, float]) -> dict[str, float]:
        return named_rates(value, WALK_FAULTS, "walk", label="walk faults", expand_all=False)

    @field_validator("defects")
    @classmethod
    def _defects(cls, value: dict[str, float]) -> dict[str, float]:
        return named_rates(value, DEFECTS, "defects", check=False)


def sample_latency(spec: str, rng: random.Random) -> float:
    kind, v = parse_latency(spec)
    if kind == "const":
        return max(0.0, v[0])
    if kind == "uniform":
        return max(0.0, rng.uniform(v[0], v[1]))
    if kind == "exp":
        return rng.expovariate(1.0 / v[0]) if v[0] > 0 else 0.0
    return max(0.0, v[0] * math.exp(rng.gauss(0.0, v[1])))


def draw_error(knobs: Knobs, rng: random.Random) -> str | None:
    """At most one injected error for this request, by the configured rates."""
    roll = rng.random()
    for kind in ERRORS:
        rate = knobs.errors.get(kind, 0.0)
        if roll < rate:
            return kind
        roll -= rate
    return None


def unit(*parts: object) -> float:
    """A stable number in [0, 1) from the parts: the draws that must repeat on a rerun."""
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def drawn(rate: float, *parts: object) -> bool:
    """True for a share `rate` of all part tuples, the same answer every time."""
    return rate > 0 and unit(*parts) < rate


def clustered(rate: float, boost: float, name: str, salt: str, question: str, index: int) -> bool:
    """Whether turn `index` of a conversation shows behaviour `name`: `rate` on a turn after a
    clean one, `rate * boost` (at most 1) after one that showed it, as a model that has slipped
    once keeps slipping. Stable: the same conversation draws the same turns on a rerun."""
    shown = False
    for turn in range(index + 1):
        shown = drawn(min(1.0, rate * boost) if shown else rate, name, salt, question, turn)
    return shown


def trajectory_defects(knobs: Knobs, question: str, salt: str) -> list[str]:
    """Defects of one trajectory: a stable hash per (question, salt, defect) against each rate."""
    return [name for name in DEFECTS if drawn(knobs.defects.get(name, 0.0), name, salt, question)]


class RateLimiter:
    """Token bucket: admits `rate` requests per second with a burst of max(1, rate)."""

    def __init__(self, rate: float) -> None:
        self.rate, self.capacity = rate, max(1.0, rate)
        self.tokens, self.stamp = self.capacity, time.monotonic()

    def admit(self) -> float:
        """0.0 if admitted, else seconds until a token is free (the Retry-After)."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def headers(self) -> dict[str, str]:
        """The bucket as OpenAI states it: limit, whole requests remaining, and the time until
        the bucket is full again as a Go duration (`25ms`, `1.5s`), from the remaining stated."""
        remaining = int(self.tokens)
        reset_s = (self.capacity - remaining) / self.rate
        reset = f"{round(reset_s * 1000)}ms" if reset_s < 1.0 else f"{reset_s:.3f}s"
        return {
            "x-ratelimit-limit-requests": str(int(self.capacity)),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": reset,
        }
