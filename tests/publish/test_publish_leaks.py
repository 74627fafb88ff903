"""Nothing of the host leaves a run: the guard, publish's refusal, the `leak` check, exports, SFT.

A run is built whose observation shows a host path (the checkout's), whose thought repeats a
secret (the value of a variable the config names through `*_env`) and whose answer holds the
run folder's path; every way out of the run must see them, and name the secret by its variable.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from filters.base import CheckContext
from filters.leak import LeakCheck
from filters.run_checks import CHECK_NAMES
from pipeline.cli import app
from pipeline.config import Config, load_config
from pipeline.leaks import CHECKOUT, LeakGuard
from pipeline.schema import Step, Trajectory
from pipeline.store import RunStore
from stages.publish.trainer_exports import export_run
from stages.tools.registry import tool_table
from tests.publish.publish_helpers import make_run

TOOLS = tool_table()  # what the checks judge calls against

SECRET = "sk-live-7f3a9c2e11b04d5e"
KEY_VAR = "TRAJFORGE_TEST_SERPER_KEY"


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The config names the key's variable (tools.search.serper_key_env); the value is set."""
    monkeypatch.setenv(KEY_VAR, SECRET)
    return ["--set", f"tools.search.serper_key_env={KEY_VAR}"]


def leaky(store: RunStore, *, secret: bool = True) -> Trajectory:
    """A deepresearch trajectory whose observation, thought and answer hold host strings."""
    host_file = f"{CHECKOUT}/worlds/default/corpus/images/The_Meadow.png"
    steps = [
        Step(
            index=0,
            think="Search the image.",
            action="tool_call",
            tool_name="image_search",
            arguments=json.dumps({"image_paths": ["image_0.png"]}),
            observation_text=f"Results for image_0.png:\n1. The Meadow\n   Link: http://world.trajforge.local/wiki/The_Meadow\n   Image: {host_file}",
        ),
        Step(
            index=1,
            think=f"The key {SECRET} worked, it is The Meadow." if secret else "It is The Meadow.",
            action="answer",
            answer=f"The Meadow (see {store.root.resolve()}/notes.txt)",
        ),
    ]
    return Trajectory(
        task_id="t-leaky",
        teacher="oracle",
        prompt_version="executor_deepresearch.v1",
        category="search",
        mode="deepresearch",
        question="Which place is this?",
        images=[],
        gold_answer="The Meadow",
        steps=steps,
        final_answer="The Meadow",
    )


def leaky_run(root: Path, *, secret: bool = True) -> RunStore:
    store = make_run(root, deep=2, gen=1, plans=1)
    store.write_records("kept", [leaky(store, secret=secret)], Trajectory)
    return store


def publish(run: Path, out: Path, *extra: str):
    return CliRunner().invoke(
        app, ["publish", "--run", str(run), "--repo", "me/demo", "--dry-run", "--out", str(out), *extra]
    )


# ------------------------------------------------------------------------------ the guard


def test_guard_needles_come_from_the_run_the_host_and_the_configs_env_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TF_JUDGE_KEY", "judge-secret-value-123")
    monkeypatch.setenv("TF_SHORT", "abc")
    cfg = load_config(overrides=["filter.judge_key_env=TF_JUDGE_KEY", "teacher.api_key_env=TF_SHORT"])
    guard = LeakGuard.for_run(tmp_path / "run", cfg)
    text = (
        f"a {CHECKOUT}/pipeline/x.py b {tmp_path}/run/raw c judge-secret-value-123 "
        "d /tmp/crop.png e /output/image_1.png f http://x.org/root/a g abc"
    )
    found = {(m.kind, m.label) for m in guard.scan(text)}
    assert ("path", "checkout") in found and ("path", "run folder") in found
    assert ("secret", "$TF_JUDGE_KEY (filter.judge_key_env)") in found
    assert len(found) == 3  # sandbox paths, a URL's path and a 3-char value are not host needles
    assert guard.secrets_too_short == ["TF_SHORT"]
    redacted = guard.redact(text)
    assert "judge-secret-value-123" not in redacted and str(CHECKOUT) not in redacted


