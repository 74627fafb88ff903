"""Formatter: chat-template tokens, assistant-only labels, image token counts, drops."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from pipeline.chat import step_text
from pipeline.schema import Step, Trajectory
from stages.sft.formatter import IGNORE, Drop, Formatter, Sample, store_image_size, system_prompt
from stages.sft.model import build_model, tiny_config
from stages.sft.processor import build_tiny_processor
from stages.sft.synthetic import write_kept_set
from tests.reference import reference


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    store = write_kept_set(tmp_path_factory.mktemp("run"), 6)
    return store, store.read_records("kept", Trajectory)


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor(min_pixels=1024, max_pixels=16384)


def _with_pil(messages, store):
    return [
        {
            **m,
            "content": [
                {"type": "image", "image": store.images.open(i["image"]).convert("RGB")}
                if i["type"] == "image"
                else i
                for i in m["content"]
            ],
        }
        for m in messages
    ]


@pytest.mark.parametrize("role", ["user", "tool"])
def test_tokens_equal_processor_apply_chat_template(kept, processor, role):
    store, trajectories = kept
    fmt = Formatter(processor, max_len=8192, image_size=store_image_size(store), observation_role=role)
    for trajectory in trajectories:
        sample = fmt(trajectory)
        assert isinstance(sample, Sample)
        messages = _with_pil(fmt.messages(trajectory), store)
        out = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
        assert sample.input_ids == out["input_ids"][0].tolist()
        assert sample.image_grid_thw == out["image_grid_thw"].tolist()


def test_labels_cover_exactly_the_assistant_turns(kept, processor):
    store, trajectories = kept
    fmt = Formatter(processor, max_len=8192, image_size=store_image_size(store))
    tok = processor.tokenizer
    for trajectory in trajectories:
        sample = fmt(trajectory)
        trained = [t for t, label in zip(sample.input_ids, sample.labels, strict=True) if label != IGNORE]
        expected = "".join(step_text(step) + "<|im_end|>" for step in trajectory.steps)
        assert tok.decode(trained) == expected
        # every label is its own token, and nothing of the prompt or observations is trained
        assert all(label in (IGNORE, t) for t, label in zip(sample.input_ids, sample.labels, strict=True))
        untrained = tok.decode(
            [t for t, label in zip(sample.input_ids, sample.labels, strict=True) if label == IGNORE]
        )
        assert trajectory.question in untrained and "<observation>" not in tok.decode(trained)


def test_plan_mode_uses_planner_prompt(kept, processor):
    store, trajectories = kept
    fmt = Formatter(processor, max_len=8192, image_size=store_image_size(store))
    plan = next(t for t in trajectories if t.mode == "plan")
    general = next(t for t in trajectories if t.mode == "general")
    assert fmt.messages(plan)[0]["content"][0]["text"] == system_prompt("plan")
    assert fmt.messages(general)[0]["content"][0]["text"] == system_prompt("general")
    assert system_prompt("plan") != system_prompt("deepresearch")
    answer = json.loads(plan.steps[0].answer)
    assert isinstance(answer, list)


def test_image_tokens_match_image_features(kept, processor):
    store, trajectories = kept
    fmt = Formatter(processor, max_len=8192, image_size=store_image_size(store))
    model = build_model(tiny_config(processor.tokenizer))
    for trajectory in trajectories[:3]:
        sample = fmt(trajectory)
        images = [store.images.open(ref).convert("RGB") for ref in sample.images]
        pixels = processor.image_processor(images=images, return_tensors="pt")
        with torch.no_grad():
            features = model.model.get_image_features(pixels["pixel_values"], pixels["image_grid_thw"])
        n_features = sum(f.shape[0] for f in features.pooler_output)
        assert sample.input_ids.count(processor.image_token_id) == n_features > 0


def test_pixel_budget_and_overlong_drop(tmp_path, processor):
    from pipeline.store import RunStore

    store = RunStore(tmp_path)
    big = store.images.put_image(Image.new("RGB", (1600, 1200), (10, 20, 30)))
    traj = Trajectory(
        task_id="t-big",
        question="What is this?",
        images=[big],
        steps=[Step(index=0, think="Dark.", action="answer", answer="a dark image")],
    )
    fmt = Formatter(processor, max_len=8192, image_size=store_image_size(store))
    sample = fmt(traj)
    _, h, w = sample.image_grid_thw[0]
    assert (h * 16) * (w * 16) <= 16384 and sample.input_ids.count(processor.image_token_id) == h * w // 4
    short = Formatter(processor, max_len=sample.num_tokens - 1, image_size=store_image_size(store))
    dropped = short(traj)
    assert isinstance(dropped, Drop) and "too long" in dropped.reason


def test_unreadable_image_is_a_drop_not_a_crash(tmp_path, processor):
    from pipeline.store import RunStore

    store = RunStore(tmp_path)
    traj = Trajectory(
        task_id="t-x", question="q", images=["ab" * 32], steps=[Step(index=0, action="answer", answer="a")]
    )
    dropped = Formatter(processor, max_len=4096, image_size=store_image_size(store))(traj)
    assert isinstance(dropped, Drop) and "image" in dropped.reason


def test_sample_holding_a_host_path_or_secret_is_dropped(tmp_path, processor, monkeypatch):
    """The leak guard runs on the rendered conversation: a secret is named by its variable."""
    from pipeline.config import load_config
    from pipeline.leaks import LeakGuard
    from pipeline.store import RunStore

    monkeypatch.setenv("TF_FMT_TEST_KEY", "sk-fmt-0123456789")
    store = RunStore(tmp_path)
    guard = LeakGuard.for_run(tmp_path, load_config(overrides=["filter.judge_key_env=TF_FMT_TEST_KEY"]))
    fmt = Formatter(processor, max_len=8192, image_size=store_image_size(store), guard=guard)

    def answer(text):
        return Trajectory(
            task_id="t-leak", question="q", steps=[Step(index=0, think=text, action="answer", answer="a")]
        )

    assert isinstance(fmt(answer("Nothing of the host here.")), Sample)
    for text, named in (
        ("key sk-fmt-0123456789 used", "$TF_FMT_TEST_KEY"),
        (f"saved {tmp_path}/x.png", "run folder"),
    ):
        dropped = fmt(answer(text))
        assert isinstance(dropped, Drop) and dropped.reason.startswith("leak: ") and named in dropped.reason
        assert "sk-fmt-0123456789" not in dropped.reason


@pytest.mark.parametrize("role", ["user", "tool"])
def test_tiny_template_renders_like_the_official_qwen3_vl_template(kept, processor, role):
    template = reference("qwen3_vl.chat_template.jinja")  # skips without ../shared
    store, trajectories = kept
    official = build_tiny_processor(min_pixels=1024, max_pixels=16384, chat_template=template.read_text())
    ours = Formatter(processor, max_len=8192, image_size=store_image_size(store), observation_role=role)
    theirs = Formatter(official, max_len=8192, image_size=store_image_size(store), observation_role=role)
    for trajectory in trajectories:
        a, b = ours(trajectory), theirs(trajectory)
        assert a.input_ids == b.input_ids and a.labels == b.labels
        messages = _with_pil(ours.messages(trajectory), store)
        out = official.apply_chat_template(messages, tokenize=True, return_dict=True)
        assert a.input_ids == list(out["input_ids"][0])
