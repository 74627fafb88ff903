"""Tasks with gold answers, gold plans (planner format) and gold paths (executor argument shapes).

A gold path is a list of steps `{think, tool_name, arguments, expect}`; the final step has
tool_name "answer". `expect` says how the oracle recognises that an observation did what the
step was for:
- `{"check": "region"}`: a produced image shows the task's gold region (scene pixels);
- `{"check": "label"}`: a produced image shows the plate's text upright, tall and contrasted
  enough to read;
- `{"check": "contains", "text": ...}`: the observation text contains a URL or a fact.
Image names follow the sandbox convention: inputs are image_0.png...; each produced image takes
the next number, so the gold path names the images the gold run produces (the oracle renames them
when a real run produced more).
"""

from __future__ import annotations

import json
import random
from typing import Any

from pipeline.plan_format import validate_plan
from pipeline.schema import Task
from pipeline.tool_spec import ToolSpec, ToolTable
from world.kg import Entity
from world.pages import page_url
from world.phrasings import perception_question, search_question
from world.scenes import Emblem, Plate, where

SOURCE = "world"
#: (attribute, question template with {x}) per entity type; {x} is the entity's description
ATTRIBUTE_QUESTIONS: dict[str, list[tuple[str, str]]] = {
    "person": [("born", "In what year was {x} born?"), ("occupation", "What was the occupation of {x}?")],
    "organisation": [
        ("founded", "In what year was {x} founded?"),
        ("employees", "How many people does {x} employ?"),
    ],
    "place": [("founded", "In what year was {x} founded?"), ("population", "What is the population of {x}?")],
    "species": [
        ("described", "In what year was {x} first described?"),
        ("length_mm", "How long, in millimetres, does {x} grow?"),
    ],
    "artwork": [
        ("year", "In what year was {x} completed?"),
        ("height_cm", "How tall, in centimetres, is {x}?"),
    ],
}
RELATION_PHRASES = {
    "birthplace": "the birthplace of {x}",
    "employer": "the employer of {x}",
    "founder": "the founder of {x}",
    "headquarters": "the town where {x} is headquartered",
    "habitat": "the place where {x} is found",
    "described_by": "the person who first described {x}",
    "creator": "the maker of {x}",
    "held_by": "the institution that holds {x}",
    "twin_town": "the twin town of {x}",
}
#: how a page refers to the entry a relation links to ("its twin town", "its describer")
RELATION_NOUN = {
    "birthplace": "birthplace",
    "employer": "employer",
    "founder": "founder",
    "headquarters": "headquarters",
    "habitat": "habitat",
    "described_by": "describer",
    "creator": "maker",
    "held_by": "holding institution",
    "twin_town": "twin town",
}
TYPE_NOUN = {
    "person": "person",
    "organisation": "organisation",
    "place": "place",
    "species": "species",
    "artwork": "artwork",
}


def start_clue(e: Entity) -> tuple[str, str]:
    """(indirect description, search query) that single out `e` by two attributes."""
    a = e.attributes
    if e.type == "person":
        return f"the {a['occupation']} born in {a['born']}", f"{a['occupation']} born {a['born']}"
    if e.type == "organisation":
        return f"the {a['industry']} founded in {a['founded']}", f"{a['industry']} founded {a['founded']}"
    if e.type == "place":
        return f"the {a['kind']} founded in {a['founded']}", f"{a['kind']} founded {a['founded']}"
    if e.type == "species":
        return (
            f"the {a['kind']} first described in {a['described']}",
            f"{a['kind']} first described {a['described']}",
        )
    return f"the {a['medium']} completed in {a['year']}", f"{a['medium']} completed {a['year']}"


def aliases_for(value: str) -> list[str]:
    out = []
    if value.isdigit() and len(value) > 3:
        out.append(f"{int(value):,}")
    if len(value) == 7 and value[2] == "-":  # plate code
        out += [value.replace("-", ""), value.replace("-", " ")]
    return out


def _step(
    think: str, tool: str, arguments: dict[str, Any], expect: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"think": think, "tool_name": tool, "arguments": arguments, "expect": expect or {}}


def _answer(think: str, answer: str) -> dict[str, Any]:
    return {"think": think, "tool_name": "answer", "arguments": {"answer": answer}, "expect": {}}


