"""LLM/VLM judges behind the checks: one protocol, four prompts, verdicts read as real models write them.

Protocol (the offline world's oracle answers the same): the system message is
`prompts/judge_<kind>.vN.txt`; the user message carries one JSON object in a ```json fence
(answer: question, gold_answer, aliases, predicted; step: question, tool_name, arguments,
observation_text, next_thought; image: question, next_thought, plus the image as an `image_url`
data URI item; final: question, last_thought, answer). The judge replies
`{"verdict": "pass"|"fail", "reason": "..."}`, asked for as `response_format` json_schema where
the endpoint supports it (`filter.judge_structured_output`, else `teacher.structured_output`).

Reading, whatever a real model writes (chat-template tokens such as GLM-4.5V's answer box
stripped first): the last JSON object with a "verdict" key anywhere in the content, else in the
reasoning field (a reasoning judge may put everything there), through `pipeline.lenient`; else
prose: `verdict: X`, or a reply (or its last line) that opens with its decision ("Yes, the step
is consistent.", "No, the crop does not show the sign.", "Fail: ...", "Supported."). Verdict
words are normalised (pass/fail, yes/no, true/false, correct/incorrect, consistent/inconsistent,
supported/unsupported, ...). A reply with no readable verdict is asked once more, shown back
with a stricter instruction; a reply that still states none (or is refused, or a call that
fails for good) is *unknown*, never a silent fail: kept or dropped by `filter.judge_unknown`,
with an excerpt of the reply as the reason. Each way a verdict was read is counted (`read.json`,
`read.prose`, `read.reask`, `read.unknown`). Calls go through `pipeline.teacher.TeacherClient`,
whose replay cache makes a re-filter cost nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pipeline.lenient import last_object, strip_special_tokens
from prompts import load_prompt

JudgeKind = Literal["answer", "step", "image", "final"]
VerdictWord = Literal["pass", "fail", "unknown"]
#: How a verdict was read: a JSON object, prose, the answer to the one re-ask, or not at all.
ReadBy = Literal["json", "prose", "reask", "unknown", "none"]  # none: decided without a reply
READ_BY: tuple[ReadBy, ...] = ("json", "prose", "reask", "unknown")
#: The re-ask after a reply with no readable verdict: the reply is shown, then this.
REASK = (
    "I could not read a verdict in your reply. Answer again with exactly one JSON object and nothing "
    'else: {"verdict": "pass", "reason": "<one sentence>"} or {"verdict": "fail", "reason": "<one sentence>"}.'
)
_MAX_TEXT = 6000  # characters of an observation sent to a judge
_LOG = logging.getLogger("trajforge.filter")

#: `response_format` for endpoints with structured output (OpenAI, vLLM/SGLang guided decoding).
RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "verdict": {"type": "string", "enum": ["pass", "fail"]},
                "reason": {"type": "string"},
            },
            "required": ["verdict", "reason"],
            "additionalProperties": False,
        },
    },
}

_PASS_WORDS = {
    "pass", "passed", "passes", "yes", "y", "true", "correct", "consistent", "supported", "equivalent",
    "match", "matches", "same", "valid", "ok", "okay", "accept", "accepted", "agree", "agrees", "good", "1",
}  # fmt: skip
_FAIL_WORDS = {
    "fail", "failed", "fails", "no", "n", "false", "incorrect", "inconsistent", "unsupported", "not supported",
    "not equivalent", "not consistent", "not correct", "mismatch", "different", "invalid", "reject", "rejected",
    "disagree", "contradicts", "contradiction", "contradictory", "wrong", "bad", "0",
}  # fmt: skip
#: `Verdict: PASS`, `**verdict**: fail` in prose (not `verdict: pass or fail`, a prompt echoed).
_LOOSE = re.compile(
    r"""\bverdict\b["'*_\s]*[:=]\s*["'*_]*\s*((?:not\s+)?[a-z]+)\b(?!\s*(?:or\b|/|\|))""", re.IGNORECASE
)
#: A reply (or line) that opens with its decision: "Yes, ...", "**No.** ...", "Fail: ...",
#: "Inconsistent - ...", "Not supported." (`(?!...)` keeps "No issues ..." and "No, wait" out).
_LEADING = re.compile(
    r"""^[\s>*_#"'`(\[-]*(?:final\s+(?:answer|verdict)\s*[:\-]\s*[*_"'`]*)?"""
    r"""(yes|no|pass(?:ed|es)?|fail(?:ed|s)?|true|false|correct|incorrect|consistent|inconsistent"""
    r"""|supported|unsupported|not\s+(?:supported|consistent|correct)|valid|invalid)\b"""
    r"""(?![ \t]*(?:issues?|problems?|errors?|contradictions?|discrepanc|mismatch|wait|doubt|,\s*wait))""",
    re.IGNORECASE,
)


