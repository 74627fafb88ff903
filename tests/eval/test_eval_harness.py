"""`trajforge eval` against a scripted OpenAI-compatible model over real HTTP: the reported
accuracy equals the truth exactly (letters in every shape, numbers, aliases, refusals, unreadable
turns), and a rerun scores nothing new with zero calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from typer.testing import CliRunner

from pipeline.cli import app
from stages.evaluate.evaluator import summarise, table_lines
from tests.eval.test_eval_loaders import png
from tests.fake_openai import Fault, completion

OPTIONS = ["red", "blue", "green", "yellow"]
UNREADABLE = "I am not sure what to do here."
# (question, gold letter, reply, correct): the reply is what the scripted model says
MCQ = [
    ("q01", "B", "<answer>B</answer>", True),
    ("q02", "C", "<think>The car is green.</think><answer>(C)</answer>", True),
    ("q03", "D", "<answer>D.</answer>", True),
    ("q04", "A", "<answer>A. red</answer>", True),
    ("q05", "B", "<answer>Option B</answer>", True),
    ("q06", "C", "<answer>The answer is C</answer>", True),
    ("q07", "D", "<answer>yellow</answer>", True),  # the option's text itself
    ("q08", "C", "<answer>B</answer>", False),
    ("q09", "B", "<answer>The answer is A</answer>", False),
    ("q10", "A", "refuse", False),
    ("q11", "B", UNREADABLE, False),  # unreadable on every turn: no answer
    ("q12", "C", "reasoning", True),  # the think in reasoning_content, the answer in content
]
# (question, answers (first is gold, the rest aliases), reply, correct)
OPEN = [
    ("o1", ["3.14"], "<answer>3.1416</answer>", True),
    ("o2", ["1900"], "<answer>1901</answer>", False),
    ("o3", ["New York City", "NYC"], "<answer>NYC</answer>", True),
    ("o4", ["Lyon"], "<answer>Paris</answer>", False),
    ("o5", ["42"], "reask", True),  # unreadable first, answers when re-asked
    ("o6", ["7"], "500", False),  # the server fails (transformers serve on malformed tool JSON)
]


def scripted(body: dict[str, Any]) -> Any:
    """Replies by the question the first user turn asks."""
    first = next(m for m in body["messages"] if m["role"] == "user")
    text = (
        first["content"]
        if isinstance(first["content"], str)
        else " ".join(p.get("text", "") for p in first["content"] if p.get("type") == "text")
    )
    last = body["messages"][-1]
    last_text = json.dumps(last["content"])
    for key, _gold, reply, _ok in [*MCQ, *OPEN]:
        if f"Question {key}?" in text:
            if reply == "refuse":
                return completion(None, refusal="I can't help with identifying that.")
            if reply == "reasoning":
                return completion("<answer>C</answer>", reasoning="The car is green, option C.")
            if reply == "500":
                return Fault(500, body='{"error": {"message": "malformed tool call JSON"}}')
            if reply == "reask":
                return "<answer>42</answer>" if "could not be used" in last_text else UNREADABLE
            return reply
    return UNREADABLE


def write_files(tmp_path: Path) -> tuple[Path, Path]:
    import base64

    b64 = base64.b64encode(png(24, 24)).decode()
    header = "index\timage\tquestion\tA\tB\tC\tD\tanswer\tcategory"
    lines = [header]
    for n, (key, gold, _reply, _ok) in enumerate(MCQ):
        image = b64 if n == 0 else "0"  # VLMEvalKit shares an image by index
        cat = "colour" if n % 2 else "position"
        lines.append("\t".join([str(n), image, f"Question {key}?", *OPTIONS, gold, cat]))
    tsv = tmp_path / "VStarBench.tsv"
    tsv.write_text("\n".join(lines) + "\n")
    (tmp_path / "img.png").write_bytes(png(10, 10))
    jsonl = tmp_path / "bc_vl_level1.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps({"question": f"Question {k}?", "image_path": "img.png", "answers": a})
            for k, a, _, _ in OPEN
        )
    )
    return tsv, jsonl


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_reported_accuracy_equals_truth_and_rerun_is_free(tmp_path: Path, fake_teacher) -> None:
    server = fake_teacher(scripted)
    tsv, jsonl = write_files(tmp_path)
    run = tmp_path / "run"
    common = [
        "--endpoint", server.base_url, "--model", "scripted", "--run", str(run), "--mode", "general",
        "--set", "synth.max_turns=3", "--set", "teacher.max_retries=0", "--set", "world.enabled=false",
    ]  # fmt: skip
    out = invoke("eval", "--data", str(tsv), *common).output
    invoke("eval", "--data", str(jsonl), *common)
    report = json.loads((run / "report.json").read_text())["eval"]

    truth = [ok for *_, ok in MCQ] + [ok for *_, ok in OPEN]
    assert report["questions"] == len(truth)
    assert report["accuracy"] == round(sum(truth) / len(truth), 4)
    assert report["by_benchmark"]["VStarBench"]["accuracy"] == round(sum(ok for *_, ok in MCQ) / len(MCQ), 4)
    assert report["by_benchmark"]["bc_vl_level1"]["accuracy"] == round(
        sum(ok for *_, ok in OPEN) / len(OPEN), 4
    )
    colour = [ok for n, (*_, ok) in enumerate(MCQ) if n % 2]
    assert report["by_split"]["VStarBench/colour"] == {
        "n": len(colour),
        "accuracy": round(sum(colour) / len(colour), 4),
    }
    assert report["refused"] == round(1 / len(truth), 4)
    assert report["failed"] == round(2 / len(truth), 4)  # q11 never answered, o6 got a 500
    assert "accuracy" in out and "format-valid turns" in out

    table = pq.read_table(run / "eval").to_pylist()
    rows = {r["question"].split("Question ")[1].split("?")[0]: r for r in table}
    for key, *_rest, ok in [*MCQ, *OPEN]:
        assert rows[key]["correct"] is ok, key  # per item, not only in total
    assert rows["q07"]["prediction"] == "yellow" and json.loads(rows["q07"]["options"])["D"] == "yellow"
    assert "Options:\nA. red\nB. blue" in rows["q01"]["question"]  # the options were shown
    assert rows["q10"]["status"] == "refused" and rows["q11"]["status"] == "turn_limit"
    assert rows["o5"]["steps"][0]["reasks"] == 1
    assert rows["o6"]["status"] == "failed" and "500" in rows["o6"]["failure_reason"]  # one item, not the run
    assert [s["action"] for s in rows["o6"]["steps"]] == ["invalid"]  # the model's failed turn

    calls = len(server.requests)
    out = invoke("eval", "--data", str(tsv), *common).output
    assert len(server.requests) == calls  # nothing asked again
    assert "0 scored now, 12 already scored" in out
    assert json.loads((run / "report.json").read_text())["eval"]["accuracy"] == report["accuracy"]


def test_avg_and_pass_at_k() -> None:
    def row(task: str, correct: bool) -> dict[str, Any]:
        step = {"action": "answer", "repairs": [], "tool_name": None, "error": None}
        return {
            "task_id": task, "rollout": 0, "benchmark": "b", "split": "", "correct": correct, "status": "answered",
            "steps": [step], "wall_s": 1.0, "prompt_tokens": 1, "completion_tokens": 1,
        }  # fmt: skip

    rows = [
        row("t1", True),
        row("t1", False),
        row("t2", False),
        row("t2", False),
        row("t3", True),
        row("t3", True),
    ]
    report = summarise(rows)
    assert report["avg@2"] == round((0.5 + 0 + 1) / 3, 4)
    assert report["pass@2"] == round(2 / 3, 4)
    assert report["accuracy"] == 0.5
    lines = table_lines({"student": report, "oracle": {**report, "accuracy": 1.0}})
    assert lines[0].split() == ["student", "oracle"] and any("pass@2" in line for line in lines)
    garbled = {**report, "tool_mix": {'arguments": "from PIL import Image\nimg = Image.open(': 1.0}}
    mix = next(line for line in table_lines({"student": garbled}) if line.startswith("tool mix"))
    assert mix.endswith('arguments": "from PIL i… 100%')
    many = {**report, "tool_mix": {f"t{i}": 0.1 for i in range(10)}}
    mix = next(line for line in table_lines({"student": many}) if line.startswith("tool mix"))
    assert mix.split(None, 2)[2] == "t0 10%, t1 10%, t2 10%, t3 10%, other 60%"


def test_answer_judge_rescues_open_answers_only(tmp_path: Path, fake_teacher) -> None:
    """--judge custom: asked only about open answers the rules call wrong; its pass counts."""
    judge_calls: list[dict[str, Any]] = []

    def judge(body: dict[str, Any]) -> Any:
        judge_calls.append(body)
        payload = body["messages"][-1]["content"]
        verdict = "pass" if "the French capital" in payload else "fail"
        return json.dumps({"verdict": verdict, "reason": "same place" if verdict == "pass" else "different"})

    replies = {
        "j1": "<answer>the French capital</answer>",  # a paraphrase no rule can match
        "j2": "<answer>Lyon</answer>",
        "j3": "<answer>Paris</answer>",
    }

    def model(body: dict[str, Any]) -> Any:
        first = json.dumps(body["messages"][1]["content"])
        return next(r for k, r in replies.items() if f"Question {k}?" in first)

    judge_server, model_server = fake_teacher(judge), fake_teacher(model)
    (tmp_path / "img.png").write_bytes(png(10, 10))
    data = tmp_path / "bc_vl_level1.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"question": f"Question {k}?", "image_path": "img.png", "answers": ["Paris"]})
            for k in replies
        )
    )
    run = tmp_path / "run"
    invoke(
        "eval", "--endpoint", model_server.base_url, "--model", "m", "--data", str(data), "--run", str(run),
        "--mode", "general", "--judge", "custom", "--set", f"filter.judge_base_url={judge_server.base_url}",
        "--set", "world.enabled=false", "--set", "teacher.max_retries=0",
    )  # fmt: skip
    rows = {r["question"]: r for r in pq.read_table(run / "eval").to_pylist()}
    assert len(judge_calls) == 2  # j3 matched by the rules: the judge is not asked
    assert rows["Question j1?"]["correct"] and rows["Question j1?"]["judged"]
    assert not rows["Question j2?"]["correct"] and not rows["Question j2?"]["judged"]
    assert rows["Question j3?"]["correct"] and not rows["Question j3?"]["judged"]