def test_a_secret_inside_a_path_is_found_and_never_shown(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TF_HUB_KEY", "hf_abcdefgh12345678")
    guard = LeakGuard.for_run(tmp_path, load_config(overrides=["publish.token_env=TF_HUB_KEY"]))
    matches = guard.scan(f"cd {tmp_path}/hf_abcdefgh12345678/cache && ls")
    assert {m.kind for m in matches} == {"secret", "path"}  # the run folder did not swallow the key
    assert all("hf_abcdefgh12345678" not in m.describe(show=True) for m in matches)


def test_another_systems_sandbox_paths_are_data_not_leaks(tmp_path: Path) -> None:
    """`/tmp/in/image_0.png` in a foreign trajectory's code names that system's sandbox, not this host."""
    guard = LeakGuard.for_run(tmp_path / "run", Config())
    code = (
        "from PIL import Image\nim = Image.open('/tmp/in/image_0.png')\n"
        "im.crop((10, 20, 200, 240)).save('/tmp/out/crop.png')\nprint('/tmp/out/crop.png')\n"
        "data = open('/tmp/zz-not-on-this-host-4821/notes.txt').read()"
    )
    observation = '{"result": "/tmp/out/crop.png", "type": "code", "images": ["data:image/png;base64,iVBOR"]}'
    assert guard.scan(code) == [] and guard.scan(observation) == []
    step = Step(
        index=0,
        think="Crop the sign.",
        action="tool_call",
        tool_name="code",
        arguments=json.dumps({"code": code}),
        observation_text=observation,
    )
    answer = Step(index=1, think="The crop shows it.", action="answer", answer="The Meadow")
    imported = Trajectory(
        task_id="t-foreign", question="Which place?", steps=[step, answer], final_answer="The Meadow"
    )
    assert LeakCheck().run(imported, CheckContext(leaks=guard)).keep


def test_this_hosts_temporary_paths_are_leaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What exists under this machine's /tmp, and a process's own temporary folder, are the host's."""
    own = tempfile.mkdtemp(prefix="tf-leak-")  # exists on this machine, outside the run folder
    try:
        guard = LeakGuard.for_run(tmp_path / "run", Config())
        found = guard.scan(f"the world lives in {own}/corpus and runs in {tmp_path}/run/raw")
        assert {(m.label, m.found) for m in found} == {
            ("temporary folder", own),
            ("run folder", f"{tmp_path}/run"),
        }
    finally:
        os.rmdir(own)
    specific = (
        tmp_path / "job-7731" / "tmp"
    )  # TMPDIR pointing at a folder of this job: all of it is the host's
    specific.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(specific))
    guard = LeakGuard.for_run(None, Config())
    assert [(m.label, m.found) for m in guard.scan(f"saved to {specific}/x/crop.png")] == [
        ("temporary folder", str(specific))
    ]


def test_user_name_is_a_whole_word_needle_unless_generic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "alicewong")
    guard = LeakGuard.for_run(None, Config())
    assert [m.kind for m in guard.scan("ssh alicewong@box")] == ["user"]
    assert guard.scan("alicewongs and xalicewong") == []
    monkeypatch.setattr("getpass.getuser", lambda: "root")
    assert LeakGuard.for_run(None, Config()).scan("the square root of 4") == []


def test_scan_many_matches_scanning_each_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the one substring pass over a row must find what per-field scans find, and count the same
    monkeypatch.setenv("TF_JUDGE_KEY", "judge-secret-value-123")
    cfg = load_config(overrides=["filter.judge_key_env=TF_JUDGE_KEY"])
    fields = [
        ("think", "nothing of the host here"),
        ("observation_text", f"see {CHECKOUT}/pipeline/x.py and {CHECKOUT}/README.md"),
        ("answer", ""),
        ("error", "key judge-secret-value-123 rejected"),
        ("plan", "a sandbox path /output/image_1.png only"),
    ]
    many, each = LeakGuard.for_run(tmp_path, cfg), LeakGuard.for_run(tmp_path, cfg)
    assert many.scan_many(fields, row="r") == [
        each.scan(text, row="r", field_name=name) for name, text in fields
    ]
    assert many.counts == each.counts and many.counts.matches == 2
    clean = [(name, "nothing here") for name, _ in fields]
    assert many.scan_many(clean, row="r") == [[] for _ in clean]
    assert many.counts.fields == each.counts.fields + len(clean)