def crop_code(source: str, box: list[int], zoom: int, out: str) -> str:
    x0, y0, x1, y1 = box
    return (
        "from PIL import Image\n"
        f'img = Image.open("/input/{source}")\n'
        f"crop = img.crop(({x0}, {y0}, {x1}, {y1}))\n"
        f"crop = crop.resize((crop.width * {zoom}, crop.height * {zoom}), Image.Resampling.LANCZOS)\n"
        f'crop.save("/output/{out}")\n'
        'print("cropped", crop.size)\n'
    )


def rotate_code(source: str, degrees: int, out: str) -> str:
    return (
        "from PIL import Image\n"
        f'img = Image.open("/input/{source}")\n'
        f"img = img.rotate({degrees}, expand=True)\n"
        f'img.save("/output/{out}")\n'
        'print("rotated", img.size)\n'
    )


def enhance_code(source: str, out: str) -> str:
    return (
        "from PIL import Image, ImageOps\n"
        f'img = Image.open("/input/{source}").convert("RGB")\n'
        "img = ImageOps.autocontrast(img, cutoff=1)\n"
        f'img.save("/output/{out}")\n'
        'print("contrast stretched", img.size)\n'
    )


#: The planner's tools as the world's gold plans use them (the world knows R1V4's tools as any
#: outside teacher does: from the prompt, not from trajforge's code).
PLAN_TOOLS = ToolTable.of(
    [
        ToolSpec("image_search", plan_parameter="image_path"),
        ToolSpec("text_search", plan_parameter="query"),
        ToolSpec("web_visit", plan_parameter="url"),
        ToolSpec("code", plan_parameter="operation", runs_code=True),
    ]
)


def _plan(steps: list[dict[str, Any]], last: str) -> str:
    plan = [*steps, {"description": last, "tool_name": "none", "parameters": {}}]
    _, errors = validate_plan(plan, PLAN_TOOLS)
    if errors:
        raise AssertionError(f"gold plan invalid: {errors}")
    return json.dumps(plan, ensure_ascii=False)


def _task(
    category: str,
    mode: str,
    question: str,
    images: list[str],
    answer: str,
    plan: str,
    path: list[dict[str, Any]],
    region: list[float] | None,
    meta: dict[str, Any],
) -> Task:
    return Task(
        source=SOURCE,
        source_id=meta["id"],
        category=category,
        mode=mode,
        question=question,  # type: ignore[arg-type]
        images=images,
        gold_answer=answer,
        answer_aliases=aliases_for(answer),
        gold_plan=plan,
        gold_path=json.dumps(path, ensure_ascii=False),
        gold_region=region,
        meta=json.dumps(meta, sort_keys=True, ensure_ascii=False),
    )


def perception_task(scene_rel: str, plate: Plate, index: str) -> Task:
    """Read a tiny (zoom), turned (rotate) or faint (enhance) plate code."""
    question, phrasing = perception_question(
        plate.code, plate.colour, plate.kind == "enhance", f"perception-{index}"
    )
    x0, y0, x1, y1 = (round(v) for v in plate.box)
    if plate.kind == "enhance":
        box, zoom = [x0, y0, x1, y1], 4  # exact plate: autocontrast then stretches plate vs ink
    else:
        box, zoom = [x0 - 40, y0 - 40, x1 + 40, y1 + 40], 4
    region_desc = f"the {plate.colour} plate in the {where(plate.box)} area"
    path = [
        _step(
            f"The text on {region_desc} is far too small to read at this size; I will crop that area and zoom in {zoom}x.",
            "code",
            {"code": crop_code("image_0.png", box, zoom, "crop.png")},
            {"check": "label" if plate.kind == "zoom" else "region"},
        )
    ]
    plan = [
        {
            "description": f"Crop {region_desc} and zoom in {zoom}x",
            "tool_name": "code",
            "parameters": {"operation": f"crop box {box} of image_0.png and zoom {zoom}x"},
        }
    ]
    if plate.kind == "rotate":
        degrees = 90 * plate.quarter_turns
        path.append(
            _step(
                f"The zoomed crop shows the plate, but its lettering is turned; I will rotate the crop by {degrees} degrees.",
                "code",
                {"code": rotate_code("image_1.png", degrees, "upright.png")},
                {"check": "label"},
            )
        )
        plan.append(
            {
                "description": "Rotate [Crop from Step 1] so the lettering is upright",
                "tool_name": "code",
                "parameters": {"operation": f"rotate [Crop from Step 1] by {degrees} degrees"},
            }
        )
    elif plate.kind == "enhance":
        path.append(
            _step(
                "The zoomed crop shows the plate, but the lettering is too faint; I will stretch the contrast.",
                "code",
                {"code": enhance_code("image_1.png", "enhanced.png")},
                {"check": "label"},
            )
        )
        plan.append(
            {
                "description": "Enhance the contrast of [Crop from Step 1]",
                "tool_name": "code",
                "parameters": {"operation": "autocontrast [Crop from Step 1]"},
            }
        )
    path.append(_answer(f"The processed crop shows the plate's code clearly: {plate.code}.", plate.code))
    meta = {
        "id": f"perception-{index}",
        "kind": plate.kind,
        "quarter_turns": plate.quarter_turns,
        "plate_box": plate.box,
        "scene": scene_rel,
        "phrasing": phrasing,
    }
    return _task(
        "perception",
        "general",
        question,
        [scene_rel],
        plate.code,
        _plan(plan, "Read the code from the processed crop and report it"),
        path,
        [float(v) for v in plate.box],
        meta,
    )