class ChatClient(Protocol):
    async def chat(self, messages: list[dict[str, Any]], **overrides: Any) -> Any: ...


@dataclass(frozen=True)
class JudgeResult:
    """What one judge call decided.

    `verdict` is what the judge said (`unknown`: no verdict could be read, or the call failed);
    `passed` is what a check acts on: a pass, or an unknown kept by `filter.judge_unknown=keep`.
    `reason` is the judge's reason, or for an unknown what happened and an excerpt of the reply.
    """

    verdict: VerdictWord
    reason: str
    passed: bool
    repairs: tuple[str, ...] = ()
    read: ReadBy = "json"

    @property
    def unknown(self) -> bool:
        return self.verdict == "unknown"

    @property
    def note(self) -> str:
        """The reason worth keeping on a step the judge let through ("" for a plain pass)."""
        return "" if self.verdict == "pass" else self.reason


def normalise_verdict(value: Any) -> Literal["pass", "fail"] | None:
    """`pass`/`fail` from the words judges use (yes/no, true/false, correct/incorrect, ...)."""
    if isinstance(value, bool):
        return "pass" if value else "fail"
    if isinstance(value, int | float) and value in (0, 1):
        return "pass" if value == 1 else "fail"
    if not isinstance(value, str):
        return None
    word = " ".join(re.sub(r"[^a-z0-9]+", " ", value.casefold()).split())
    if word in _PASS_WORDS:
        return "pass"
    if word in _FAIL_WORDS:
        return "fail"
    return None


def excerpt(text: str, limit: int = 200) -> str:
    """Head and tail of a reply (a reasoning judge's decision is usually at the end)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = limit // 3
    return f"{text[:head]} [...] {text[-(limit - head - 7) :]}"


def read_verdict(
    content: str,
    reasoning: str = "",
    *,
    finish_reason: str | None = None,
    refusal: str | None = None,
) -> JudgeResult:
    """A verdict from a reply's content, else its reasoning; `unknown` (passed=False) if none."""
    content, leaked = strip_special_tokens(content or "")
    reasoning, leaked_too = strip_special_tokens(reasoning or "")
    tokens = ("special_tokens",) if leaked or leaked_too else ()
    for source, text in (("content", content), ("reasoning", reasoning)):
        if not text.strip():
            continue
        where = (*tokens, *(("verdict_in_reasoning",) if source == "reasoning" else ()))
        for key in ("verdict", "Verdict"):
            read = last_object(text, has_key=key)
            if not read.ok:
                continue
            value = read.value[key]
            repairs = (*read.repairs, *where)
            word = normalise_verdict(value)
            if word is None:
                return _unknown(f"verdict {str(value)[:40]!r} is neither pass nor fail", text, repairs)
            reason = str(read.value.get("reason", read.value.get("Reason", ""))).strip()[:300]
            return JudgeResult(word, reason, word == "pass", repairs)
        prose = _prose_verdict(text, whole=source == "content")
        if prose is not None:
            word, sentence = prose
            return JudgeResult(word, sentence, word == "pass", ("verdict_in_prose", *where), "prose")
    text = content or reasoning or ""
    if refusal:
        return _unknown(f"judge refused: {excerpt(refusal, 120)!r}", text)
    if finish_reason == "length":
        return _unknown("reply cut at max_tokens before a verdict (raise filter.judge_max_tokens)", text)
    if not text.strip():
        return _unknown("empty reply", text)
    return _unknown("no verdict in the reply", text)


#: A one-sentence reply that states the verdict as a predicate: "The thought is consistent with
#: the observation.", "The answer is not correct." (only for short replies: one claim in them).
_PREDICATE = re.compile(
    r"\b(?:is|are|was|seems|appears)\s+(not\s+|in)?(consistent|supported|correct|equivalent|valid)\b"
    r"|\b(inconsistent|unsupported|incorrect|contradicts|contradictory)\b",
    re.IGNORECASE,
)


def _predicate_verdict(text: str) -> Literal["pass", "fail"] | None:
    if len(text) > 300:
        return None
    words = set()
    for match in _PREDICATE.finditer(text):
        negated = bool(match.group(1)) or bool(match.group(3))
        words.add("fail" if negated else "pass")
    return words.pop() if len(words) == 1 else None  # type: ignore[return-value]


