"""World build: determinism, on-disk contracts, task shapes, and measured legibility."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from pipeline.images import encode_png, fit_pixels, read_image
from pipeline.plan_format import parse_plan
from world import build_world, is_built, load_entities, load_tasks, manifest
from world.knowledge import Knowledge
from world.tasks import PLAN_TOOLS
from world.vision import LEGIBLE_TEXT_PX, MIN_CONTRAST, label_text_height

TEACHER_PIXELS = 1_048_576  # teacher.image_max_pixels default


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = build_world(tmp_path / "a", seed=3, entities=30, tasks=10, progress=False)
    b = build_world(tmp_path / "b", seed=3, entities=30, tasks=10, progress=False)
    c = build_world(tmp_path / "c", seed=4, entities=30, tasks=10, progress=False)
    assert _digest(a) == _digest(b)
    assert manifest(a)["content_hash"] == manifest(b)["content_hash"] != manifest(c)["content_hash"]


def test_corpus_files_match_the_search_contract(small_world: Path) -> None:
    assert is_built(small_world)
    pages = [json.loads(line) for line in (small_world / "corpus/pages.jsonl").read_text().splitlines()]
    images = [json.loads(line) for line in (small_world / "corpus/images.jsonl").read_text().splitlines()]
    entities = load_entities(small_world)
    assert len(pages) == len(images) == len(entities) == 40
    urls = {p["url"] for p in pages}
    for page in pages:
        assert set(page) == {"url", "title", "text"}
        assert page["url"].startswith("http://world.trajforge.local/wiki/") and page["title"] in page["text"]
    for row in images:
        assert set(row) == {"path", "page_url", "title"} and row["page_url"] in urls
        assert (small_world / "corpus" / row["path"]).is_file()
    html = (small_world / "corpus/html" / f"{next(iter(entities))}.html").read_text()
    assert 'class="infobox"' in html and "<p>" in html and 'href="http://world.trajforge.local/wiki/' in html


def test_every_fact_a_page_infobox_shows_is_also_in_its_prose(small_world: Path) -> None:
    pages = {
        json.loads(x)["url"].rsplit("/", 1)[1]: json.loads(x)["text"]
        for x in (small_world / "corpus/pages.jsonl").read_text().splitlines()
    }
    entities = load_entities(small_world)
    for slug, entity in entities.items():
        for value in entity.attributes.values():
            assert value in pages[slug], (slug, value)
        for target in entity.links.values():
            assert entities[target].name in pages[slug], (slug, target)


def test_tasks_have_gold_answers_plans_and_paths_in_executor_shapes(small_world: Path) -> None:
    tasks = load_tasks(small_world)
    assert {t.category for t in tasks} == {"perception", "search", "interleaved", "multihop"}
    shapes = {
        "code": {"code"},
        "image_search": {"image_paths"},
        "text_search": {"queries"},
        "web_visit": {"urls"},
    }
    entities = load_entities(small_world)
    for task in tasks:
        assert task.gold_answer and all(Path(p).is_absolute() and Path(p).is_file() for p in task.images)
        steps, errors = parse_plan(task.gold_plan or "", PLAN_TOOLS)
        assert not errors and steps[-1].tool_name == "none"
        path = json.loads(task.gold_path or "[]")
        assert (
            path[-1] == {**path[-1], "tool_name": "answer"}
            and path[-1]["arguments"]["answer"] == task.gold_answer
        )
        for step in path[:-1]:
            assert set(step) == {"think", "tool_name", "arguments", "expect"}
            assert set(step["arguments"]) == shapes[step["tool_name"]]
        if task.category in ("perception", "interleaved"):
            image = read_image(task.images[0])
            assert min(image.size) >= 2048 and task.gold_region is not None
        if task.category == "multihop":
            meta = json.loads(task.meta)
            assert 2 <= meta["hops"] <= 4
            # BrowseComp style: no entity of the chain is named in the question
            assert not any(entities[s].name in task.question for s in meta["chain"])


@pytest.mark.parametrize("kind", ["zoom", "rotate", "enhance"])
def test_label_illegible_at_teacher_size_and_legible_after_the_gold_operations(
    small_world: Path, tmp_path: Path, kind: str
) -> None:
    tasks = [
        t
        for t in load_tasks(small_world)
        if t.category == "perception" and json.loads(t.meta)["kind"] == kind
    ]
    assert tasks
    for task in tasks:
        meta = json.loads(task.meta)
        scene = read_image(task.images[0])
        teacher = fit_pixels(scene, TEACHER_PIXELS)
        scale = teacher.width / scene.width
        before, contrast_before = label_text_height(
            teacher, [v * scale for v in task.gold_region], meta["quarter_turns"]
        )
        assert before < LEGIBLE_TEXT_PX, (task.question, before)
        # run the gold code steps (our own trusted code) with /input and /output mapped to folders
        images = {"image_0.png": Path(task.images[0])}
        for step in json.loads(task.gold_path)[:-1]:
            out = tmp_path / "out"
            out.mkdir(exist_ok=True)
            code = step["arguments"]["code"]
            for name, path in images.items():
                code = code.replace(f"/input/{name}", str(path))
            saved = re.search(r'/output/([\w.]+)"', code).group(1)
            exec(compile(code.replace("/output/", f"{out}/"), "gold", "exec"), {})
            images[f"image_{len(images)}.png"] = out / saved
        # what the teacher receives of the last image; find the plate in it and measure its text
        final = fit_pixels(Image.open(list(images.values())[-1]).convert("RGB"), TEACHER_PIXELS)
        reading = Knowledge(small_world).check_image(task, encode_png(final), "label")
        assert reading["legible"] and reading["height"] >= LEGIBLE_TEXT_PX, reading
        if kind == "enhance":
            assert contrast_before < MIN_CONTRAST <= reading["contrast"]


def test_multihop_follows_links_by_url_and_fits_the_planner(small_world: Path) -> None:
    """Each later page is visited at the URL the previous page shows (in the text a visitor
    extracts), so H hops plan in H + 3 steps and 4 hops fit the planner's 10-step limit."""
    from pipeline.plan_format import MAX_STEPS
    from stages.tools.visit.web_visit import extract
    from world.pages import page_url

    tasks = [t for t in load_tasks(small_world) if t.category == "multihop"]
    assert max(json.loads(t.meta)["hops"] for t in tasks) == 4
    for task in tasks:
        meta, path = json.loads(task.meta), json.loads(task.gold_path)
        plan, errors = parse_plan(task.gold_plan, PLAN_TOOLS)
        assert not errors and len(plan) == meta["hops"] + 3 <= MAX_STEPS
        assert [s.tool_name for s in plan[1:-1]] == ["web_visit"] * (meta["hops"] + 1)
        visits = [s for s in path if s["tool_name"] == "web_visit"]
        assert [v["arguments"]["urls"][0] for v in visits] == [page_url(s) for s in meta["chain"]]
        for here, there, slug in zip(visits, visits[1:], meta["chain"], strict=False):
            url = there["arguments"]["urls"][0]
            assert here["expect"] == {"check": "contains", "text": url}
            html = (small_world / "corpus/html" / f"{slug}.html").read_text(encoding="utf-8")
            assert url in extract(html, page_url(slug), "text/html")[1]
        assert visits[-1]["expect"]["text"] == task.gold_answer == path[-1]["arguments"]["answer"]


