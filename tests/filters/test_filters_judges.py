"""Judges over the real TeacherClient against a loopback stub: protocol, verdicts merged into the
checks, replies cached (a re-filter makes no call); verdict reading (unreadable: unknown)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from filters.judges import build_judge, normalise_verdict, read_verdict
from filters.run_checks import run_filter
from pipeline.config import FilterConfig, TeacherConfig
from pipeline.schema import Step, Trajectory
from pipeline.store import RunStore
from prompts import load_prompt
from stages.tools.registry import tool_table


def judge_kind(system: str) -> str:
    """Which judge prompt a request was sent with (the stub reads it as a human would)."""
    return next(
        k
        for k in ("judge_answer", "judge_step", "judge_image", "judge_final")
        if load_prompt(k).text == system
    )


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ('{"verdict": "pass", "reason": "same entity"}', "pass"),
        ('Sure.\n```json\n{"verdict": "FAIL", "reason": "different"}\n```', "fail"),
        ('I think {"verdict": "pass"} overall', "pass"),
        ('{"verdict": "pass", "reason": "a"} On reflection: {"verdict": "fail", "reason": "b"}', "fail"),
        ('{"verdict": "pass", "reason": "trailing",}', "pass"),
        ("verdict: fail because the crop is blank", "fail"),
        ("**Verdict:** Correct.", "pass"),
        ('{"Verdict": false, "Reason": "no"}', "fail"),
        # the prompt's own template echoed is not a verdict
        ('Reply with {"verdict": "pass" or "fail"}. Verdict: pass or fail?', "unknown"),
        ('{"verdict": "partially"}', "unknown"),
        ("I cannot decide.", "unknown"),
    ],
)
def test_read_verdict(text: str, verdict: str) -> None:
    result = read_verdict(text)
    assert result.verdict == verdict and result.passed is (verdict == "pass")
    if verdict == "unknown":
        assert text[:20] in result.reason  # the excerpt of the reply is the reason


def test_read_verdict_prefers_content_then_reasoning_and_says_why_unknown() -> None:
    thinking = (
        'Consider both. {"verdict": "fail", "reason": "draft"} No: {"verdict": "yes", "reason": "same"}'
    )
    assert read_verdict("", thinking).verdict == "pass"
    assert "verdict_in_reasoning" in read_verdict("", thinking).repairs
    assert read_verdict('{"verdict": "fail", "reason": "c"}', thinking).verdict == "fail"
    cut = read_verdict("", "Let me look at the crop first, it shows", finish_reason="length")
    assert cut.verdict == "unknown" and "max_tokens" in cut.reason and "crop first" in cut.reason
    assert "refused" in read_verdict("", "", refusal="I can't help with that").reason


@pytest.mark.parametrize(
    ("word", "verdict"),
    [
        ("Yes", "pass"),
        ("consistent", "pass"),
        (True, "pass"),
        (1, "pass"),
        ("not_supported", "fail"),
        ("Inconsistent", "fail"),
        ("incorrect.", "fail"),
        (False, "fail"),
        ("maybe", None),
        (None, None),
    ],
)
def test_normalise_verdict(word: object, verdict: str | None) -> None:
    assert normalise_verdict(word) == verdict


class Stub:
    """A loopback OpenAI-compatible endpoint that judges by simple rules and records requests."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                text = stub.judge(body["messages"])
                reply = {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def judge(self, messages: list[dict]) -> str:
        kind = judge_kind(messages[0]["content"])
        payload = json.loads(re.search(r"```json\n(.*)\n```", messages[1]["content"], re.DOTALL).group(1))
        if kind == "judge_answer":
            ok = payload["predicted"] == "NYC" and payload["gold_answer"] == "New York City"
        elif kind == "judge_step":
            ok = "Arlo" not in payload["next_thought"] or "Arlo" in payload["observation_text"]
        else:
            ok = True
        return json.dumps({"verdict": "pass" if ok else "fail", "reason": f"stub {kind}"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    server = Stub()
    yield server
    server.close()


def _trajectory(case: str, think: str, answer: str, gold: str) -> Trajectory:
    steps = [
        Step(
            index=0,
            think="Search.",
            action="tool_call",
            tool_name="text_search",
            arguments=json.dumps({"queries": [f"q {case}"]}),
            observation_text="1. Velmora Dynamics builds drones",
        ),
        Step(index=1, think=think, action="answer", answer=answer),
    ]
    return Trajectory(
        task_id=f"t-{case}", question=f"Who? {case}", steps=steps, final_answer=answer, gold_answer=gold
    )


def test_judges_rescue_paraphrases_and_catch_unsupported_claims(tmp_path: Path, stub: Stub) -> None:
    store = RunStore(tmp_path / "run")
    store.write_records(
        "raw",
        [
            _trajectory("para", "It is the big apple.", "NYC", "New York City"),
            _trajectory(
                "claim", "The result shows Arlo Quen founded it.", "Velmora Dynamics", "Velmora Dynamics"
            ),
            _trajectory(
                "clean", "The result shows Velmora Dynamics.", "Velmora Dynamics", "Velmora Dynamics"
            ),
            _trajectory("wrong", "Hmm.", "Paris", "London"),
        ],
        Trajectory,
    )
    cfg = FilterConfig(judge="custom", judge_base_url=stub.url, judge_model="stub-judge", plan_samples=False)

    def run() -> dict[str, dict]:
        judge = build_judge(
            "custom", TeacherConfig(), cfg, cache_dir=store.root / "cache" / "judge", store=store
        )
        outcome = run_filter(store, cfg, judge=judge, progress=False, tools=tool_table())
        return {r["task_id"]: r for r in outcome.rows}

    rows = run()
    assert rows["t-para"]["keep"] and "judge" in rows["t-para"]["answer"]["steps"][0]["reason"]
    assert not rows["t-claim"]["keep"] and "judge: stub judge_step" in rows["t-claim"]["grounding"]["reason"]
    assert rows["t-clean"]["keep"]
    assert not rows["t-wrong"]["keep"]
    assert all(r["model"] == "stub-judge" and r["temperature"] == 0.0 for r in stub.requests)
    # rules dropped "wrong" already: its answer was judged (rules said mismatch) but no step judge ran
    kinds = [judge_kind(r["messages"][0]["content"]) for r in stub.requests]
    assert kinds.count("judge_step") == 3
    calls = len(stub.requests)
    again = run()
    assert len(stub.requests) == calls, "a re-filter must be served from the judge cache"
    assert {k: v["keep"] for k, v in again.items()} == {k: v["keep"] for k, v in rows.items()}
