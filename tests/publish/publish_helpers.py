"""Synthetic kept sets for the publish tests: small Trajectory records written through RunStore."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from pipeline.schema import Step, Trajectory
from pipeline.store import RunStore


def _image(store: RunStore, seed: int, size: tuple[int, int] = (48, 32), fmt: str = "PNG") -> str:
    """A small distinct image (noise-free gradient + colour) stored in the run; returns its ref."""
    image = Image.new("RGB", size, ((seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256))
    for x in range(size[0]):
        image.putpixel((x, seed % size[1]), (x * 5 % 256, 255 - seed % 256, 7))
    if fmt == "PNG":
        return store.images.put_image(image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return store.images.put_bytes(buffer.getvalue())


def deepresearch(store: RunStore, n: int) -> Trajectory:
    task_image = _image(store, 1000 + n, fmt="JPEG" if n % 2 else "PNG")
    crop = _image(store, 2000 + n, size=(24, 24))
    thumb = _image(store, 3000 + n, size=(16, 20))
    steps = [
        Step(
            index=0,
            think=f"Crop the sign in the corner (task {n}).",
            action="tool_call",
            tool_name="code",
            arguments=json.dumps({"code": "img.crop((0, 0, 24, 24)).save('crop.png')"}),
            observation_text="Saved crop.png <image>",
            observation_images=[crop],
        ),
        Step(
            index=1,
            think="Search the crop to identify the place.",
            action="tool_call",
            tool_name="image_search",
            arguments=json.dumps({"image_paths": ["crop.png"]}),
            observation_text="1. Old Town Hall <image>\n2. Market square",
            observation_images=[thumb],
        ),
        Step(
            index=2,
            think="Look up when it was built.",
            action="tool_call",
            tool_name="text_search",
            arguments=json.dumps({"queries": [f"Old Town Hall {n} construction year"]}),
            observation_text="Old Town Hall | built in 1899 | pipes | and ünïcode",
            error="one query timed out" if n == 0 else None,
        ),
        Step(index=3, think="The sources agree.", action="answer", answer=f"{1899 + n}"),
    ]
    return Trajectory(
        task_id=f"t-dr{n:03d}",
        teacher="claude-sonnet-4" if n % 3 else "glm-4.5v",
        prompt_version="executor_deepresearch.v1",
        source="world",
        category=["search", "interleaved", "multihop"][n % 3],
        mode="deepresearch",
        question=f"When was the building in this picture built? (#{n})",
        images=[task_image],
        gold_answer=f"{1899 + n}",
        steps=steps,
        final_answer=f"{1899 + n}",
    )


def general(store: RunStore, n: int) -> Trajectory:
    task_image = _image(store, 4000 + n, size=(64, 40))
    zoom = _image(store, 5000 + n, size=(32, 20))
    steps = [
        Step(
            index=0,
            think="Zoom into the dial.",
            action="tool_call",
            tool_name="code",
            arguments=json.dumps({"code": "print('zoomed')"}),
            observation_text="zoomed <image>",
            observation_images=[zoom],
        ),
        Step(index=1, think="The needle points at 7.", action="answer", answer="7"),
    ]
    return Trajectory(
        task_id=f"t-ge{n:03d}",
        teacher="glm-4.5v",
        prompt_version="executor_general.v1",
        source="world",
        category="perception",
        mode="general",
        question=f"What number does the dial show? (#{n})",
        images=[task_image],
        gold_answer="7",
        steps=steps,
        final_answer="7",
    )


def plan(store: RunStore, n: int) -> Trajectory:
    image = _image(store, 6000 + n)
    plan_json = json.dumps(
        [
            {
                "description": "Reverse-search the image",
                "tool_name": "image_search",
                "parameters": {"image_path": "img"},
            },
            {"description": "Verify [Place identified in Step 1]", "tool_name": "none", "parameters": {}},
        ]
    )
    return Trajectory(
        task_id=f"t-pl{n:03d}",
        teacher="claude-sonnet-4",
        prompt_version="planner.v1",
        category="plan",
        mode="plan",
        question=f"Which place is shown? (#{n})",
        images=[image],
        steps=[Step(index=0, think="Two steps suffice.", action="answer", answer=plan_json)],
        final_answer=plan_json,
    )


def make_run(root: Path, deep: int = 5, gen: int = 3, plans: int = 2, report: bool = True) -> RunStore:
    """A run with a kept set of every mode, a filter report and a resolved config."""
    from pipeline.config import Config, resolved_yaml

    store = RunStore(root)
    records = [deepresearch(store, i) for i in range(deep)]
    records += [general(store, i) for i in range(gen)]
    records += [plan(store, i) for i in range(plans)]
    half = len(records) // 2
    store.write_records("kept", records[:half], Trajectory)
    store.write_records("kept", records[half:], Trajectory)
    (root / "config.yaml").write_text(resolved_yaml(Config()))
    if report:
        store.update_report("synth", {"trajectories": 40, "answered": 31})
        store.update_report(
            "filter",
            {"raw": 40, "kept": len(records), "pass_rates": {"format": 0.95, "outcome": {"pass_rate": 0.5}}},
        )
    return store