def test_a_needle_without_a_literal_is_always_scanned() -> None:
    from pipeline.leaks import Needle

    guard = LeakGuard(
        [Needle(r"token-\d{4}", "pattern only", "path"), Needle("abc/", "x", "path", literal="abc/")]
    )
    assert [m.label for m in guard.scan("a token-1234 b")] == ["pattern only"]
    assert [m.label for m in guard.scan_many([("t", "a token-1234 b")])[0]] == ["pattern only"]


# ------------------------------------------------------------------------------ publish


def test_dry_run_publish_refuses_naming_row_field_path_and_secret_variable(
    tmp_path: Path, secret_env: list[str]
) -> None:
    run, out = tmp_path / "run", tmp_path / "hub"
    leaky_run(run)
    result = publish(run, out, *secret_env)
    assert result.exit_code != 0
    text = result.output
    assert "publish refused" in text and "t-leaky" in text
    assert f"secret ${KEY_VAR} (tools.search.serper_key_env)" in text
    observation = next(line for line in text.splitlines() if "field messages[3].content" in line)
    assert (
        "path config world.dir" in observation and str(CHECKOUT) in observation
    )  # the world under the checkout
    assert "path run folder" in text  # the answer's path to a file of the run
    assert SECRET not in text
    assert not list(out.glob("data/*/*.parquet")), "nothing is written before the scan passes"

    allowed = publish(run, out, "--allow-paths", *secret_env)
    assert allowed.exit_code != 0 and "secret" in allowed.output and SECRET not in allowed.output


def test_allow_paths_publishes_host_paths_and_counts_the_scan(tmp_path: Path, secret_env: list[str]) -> None:
    run, out = tmp_path / "run", tmp_path / "hub"
    leaky_run(run, secret=False)
    assert publish(run, out, *secret_env).exit_code != 0
    result = publish(run, out, "--allow-paths", *secret_env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["scanned"]["rows"] == summary["rows"] == 5
    assert summary["scanned"]["matches"] == 2 and summary["scanned"]["chars"] > 1000


def test_clean_run_publishes_with_zero_matches(tmp_path: Path, secret_env: list[str]) -> None:
    run, out = tmp_path / "run", tmp_path / "hub"
    make_run(run)
    result = publish(run, out, *secret_env)
    assert result.exit_code == 0, result.output
    scanned = json.loads(result.output.strip().splitlines()[-1])["scanned"]
    assert scanned["matches"] == 0 and scanned["rows"] == 10 and scanned["fields"] > 10


# ------------------------------------------------------------------------------ filter, exports, sft


def test_leak_check_drops_a_thought_that_repeats_a_secret(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(KEY_VAR, SECRET)
    cfg = load_config(overrides=[f"tools.search.serper_key_env={KEY_VAR}"])
    store = RunStore(tmp_path / "run")
    ctx = CheckContext(tools=TOOLS, store=store, leaks=LeakGuard.for_run(store.root, cfg))
    verdict = LeakCheck().run(leaky(store), ctx)
    assert "leak" in CHECK_NAMES and not verdict.keep
    assert f"think holds secret ${KEY_VAR}" in verdict.reason and SECRET not in verdict.reason
    assert "observation_text holds path config world.dir" in verdict.reason
    assert "answer holds path run folder" in verdict.reason
    clean = leaky(store, secret=False).model_copy(
        update={"steps": [Step(index=0, action="answer", answer="x")]}
    )
    assert LeakCheck().run(clean, ctx).keep


def test_exports_leave_out_leaking_conversations(tmp_path: Path, secret_env: list[str], monkeypatch) -> None:
    store = leaky_run(tmp_path / "run")
    cfg = load_config(overrides=secret_env[1::2])
    for fmt in ("llamafactory", "ms-swift"):
        report = export_run(store, tmp_path / fmt, fmt, guard=LeakGuard.for_run(store.root, cfg))  # type: ignore[arg-type]
        assert len(report.skipped) == 1 and report.skipped[0].startswith(leaky(store).trajectory_id)
        assert "host-specific text" in report.skipped[0] and SECRET not in report.skipped[0]
        written = "".join(p.read_text() for p in (tmp_path / fmt).glob("*.jsonl"))
        assert written and str(CHECKOUT) not in written and SECRET not in written