def _visit_answer_steps(
    e: Entity, attr: str, first: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    url = page_url(e.slug)
    value = e.attributes[attr]
    path = [
        _step(
            f"The results point to the encyclopedia page of {e.name}; I will read it.",
            "web_visit",
            {"urls": [url]},
            {"check": "contains", "text": value},
        ),
        _answer(f"The page of {e.name} states the {attr.replace('_', ' ')}: {value}.", value),
    ]
    plan = [
        {
            "description": f"Visit the page found in Step {first} and read the {attr.replace('_', ' ')}",
            "tool_name": "web_visit",
            "parameters": {"url": f"[URL found in Step {first}]"},
        }
    ]
    return path, plan


def search_task(image_rel: str, e: Entity, rng: random.Random) -> Task:
    """Reverse-search the whole image, visit the page, answer an attribute."""
    attr, template = rng.choice(ATTRIBUTE_QUESTIONS[e.type])
    question, phrasing = search_question(template, TYPE_NOUN[e.type], f"search-{e.slug}-{attr}")
    url, value = page_url(e.slug), e.attributes[attr]
    path = [
        _step(
            "I do not recognise this emblem; a reverse image search should find where it appears.",
            "image_search",
            {"image_paths": ["image_0.png"]},
            {"check": "contains", "text": url},
        )
    ]
    visit, visit_plan = _visit_answer_steps(e, attr, 1)
    path += visit
    plan = [
        {
            "description": "Reverse image search the emblem",
            "tool_name": "image_search",
            "parameters": {"image_path": "image_0.png"},
        },
        *visit_plan,
    ]
    meta = {"id": f"search-{e.slug}-{attr}", "entity": e.slug, "attribute": attr, "phrasing": phrasing}
    return _task(
        "search",
        "deepresearch",
        question,
        [image_rel],
        value,
        _plan(plan, f"Check the {attr.replace('_', ' ')} on the page and answer"),
        path,
        None,
        meta,
    )


def interleaved_task(scene_rel: str, emblem: Emblem, e: Entity, rng: random.Random) -> Task:
    """Crop one framed emblem out of a scene, reverse-search the crop, visit, answer."""
    attr, template = rng.choice(ATTRIBUTE_QUESTIONS[e.type])
    question = (
        f"In this picture, the emblem inside the {emblem.frame} frame ({where(emblem.box)} area) represents an entry "
        "in the World Encyclopedia. " + template.format(x=f"the {TYPE_NOUN[e.type]} it represents")
    )
    box = [round(v) for v in emblem.box]
    url, value = page_url(e.slug), e.attributes[attr]
    path = [
        _step(
            f"The emblem in the {emblem.frame} frame is small; I will crop it out so I can search for it.",
            "code",
            {"code": crop_code("image_0.png", box, 2, "emblem.png")},
            {"check": "region"},
        ),
        _step(
            "The crop shows the framed emblem on its own; a reverse image search of the crop should identify it.",
            "image_search",
            {"image_paths": ["image_1.png"]},
            {"check": "contains", "text": url},
        ),
    ]
    visit, visit_plan = _visit_answer_steps(e, attr, 2)
    path += visit
    plan = [
        {
            "description": f"Crop the emblem in the {emblem.frame} frame",
            "tool_name": "code",
            "parameters": {"operation": f"crop box {box} of image_0.png and zoom 2x"},
        },
        {
            "description": "Reverse image search [Cropped emblem from Step 1]",
            "tool_name": "image_search",
            "parameters": {"image_path": "[Cropped emblem from Step 1]"},
        },
        *visit_plan,
    ]
    meta = {"id": f"interleaved-{e.slug}-{attr}", "entity": e.slug, "attribute": attr, "frame": emblem.frame}
    return _task(
        "interleaved",
        "deepresearch",
        question,
        [scene_rel],
        value,
        _plan(plan, f"Check the {attr.replace('_', ' ')} on the page and answer"),
        path,
        [float(v) for v in emblem.box],
        meta,
    )


def multihop_task(
    chain: list[tuple[str | None, Entity]], attr: str, image_rel: str | None, template: str
) -> Task:
    """Walk links; each entity is named only by how it relates to the previous one."""
    first = chain[0][1]
    if image_rel:
        description = f"the {TYPE_NOUN[first.type]} whose emblem is shown in the image"
    else:
        description, query = start_clue(first)
    for relation, _ in chain[1:]:
        description = RELATION_PHRASES[relation or ""].format(x=description)
    last = chain[-1][1]
    value = last.attributes[attr]
    question = template.format(x=description)
    question = question[0].upper() + question[1:]
    path: list[dict[str, Any]] = []
    plan: list[dict[str, Any]] = []
    if image_rel:
        path.append(
            _step(
                "I need to identify the emblem first; a reverse image search should find its page.",
                "image_search",
                {"image_paths": ["image_0.png"]},
                {"check": "contains", "text": page_url(first.slug)},
            )
        )
        plan.append(
            {
                "description": "Reverse image search the emblem",
                "tool_name": "image_search",
                "parameters": {"image_path": "image_0.png"},
            }
        )
    else:
        path.append(
            _step(
                f"The question starts from {start_clue(first)[0]}; I will search for it.",
                "text_search",
                {"queries": [query]},
                {"check": "contains", "text": page_url(first.slug)},
            )
        )
        plan.append(
            {
                "description": f"Search for {start_clue(first)[0]}",
                "tool_name": "text_search",
                "parameters": {"query": query},
            }
        )
    # Later pages are visited straight from the link read on the previous page (the infobox
    # shows each link's URL): H hops take 1 search + H + 1 visits + the final step, so 4 hops fit
    # the planner's 10-step limit (searching each name again would need 2H + 3).
    for hop, (_, entity) in enumerate(chain):
        url = page_url(entity.slug)
        nxt = chain[hop + 1] if hop + 1 < len(chain) else None
        relation = RELATION_NOUN.get(nxt[0] or "", "link") if nxt else ""
        if hop == 0:
            think = f"The results include the page of {entity.name}; I will read it"
            source = f"[URL found in Step {len(plan)}]"
        else:
            linked_as = RELATION_NOUN.get(chain[hop][0] or "", "link")
            think = f"The page of {chain[hop - 1][1].name} links to its {linked_as}, {entity.name}, at {url}; I will visit it"
            source = f"[URL of the {linked_as} found in Step {len(plan)}]"
        if nxt:
            think += f" to find its {relation}."
            want = page_url(nxt[1].slug)  # the link the next visit follows
            goal = f"its {relation} and that page's URL"
        else:
            think += f" to find the {attr.replace('_', ' ')}."
            want, goal = value, f"the {attr.replace('_', ' ')}"
        path.append(_step(think, "web_visit", {"urls": [url]}, {"check": "contains", "text": want}))
        plan.append(
            {
                "description": f"Visit {source} and find {goal}",
                "tool_name": "web_visit",
                "parameters": {"url": source},
            }
        )
    path.append(_answer(f"The page of {last.name} gives the {attr.replace('_', ' ')}: {value}.", value))
    slugs = [e.slug for _, e in chain]
    meta = {
        "id": "multihop-" + "-".join(slugs) + f"-{attr}",
        "chain": slugs,
        "relations": [r for r, _ in chain[1:]],
        "attribute": attr,
        "hops": len(chain) - 1,
    }
    return _task(
        "multihop",
        "deepresearch",
        question,
        [image_rel] if image_rel else [],
        value,
        _plan(plan, "Check the chain of entities and answer"),
        path,
        None,
        meta,
    )