def _prose_verdict(text: str, *, whole: bool) -> tuple[Literal["pass", "fail"], str] | None:
    """(verdict, the sentence that said it) from prose: `verdict: X` anywhere, else what the
    reply's opening (`whole`: the content; a reasoning field's first line is where the judge
    starts thinking), its last line and, for a short reply, its predicate say, when they agree.
    "Yes, it mentions 1813, but the page is not supported" says both: no verdict (re-asked)."""
    loose = [m for m in _LOOSE.finditer(text) if normalise_verdict(m.group(1).strip())]
    if loose:
        return normalise_verdict(loose[-1].group(1).strip()), "verdict read from prose"  # type: ignore[return-value]
    lines = [line for line in text.strip().splitlines() if line.strip()]
    said: dict[str, str] = {}  # verdict -> the line that said it
    for line in ([lines[0]] if whole else []) + lines[-1:]:
        match = _LEADING.match(line)
        word = normalise_verdict(match.group(1)) if match else None
        if word is not None:
            said.setdefault(word, line)
    if whole and (word := _predicate_verdict(text.strip())) is not None:
        said.setdefault(word, text)
    if len(said) != 1:
        return None
    ((word, line),) = said.items()
    return word, f"verdict read from prose: {excerpt(line, 160)}"  # type: ignore[return-value]


def _unknown(why: str, text: str, repairs: tuple[str, ...] = ()) -> JudgeResult:
    reply = f": {excerpt(text)!r}" if text.strip() else ""
    return JudgeResult("unknown", f"{why}{reply}", False, repairs, "unknown")


def clip(text: str | None, limit: int = _MAX_TEXT) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + " [...]"