def test_image_checks_run_once_for_concurrent_identical_images(small_world: Path, monkeypatch) -> None:
    """The K rollouts of a task send the same crop at once: the oracle checks it once."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    knowledge = Knowledge(small_world)
    task = next(t for t in load_tasks(small_world) if t.gold_region is not None)
    calls, real = [], knowledge._check

    def slow_check(*args):
        calls.append(threading.get_ident())
        time.sleep(0.1)
        return real(*args)

    monkeypatch.setattr(knowledge, "_check", slow_check)
    scene = encode_png(Image.open(small_world / task.images[0]).convert("RGB").reduce(4))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: knowledge.check_image(task, scene, "region"), range(4)))
    assert len(calls) == 1 and all(r == results[0] for r in results)
    knowledge.check_image(task, scene + b"", "label")  # another kind is another check
    assert len(calls) == 2


def test_signature_index_matches_the_images_and_spares_the_oracle_their_decoding(
    small_world: Path, monkeypatch
) -> None:
    """The build indexes each task image's thumbnail; the oracle tells tasks that share a
    question apart from it (one decode of the sent image, none of the world's files)."""
    import base64

    import world.knowledge as knowledge_module
    from world.build import load_signatures
    from world.vision import thumbnail_signature

    index = load_signatures(small_world)
    tasks = [t for t in load_tasks(small_world) if t.images]
    assert tasks and set(index) == {Path(t.images[0]).relative_to(small_world).as_posix() for t in tasks}
    for rel, thumb in index.items():
        assert (
            thumb.dtype.name == "uint8"
            and (thumb == thumbnail_signature(read_image(small_world / rel))).all()
        )

    knowledge = Knowledge(small_world)
    monkeypatch.setattr(knowledge_module, "read_image", lambda *a, **k: pytest.fail("decoded a world file"))
    shared = [t for t in knowledge.tasks if t.images]
    for task in shared:  # as if every task with an image asked the same question
        knowledge.by_text[task.question.strip()] = shared
    for task in shared:
        sent = fit_pixels(read_image(small_world / task.images[0]), TEACHER_PIXELS)
        uri = "data:image/png;base64," + base64.b64encode(encode_png(sent)).decode()
        found = knowledge.find_task(task.question, [uri])
        assert found is not None and found.images[0] == task.images[0]  # a scene serves several tasks


def test_a_world_built_by_other_code_is_not_taken_as_built(small_world: Path, tmp_path: Path) -> None:
    """Same version, seed and sizes, other world code (an older checkout's build): rebuilt."""
    copy = tmp_path / "world"
    shutil.copytree(small_world, copy)
    built = manifest(copy)
    sizes = {key: built[key] for key in ("seed", "entities", "tasks")}
    assert is_built(copy, **sizes)
    (copy / "world.json").write_text(json.dumps({**built, "builder": "0" * 16}))
    assert not is_built(copy, **sizes)
    (copy / "world.json").write_text(json.dumps({k: v for k, v in built.items() if k != "builder"}))
    assert not is_built(copy, **sizes)
