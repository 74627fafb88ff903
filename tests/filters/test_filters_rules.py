"""Rule checks on hand-built trajectories: crops from code, answers, plan alignment, images,
grounding, last thought vs answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from filters.answer_check import AnswerCheck, answers_match
from filters.base import CheckContext
from filters.crops import Box, crops_in_code
from filters.final_answer import FinalAnswerCheck
from filters.grounding import GroundingCheck
from filters.image_thought import ImageThoughtCheck
from filters.plan_alignment import PlanAlignmentCheck
from pipeline.config import FilterConfig
from pipeline.schema import Step, Trajectory
from pipeline.store import RunStore
from stages.tools.registry import tool_table

TOOLS = tool_table()  # what the checks judge calls against


def call(
    index: int,
    tool: str,
    args: dict,
    *,
    think: str = "Next step.",
    obs: str = "ok",
    images=(),
    plan_step=None,
) -> Step:
    return Step(
        index=index,
        think=think,
        action="tool_call",
        tool_name=tool,
        arguments=json.dumps(args),
        observation_text=obs,
        observation_images=list(images),
        plan_step=plan_step,
    )


def answer(index: int, text: str, think: str = "Done.") -> Step:
    return Step(index=index, think=think, action="answer", answer=text)


def traj(steps: list[Step], **kw) -> Trajectory:
    final = steps[-1].answer if steps and steps[-1].action == "answer" else None
    return Trajectory(
        task_id="t-1", question="Which company makes it?", steps=steps, final_answer=final, **kw
    )


@pytest.mark.parametrize(
    ("code", "box", "source"),
    [
        ("im = Image.open('/input/image_0.png')\nim.crop((10, 20, 30, 40))", Box(10, 20, 30, 40), 0),
        (
            "x, y = 100, 50\nw = 20\nbox = (x, y, x + w, y + 2 * w)\nImage.open(image_paths[1]).crop(box)",
            Box(100, 50, 120, 90),
            1,
        ),
        ("a = cv2.imread('/input/image_2.png')\nc = a[5:15, int(7.9):30]", Box(7, 5, 30, 15), 2),
        ("img.crop((1, 2, 3, 4)) this is not python (", Box(1, 2, 3, 4), None),
    ],
)
def test_crop_boxes_are_read_from_code(code: str, box: Box, source: int | None) -> None:
    crops = crops_in_code(code)
    assert [c.box for c in crops] == [box]
    assert crops[0].source == source


def test_crop_boxes_ignore_unknown_values() -> None:
    assert crops_in_code("im.crop(find_box(im))") == ()
    assert crops_in_code("im.crop((w // 2, 0, w, h))") == ()


@pytest.mark.parametrize(
    ("pred", "gold", "aliases", "expected"),
    [
        ("**The Eiffel Tower.**", "Eiffel Tower", [], True),
        ("1,234", "1234", [], True),
        ("12.05 cm", "12", [], True),
        ("13", "12", [], False),
        ("1100", "1097", [], False),  # whole numbers (years, counts) match exactly
        ("570", "566", [], False),
        ("1,756", "1756", [], True),
        ("3.14", "3.1416", [], True),  # measurements match within the tolerance
        ("3.5", "3.1416", [], False),
        ("three", "3", [], True),
        ("-5", "5", [], False),
        ("NYC", "New York City", ["NYC"], True),
        ("Paris", "London", [], False),
        ("", "London", [], False),
    ],
)
def test_answers_match(pred: str, gold: str, aliases: list[str], expected: bool) -> None:
    assert answers_match(pred, gold, aliases) is expected


def test_answer_without_gold_is_kept_unless_required() -> None:
    t = traj([answer(0, "x")])
    assert AnswerCheck().run(t, CheckContext(tools=TOOLS)).keep
    assert not AnswerCheck().run(t, CheckContext(tools=TOOLS, config=FilterConfig(require_gold=True))).keep


def test_last_thought_contradicting_answer_is_dropped() -> None:
    bad = traj([answer(0, "Arlo Quen", think="So the final answer is Velmora Dynamics.")])
    good = traj([answer(0, "Velmora Dynamics", think="The answer is Velmora Dynamics, per the page.")])
    silent = traj([answer(0, "Arlo Quen", think="I have enough evidence.")])
    ctx = CheckContext(tools=TOOLS)
    assert not FinalAnswerCheck().run(bad, ctx).keep
    assert FinalAnswerCheck().run(good, ctx).keep
    assert FinalAnswerCheck().run(silent, ctx).keep


PLAN = json.dumps(
    [
        {"description": "crop", "tool_name": "code", "parameters": {"operation": "crop"}},
        {"description": "search", "tool_name": "image_search", "parameters": {"image_path": "x"}},
        {"description": "visit", "tool_name": "web_visit", "parameters": {"url": "[URL found in Step 2]"}},
        {"description": "verify", "tool_name": "none", "parameters": {}},
    ]
)


def test_plan_alignment_with_annotations() -> None:
    full = traj(
        [
            call(0, "code", {"code": "x"}, plan_step=1),
            call(1, "image_search", {"image_paths": ["image_1.png"]}, plan_step=2),
            call(2, "web_visit", {"urls": ["u"]}, plan_step=3),
            answer(3, "A"),
        ],
        plan=PLAN,
    )
    skipped = traj(
        [
            call(0, "code", {"code": "x"}, plan_step=1),
            call(1, "web_visit", {"urls": ["u"]}, plan_step=3),
            answer(2, "A"),
        ],
        plan=PLAN,
    )
    extra = traj(
        [
            call(0, "code", {"code": "x"}, plan_step=1),
            call(1, "text_search", {"queries": ["q"]}),
            call(2, "image_search", {"image_paths": ["i"]}, plan_step=2),
            call(3, "web_visit", {"urls": ["u"]}, plan_step=3),
            answer(4, "A"),
        ],
        plan=PLAN,
    )
    ctx = CheckContext(tools=TOOLS)
    check = PlanAlignmentCheck()
    assert check.run(full, ctx).keep and check.run(full, ctx).score == 1.0
    verdict = check.run(skipped, ctx)
    assert not verdict.keep and "skipped plan step 2 (image_search)" in verdict.reason
    verdict = check.run(extra, ctx)
    assert verdict.keep and verdict.score == pytest.approx(3 / 4)


def test_plan_alignment_without_annotations_uses_tool_order() -> None:
    t = traj(
        [call(0, "code", {"code": "x"}), call(1, "web_visit", {"urls": ["u"]}), answer(2, "A")], plan=PLAN
    )
    verdict = PlanAlignmentCheck().run(t, CheckContext(tools=TOOLS))
    assert not verdict.keep and "image_search" in verdict.reason


def _store_with_scene(tmp_path: Path) -> tuple[RunStore, str, str, str]:
    store = RunStore(tmp_path)
    rng = np.random.default_rng(0)
    scene = Image.fromarray(rng.integers(0, 255, size=(400, 400, 3), dtype=np.uint8))
    scene_ref = store.images.put_image(scene)
    good_ref = store.images.put_image(scene.crop((100, 100, 200, 200)))
    blank_ref = store.images.put_image(Image.new("RGB", (100, 100), (250, 250, 250)))
    return store, scene_ref, good_ref, blank_ref


CROP = "from PIL import Image\nim = Image.open('/input/image_0.png')\nim.crop(({}, {}, {}, {})).save('/output/c.png')"


def test_blank_crop_followed_by_a_claim_is_dropped_but_an_admitted_miss_is_kept(tmp_path: Path) -> None:
    store, scene, good, blank = _store_with_scene(tmp_path)
    ctx = CheckContext(tools=TOOLS, store=store)
    code = {"code": CROP.format(100, 100, 200, 200)}
    claim = traj(
        [call(0, "code", code, images=[blank]), answer(1, "A", think="The label clearly reads Quill.")],
        images=[scene],
    )
    admit = traj(
        [
            call(0, "code", code, images=[blank]),
            answer(1, "A", think="The crop is blank; try another region."),
        ],
        images=[scene],
    )
    fine = traj(
        [call(0, "code", code, images=[good]), answer(1, "A", think="The label reads Quill.")], images=[scene]
    )
    check = ImageThoughtCheck()
    verdict = check.run(claim, ctx)
    assert not verdict.keep and "near-uniform" in verdict.reason
    assert check.run(admit, ctx).keep
    assert check.run(fine, ctx).keep


def test_crop_missing_gold_region_or_outside_the_image(tmp_path: Path) -> None:
    store, scene, good, _ = _store_with_scene(tmp_path)
    ctx = CheckContext(tools=TOOLS, store=store)
    gold = [300.0, 300.0, 380.0, 380.0]
    miss = traj(
        [
            call(0, "code", {"code": CROP.format(100, 100, 200, 200)}, images=[good]),
            answer(1, "A", think="It reads Quill."),
        ],
        images=[scene],
        gold_region=gold,
    )
    hit = traj(
        [
            call(0, "code", {"code": CROP.format(280, 280, 400, 400)}, images=[good]),
            answer(1, "A", think="It reads Quill."),
        ],
        images=[scene],
        gold_region=gold,
    )
    outside = traj(
        [
            call(0, "code", {"code": CROP.format(390, 390, 900, 900)}, images=[good]),
            answer(1, "A", think="It reads Quill."),
        ],
        images=[scene],
    )
    check = ImageThoughtCheck()
    assert "misses the gold region" in check.run(miss, ctx).reason
    assert check.run(hit, ctx).keep
    assert "outside image_0" in check.run(outside, ctx).reason


def test_grounding_rules() -> None:
    obs = "1. Velmora Dynamics\nhttps://example.org/velmora"
    supported = traj(
        [
            call(0, "text_search", {"queries": ["q"]}, obs=obs),
            answer(1, "A", think='The page titled "Velmora Dynamics" at https://example.org/velmora.'),
        ]
    )
    made_up = traj(
        [
            call(0, "text_search", {"queries": ["q"]}, obs=obs),
            answer(1, "A", think='The result titled "Arlo Quen Labs" settles it.'),
        ]
    )
    bad_url = traj(
        [
            call(0, "text_search", {"queries": ["q"]}, obs=obs),
            answer(1, "A", think="See https://other.org/x for details."),
        ]
    )
    after_error = traj(
        [
            Step(**{**call(0, "web_visit", {"urls": ["u"]}, obs="").model_dump(), "error": "HTTP 404"}),
            answer(1, "A", think="The page confirms it."),
        ]
    )
    ctx = CheckContext(tools=TOOLS)
    check = GroundingCheck()
    assert check.run(supported, ctx).keep
    assert "Arlo Quen Labs" in check.run(made_up, ctx).reason
    assert "other.org" in check.run(bad_url, ctx).reason
    assert "failed or empty web_visit" in check.run(after_error, ctx).reason


def test_shifted_same_size_retries_after_a_miss_are_a_recrop_loop() -> None:
    from filters.redundancy import RedundancyCheck

    boxes = [(491, 260, 651, 420), (581, 460, 741, 620), (671, 260, 831, 420)]
    retry = "The crop missed the target; I will shift the box and crop again."
    loop = traj(
        [
            call(i, "code", {"code": CROP.format(*b)}, think=retry if i else "Crop the emblem.")
            for i, b in enumerate(boxes)
        ]
        + [answer(3, "A")]
    )
    tour = traj(
        [
            call(i, "code", {"code": CROP.format(*b)}, think=f"Now look at region {i}.")
            for i, b in enumerate(boxes)
        ]
        + [answer(3, "A")]
    )
    assert "re-cropping" in RedundancyCheck().run(loop, CheckContext(tools=TOOLS)).reason
    assert RedundancyCheck().run(tour, CheckContext(tools=TOOLS)).keep


def test_a_figure_the_thought_attributes_to_an_observation_must_have_appeared() -> None:
    obs = "| Founded | 1786 |\n| Employees | 2,362 |"
    visit = call(0, "web_visit", {"urls": ["u"]}, obs=obs)

    def verdict(think: str):
        return GroundingCheck().run(traj([visit, answer(1, "A", think=think)]), CheckContext(tools=TOOLS))

    assert verdict("The page states the employees: 2362, founded 1786.").keep
    made_up = verdict("The observation also confirms that this entry was last revised in 1979.")
    assert not made_up.keep and "1979" in made_up.reason
    assert verdict("So it was founded 1979 years ago, I guess.").keep  # not attributed to a text


def test_text_read_off_a_produced_image_is_left_to_the_image_checks(tmp_path: Path) -> None:
    store, _, good, _ = _store_with_scene(tmp_path)
    think = 'The crop shows the sign; it reads "Main Street".'
    after_crop = traj(
        [
            call(0, "code", {"code": CROP.format(100, 100, 200, 200)}, images=[good]),
            answer(1, "A", think=think),
        ]
    )
    after_search = traj(
        [call(0, "text_search", {"queries": ["q"]}, obs="1. Elm Road"), answer(1, "A", think=think)]
    )
    ctx = CheckContext(tools=TOOLS, store=store)
    assert GroundingCheck().run(after_crop, ctx).keep
    assert "Main Street" in GroundingCheck().run(after_search, ctx).reason


def test_a_format_error_is_reported_once_under_its_step() -> None:
    from filters.format_check import FormatCheck

    error = "turn 0: bad tool_call JSON (Expecting property name at char 75)"
    broken = Step(index=0, think="Crop it.", action="invalid", format_errors=[error])
    t = traj([broken, answer(1, "A")], format_errors=[f"step 0: {error}"])
    reason = FormatCheck().run(t, CheckContext(tools=TOOLS)).reason
    assert reason.count("bad tool_call JSON") == 1
    assert reason.startswith("step 0: bad tool_call JSON") and "turn 0" not in reason


def test_repaired_turns_are_kept_up_to_max_repairs_and_unreadable_ones_dropped() -> None:
    from filters.format_check import FormatCheck

    def call(index: int, repairs: list[str]) -> Step:
        return Step(
            index=index,
            think="Crop it.",
            action="tool_call",
            tool_name="code",
            arguments='{"code": "crop"}',
            repairs=repairs,
        )

    repaired = traj([call(0, ["json_fence"]), call(1, ["trailing_comma"]), answer(2, "A")])
    verdict = FormatCheck().run(repaired, CheckContext(tools=TOOLS, config=FilterConfig(max_repairs=2)))
    assert verdict.keep and verdict.steps[0].reason == "repaired: json_fence"
    strict = FormatCheck().run(repaired, CheckContext(tools=TOOLS, config=FilterConfig(max_repairs=1)))
    assert not strict.keep and "2 repaired turns (more than filter.max_repairs=1)" in strict.reason
    unreadable = Step(
        index=0, think="", action="invalid", format_errors=["turn 0: no <tool_call> or <answer> found"]
    )
    dropped = FormatCheck().run(traj([unreadable, answer(1, "A")]), CheckContext(tools=TOOLS))
    assert not dropped.keep and "no <tool_call> or <answer> found" in dropped.reason


@pytest.mark.parametrize(
    ("tool", "arguments", "problem"),
    [
        ("code", {"code": "   "}, "does not match"),  # blank
        ("code", {"code": "x", "timeout": 3}, "'timeout' was unexpected"),
        ("code", {"source": "x"}, "'code' is a required property"),
        ("text_search", {"queries": []}, "should be non-empty"),
        ("text_search", {"queries": "one query"}, "is not of type 'array'"),
        ("text_search", {"queries": ["ok", ""]}, "queries/1"),
    ],
)
def test_built_in_tools_arguments_are_checked_against_their_strict_schema(tool, arguments, problem) -> None:
    from filters.format_check import FormatCheck

    bad_call = call(0, tool, arguments)
    verdict = FormatCheck().run(traj([bad_call, answer(1, "A")]), CheckContext(tools=TOOLS))
    assert not verdict.keep and problem in verdict.steps[0].reason, verdict.steps[0].reason
    fine = call(0, tool, {"code": "x"} if tool == "code" else {"queries": ["a b"]})
    assert FormatCheck().run(traj([fine, answer(1, "A")]), CheckContext(tools=TOOLS)).keep