def _rejects_response_format(exc: BaseException) -> bool:
    """A 400/422 answer (the status an endpoint without json_schema support gives)."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "status_code", None) in (400, 422):
            return True
        seen = seen.__cause__
    return False


class Judge:
    """Asks one judge model; counts what it did (calls, verdicts, unknowns and why, repairs)."""

    def __init__(
        self,
        client: ChatClient,
        *,
        image_uri: Any = None,
        version: str | None = None,
        structured: bool = False,
        unknown: Literal["keep", "drop"] = "drop",
    ):
        self.client = client
        self.image_uri = image_uri  # ref -> data URI (CPU work; run in a thread)
        self.version = version
        self.structured = structured  # send response_format (until the endpoint refuses it)
        self.unknown_policy = unknown
        self.stats: Counter[str] = Counter()

    async def aclose(self) -> None:
        close = getattr(self.client, "aclose", None)
        if close is not None:
            await close()

    def system(self, kind: JudgeKind) -> str:
        return load_prompt(f"judge_{kind}", self.version).text

    def messages(
        self, kind: JudgeKind, payload: dict[str, Any], image_uri: str | None = None
    ) -> list[dict[str, Any]]:
        text = "```json\n" + json.dumps(payload, ensure_ascii=False, sort_keys=True) + "\n```"
        user: Any = text
        if image_uri is not None:
            user = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": image_uri}}]
        return [{"role": "system", "content": self.system(kind)}, {"role": "user", "content": user}]

    async def ask(
        self, kind: JudgeKind, payload: dict[str, Any], image_ref: str | None = None
    ) -> JudgeResult:
        self.stats[f"{kind}_calls"] += 1
        uri = None
        if image_ref is not None:
            if self.image_uri is None:
                return self._settle(kind, _unknown("image judge has no image store to read from", ""))
            try:
                uri = await asyncio.to_thread(self.image_uri, image_ref)
            except Exception as exc:  # an unreadable image is that step's problem, not the run's
                self.stats["errors"] += 1
                return self._settle(
                    kind, JudgeResult("fail", f"image unreadable for the judge: {exc}", False, read="none")
                )
        try:
            reply = await self._chat(self.messages(kind, payload, uri))
        except Exception as exc:  # TeacherError after retries, or a refused request
            self.stats["errors"] += 1
            why = f"judge call failed: {type(exc).__name__}: {str(exc)[:160]}"
            return self._settle(kind, JudgeResult("unknown", why, False, read="unknown"))
        result = _read(reply)
        # one re-ask for a reply with no readable verdict; not for a refusal, nor a reply cut at
        # max_tokens (a reasoning judge asked again thinks again and is cut again)
        if (
            result.unknown
            and not getattr(reply, "refusal", None)
            and getattr(reply, "finish_reason", None) != "length"
        ):
            result = await self._reask(kind, self.messages(kind, payload, uri), reply, result)
        return self._settle(kind, result)

    async def _reask(
        self, kind: JudgeKind, messages: list[dict[str, Any]], reply: Any, first: JudgeResult
    ) -> JudgeResult:
        """Once more, the reply shown back with a stricter instruction; `first` if that fails too."""
        self.stats["reasks"] += 1
        self.stats[f"{kind}_reasks"] += 1
        said = getattr(reply, "text", None) or getattr(reply, "reasoning", None) or "(empty reply)"
        again = [*messages, {"role": "assistant", "content": said}, {"role": "user", "content": REASK}]
        try:
            second = _read(await self._chat(again))
        except Exception as exc:  # the first reply's unknown stands, with why the re-ask failed
            self.stats["errors"] += 1
            return JudgeResult(
                "unknown",
                f"{first.reason}; re-ask failed: {type(exc).__name__}",
                False,
                first.repairs,
                "unknown",
            )
        if second.unknown:
            return JudgeResult(
                "unknown", f"{first.reason}; re-asked: {second.reason}", False, first.repairs, "unknown"
            )
        return JudgeResult(
            second.verdict, second.reason, second.passed, (*second.repairs, "reasked"), "reask"
        )

    async def _chat(self, messages: list[dict[str, Any]]) -> Any:
        """One call, with response_format while the endpoint takes it; a 400/422 to it is retried
        once without, and if that works the run stops sending it (counted)."""
        if not self.structured:
            return await self.client.chat(messages, temperature=0.0)
        try:
            return await self.client.chat(messages, temperature=0.0, response_format=RESPONSE_FORMAT)
        except Exception as exc:
            if not _rejects_response_format(exc):
                raise
            self.stats["structured_output_rejected"] += 1
            reply = await self.client.chat(messages, temperature=0.0)
            if self.structured:
                self.structured = False
                self.stats["structured_output_off"] = 1
                _LOG.warning(
                    "the judge endpoint refused response_format (%s); asking without it for the rest "
                    "of the run (set filter.judge_structured_output=false to skip the refusal)",
                    str(exc)[:160],
                )
            return reply

    def _settle(self, kind: JudgeKind, result: JudgeResult) -> JudgeResult:
        """Count the result and apply `filter.judge_unknown` to an unknown one."""
        self.stats[f"{kind}_{result.verdict}"] += 1
        if result.read != "none":
            self.stats[f"read.{result.read}"] += 1
        for repair in result.repairs:
            self.stats[f"repairs.{repair}"] += 1
        if not result.unknown:
            return result
        keep = self.unknown_policy == "keep"
        self.stats["unknown"] += 1
        self.stats["unknown_kept" if keep else "unknown_dropped"] += 1
        reason = (
            f"judge verdict unknown, {'kept' if keep else 'dropped'} "
            f"(filter.judge_unknown={self.unknown_policy}): {result.reason}"
        )
        return JudgeResult("unknown", reason, keep, result.repairs, "unknown")


def _read(reply: Any) -> JudgeResult:
    return read_verdict(
        getattr(reply, "text", None) or "",
        getattr(reply, "reasoning", None) or "",
        finish_reason=getattr(reply, "finish_reason", None),
        refusal=getattr(reply, "refusal", None),
    )


def build_judge(
    mode: Literal["teacher", "custom"],
    teacher_cfg: Any,
    filter_cfg: Any,
    *,
    cache_dir: Path,
    store: Any = None,
    base_url: str | None = None,
) -> Judge:
    """A Judge over `pipeline.teacher.TeacherClient`: the run's teacher or a custom endpoint."""
    from pipeline.chat import ImageEncoder
    from pipeline.teacher import TeacherClient

    if mode == "custom":
        if not filter_cfg.judge_base_url:
            raise ValueError("--judge custom needs filter.judge_base_url (an OpenAI-compatible /v1 URL)")
        cfg = teacher_cfg.model_copy(
            update={
                "base_url": filter_cfg.judge_base_url,
                "model": filter_cfg.judge_model or teacher_cfg.model,
                "api_key_env": filter_cfg.judge_key_env,
            }
        )
    else:
        cfg = teacher_cfg
    # a judge is never streamed and needs no stop sequence; its tokens are its own budget
    update: dict[str, Any] = {"temperature": 0.0, "max_tokens": filter_cfg.judge_max_tokens, "stream": False}
    cfg = cfg.model_copy(update=update)
    structured = filter_cfg.judge_structured_output
    if structured is None:
        structured = bool(getattr(cfg, "structured_output", False))
    client = TeacherClient(cfg, cache_dir=cache_dir, base_url=base_url or cfg.base_url)
    encoder = ImageEncoder(store.images if store is not None else None, cfg.image_max_pixels)
    return Judge(client, image_uri=encoder.data_uri, structured=structured, unknown=filter_cfg.judge_unknown)
