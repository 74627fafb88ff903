"""The world's judges read the trajectory's content with the world's knowledge: a fact a thought
asserts after a crop must be in the observation or on the plate the crop can show."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.images import encode_png, read_image, to_data_uri
from world import load_tasks
from world.knowledge import Knowledge
from world.oracle import Message
from world.oracle_judges import judge_reply

CROP_OBS = "cropped (604, 412)\nSaved image_1.png: <image>"


def _task(world: Path, category: str):
    return next(
        t
        for t in load_tasks(world)
        if t.category == category and (category != "perception" or json.loads(t.meta)["kind"] == "zoom")
    )


def _crop_uri(task) -> str:
    x0, y0, x1, y1 = (round(v) for v in task.gold_region)
    crop = read_image(task.images[0]).crop((x0 - 30, y0 - 30, x1 + 30, y1 + 30))
    return to_data_uri(encode_png(crop.resize((crop.width * 4, crop.height * 4))))


def _judge(kb: Knowledge, kind: str, payload: dict, image: str | None = None) -> dict:
    message = Message("user", f"```json\n{json.dumps(payload)}\n```", [image] if image else [])
    return json.loads(judge_reply(kb, f"judge_{kind}", [message]))


def _after_crop(task, thought: str) -> dict:
    return {
        "question": task.question,
        "tool_name": "code",
        "arguments": {"code": "crop = img.crop((609, 892, 760, 995))"},
        "observation_text": CROP_OBS,
        "next_thought": thought,
    }


def test_step_judge_checks_facts_after_a_crop_too(small_world: Path) -> None:
    kb = Knowledge(small_world)
    emblem, plate = _task(small_world, "interleaved"), _task(small_world, "perception")
    honest = "The crop shows the framed emblem on its own; a reverse image search should identify it."
    assert _judge(kb, "step", _after_crop(emblem, honest))["verdict"] == "pass"
    made_up = "The observation also confirms that this entry was last revised in 1979. " + honest
    verdict = _judge(kb, "step", _after_crop(emblem, made_up))
    assert verdict["verdict"] == "fail" and "1979" in verdict["reason"]
    # the plate's code may be read off the crop (the image judge checks it is legible there)
    read = f"The processed crop shows the plate's code clearly: {plate.gold_answer}."
    assert _judge(kb, "step", _after_crop(plate, read))["verdict"] == "pass"
    assert (
        _judge(kb, "step", _after_crop(plate, "I will rotate the crop by 180 degrees."))["verdict"] == "pass"
    )


def test_image_judge_fails_text_the_plate_does_not_say(small_world: Path) -> None:
    kb = Knowledge(small_world)
    task = _task(small_world, "perception")
    uri = _crop_uri(task)
    claim = f"The processed crop shows the plate's code clearly: {task.gold_answer}."
    assert _judge(kb, "image", {"question": task.question, "next_thought": claim}, uri)["verdict"] == "pass"
    extra = claim + " The crop also shows a second line of text reading 'EXPORT 1907' beneath the code."
    verdict = _judge(kb, "image", {"question": task.question, "next_thought": extra}, uri)
    assert verdict["verdict"] == "fail" and "1907" in verdict["reason"]
    other = "Based on the evidence, the answer is ZZ-0000."
    assert _judge(kb, "image", {"question": task.question, "next_thought": other}, uri)["verdict"] == "fail"
