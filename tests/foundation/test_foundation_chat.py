"""Trajectory -> messages: R1V4 text in assistant turns, observations with images in place."""

from __future__ import annotations

from pipeline.chat import trajectory_messages
from pipeline.format import IMAGE_MARKER, parse_trajectory
from pipeline.schema import Step, Trajectory


def make() -> Trajectory:
    return Trajectory(
        task_id="t",
        question="What is written on the sign?",
        images=["img0"],
        steps=[
            Step(
                index=0,
                think="crop",
                action="tool_call",
                tool_name="code",
                arguments='{"code": "c"}',
                observation_text=f"Saved image_1.png: {IMAGE_MARKER}\nSaved image_2.png: {IMAGE_MARKER}",
                observation_images=["img1", "img2"],
            ),
            Step(index=1, think="read it", action="answer", answer="EXIT"),
        ],
    )


def test_user_observation_role_interleaves_images_and_renders_parseable_text() -> None:
    messages = trajectory_messages(make(), "SYSTEM")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[1]["content"][0] == {"type": "image", "image": "img0"}
    observation = messages[3]["content"]
    kinds = [item["type"] for item in observation]
    assert kinds == ["text", "image", "text", "image", "text"]
    assert observation[0]["text"] == "<observation>Saved image_1.png: "
    assert observation[-1]["text"] == "</observation>"
    flat = "".join(
        m["content"][0]["text"]
        if m["role"] == "assistant"
        else "".join(i.get("text", IMAGE_MARKER) for i in m["content"])
        for m in messages[2:]
    )
    parsed = parse_trajectory(flat)
    assert parsed.errors == [] and parsed.final_answer == "EXIT"


def test_tool_role_and_errors() -> None:
    trajectory = make()
    trajectory.steps[0].error = "timeout after 20 s"
    trajectory.steps[0].observation_images = ["img1"]  # fewer images than markers: text kept
    messages = trajectory_messages(trajectory, "S", observation_role="tool")
    tool = messages[3]
    assert tool["role"] == "tool"
    text = "".join(i.get("text", "") for i in tool["content"])
    assert "Error: timeout after 20 s" in text and "<observation>" not in text
    assert sum(i["type"] == "image" for i in tool["content"]) == 1 and IMAGE_MARKER in text


def test_training_prompt_is_the_inference_prompt() -> None:
    """SFT's first user turn is what the executor, planner and eval send (image names included):
    a student trained without `Images: image_0.png` never saw the names its thinking uses."""
    from pipeline.chat import prompt_messages
    from pipeline.schema import Task
    from stages.synth.plan import planner_messages

    trajectory = make()
    trajectory.images = ["img0", "img1"]
    task = Task(question=trajectory.question, images=trajectory.images, source="test")
    trained = trajectory_messages(trajectory, "S")[1]
    assert trained == prompt_messages("S", task.question, task.images)[1]
    assert trained == planner_messages(task)[1]
    assert trained["content"][-1]["text"].endswith("Images: image_0.png, image_1.png")
