"""A small synthetic kept set (tests, the packing bench, a CPU smoke run without `make synth`).

Trajectories in every mode with small PIL images, written through RunStore exactly like the
filter stage writes `RUN/kept/`. The content is patterned (colours, positions, numbers) so a
tiny model can learn it and its loss visibly falls.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from pipeline.schema import Step, Trajectory
from pipeline.store import RunStore

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}


def _scene(rng: random.Random, size: tuple[int, int]) -> tuple[Image.Image, str, list[int]]:
    name, rgb = rng.choice(sorted(COLOURS.items()))
    image = Image.new("RGB", size, (245, 245, 245))
    w, h = size
    x0, y0 = rng.randrange(0, w // 2), rng.randrange(0, h // 2)
    box = [x0, y0, x0 + w // 3, y0 + h // 3]
    ImageDraw.Draw(image).rectangle(box, fill=rgb)
    return image, name, box


def synthetic_trajectory(
    store: RunStore, index: int, rng: random.Random, *, image_size=(96, 64)
) -> Trajectory:
    """One kept trajectory; the mode cycles deepresearch -> general -> plan."""
    image, colour, box = _scene(rng, image_size)
    ref = store.images.put_image(image)
    mode = ("deepresearch", "general", "plan")[index % 3]
    question = f"What colour is the square in the picture? (case {index})"
    if mode == "plan":
        plan = [
            {"description": "Crop the square", "tool_name": "code", "parameters": {"code": "crop"}},
            {"description": f"The square is {colour}", "tool_name": "none", "parameters": {}},
        ]
        steps = [Step(index=0, think="Plan the steps.", action="answer", answer=json.dumps(plan))]
        return Trajectory(
            task_id=f"t-syn{index}",
            category="plan",
            mode="plan",
            question=question,
            images=[ref],
            steps=steps,
        )
    crop = image.crop(tuple(box))
    crop_ref = store.images.put_image(crop.resize((max(32, crop.width), max(32, crop.height))))
    code = f"img = Image.open('image_0.png').crop({tuple(box)})\nimg.save('crop.png')\nprint('crop.png')"
    steps = [
        Step(
            index=0,
            think="I should crop the square to look at it.",
            action="tool_call",
            tool_name="code",
            arguments=json.dumps({"code": code}),
            observation_text="crop.png <image>",
            observation_images=[crop_ref],
        ),
        Step(
            index=1,
            think=f"The crop shows a {colour} square.",
            action="answer",
            answer=colour,
        ),
    ]
    return Trajectory(
        task_id=f"t-syn{index}",
        category="perception",
        mode=mode,
        question=question,
        images=[ref],
        steps=steps,
        gold_answer=colour,
        final_answer=colour,
    )


def write_kept_set(run_dir: str | Path, n: int = 12, *, seed: int = 0, image_size=(96, 64)) -> RunStore:
    """Write `n` synthetic kept trajectories to `run_dir/kept/` and return the store."""
    store = RunStore(run_dir)
    rng = random.Random(seed)
    records = [synthetic_trajectory(store, i, rng, image_size=image_size) for i in range(n)]
    store.write_records("kept", records, Trajectory)
    return store
