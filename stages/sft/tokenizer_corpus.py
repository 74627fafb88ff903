"""The text the tiny student's BPE is trained on: the repo's own prompts, tool schemas, sample turns.

The tiny processor must not depend on a run's data (the same code builds the same tokenizer for
every run, every rank and every test), so its corpus is only what ships with trajforge: every
shipped prompt template, each tool's name, description and JSON parameters, and a fixed set of
hand-written turns in the R1V4 layout (think, tool call, observation, answer), so that tags, JSON
keys, tool names and common words become whole tokens.
"""

from __future__ import annotations

import json
from importlib import resources

from pipeline.format import IMAGE_MARKER

#: Hand-written turns in the shape the executor writes and reads (not taken from any run).
SAMPLE_TURNS = (
    "<think>I need to identify the object in the image first; a reverse image search should find its page.</think>"
    '<tool_call>{"name": "image_search", "arguments": {"image_paths": ["image_0.png"]}}</tool_call>',
    "<observation>Results for image_0.png:\n1. The Old Bridge\n   Link: http://example.org/wiki/The_Old_Bridge\n"
    "   Snippet: The Old Bridge is a stone bridge over the river.</observation>",
    "<think>The results include the page of the bridge; I will read it to find who built it.</think>"
    '<tool_call>{"name": "web_visit", "arguments": {"urls": ["http://example.org/wiki/The_Old_Bridge"]}}</tool_call>',
    "<observation>1. The Old Bridge\nThe bridge was built in 1734 by the city council. It is located in the "
    "north of the town, near the museum and the old market.</observation>",
    "<think>The page does not say where the council met; I will search for it.</think>"
    '<tool_call>{"name": "text_search", "arguments": {"queries": ["city council headquarters", "old town hall"]}}'
    "</tool_call>",
    "<think>The sign in the top left corner is too small to read; let me crop the region and enlarge it.</think>"
    '<tool_call>{"name": "code", "arguments": {"code": "from PIL import Image\\nimg = Image.open(image_paths[0])\\n'
    "w, h = img.size\\ncrop = img.crop((0, 0, w // 2, h // 2)).resize((w, h))\\ncrop.save('crop.png')\\n"
    'print(crop.size)"}}</tool_call>',
    f"<observation>(512, 512)\n{IMAGE_MARKER}</observation>",
    "<think>The enlarged crop shows the label clearly; it reads the name of the museum, which answers the "
    "question.</think><answer>The City Museum</answer>",
    "<think>Counting the red objects in the picture: there are three on the left and two on the right, so the "
    "total is five.</think><answer>5</answer>",
    "<think>The question asks which option matches the color of the car; the car is blue, so the answer is B."
    "</think><answer>B</answer>",
    "<think>The question asks in what year the company was founded and where it is headquartered; the "
    "page of its founder should say both.</think>"
    '<tool_call>{"name": "text_search", "arguments": {"queries": ["company founder", "founded in year"]}}</tool_call>',
    "<observation>1. The Harbour Trading Company\n   Link: http://example.org/wiki/Harbour_Trading_Company\n"
    "   Snippet: The company was founded in 1852 by a merchant born in the river town. Its headquarters are in "
    "the capital; it employs 340 people.</observation>",
    "<think>The painting in the picture is held by a museum; the page of the artist gives the birthplace, "
    "occupation and the population of the town where the artist was born.</think>"
    '<tool_call>{"name": "web_visit", "arguments": {"urls": ["http://example.org/wiki/Museum_of_Art"]}}</tool_call>',
    "<think>The species described on the page grows to 45 millimetres; its habitat is the forest near the "
    "mountain village, and it was first described by a naturalist.</think><answer>45</answer>",
    "<think>The sculpture is 210 centimetres tall and was completed in 1910 by a sculptor from the island; the "
    "institution that holds it is the national gallery.</think><answer>national gallery</answer>",
)


def _prompt_texts() -> list[str]:
    """Every prompt template shipped in `prompts/` (sorted, so the corpus order is fixed), with
    its tool lists filled from the built-in tools, as a teacher sees it."""
    from stages.synth import fill_shipped

    folder = resources.files("prompts")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".txt"))
    return [
        fill_shipped(folder.joinpath(name).read_text(encoding="utf-8"), "_native" in name) for name in names
    ]


def _tool_texts() -> list[str]:
    """Each tool's name, description and parameter schema as the model sees them."""
    from stages.tools.registry import tool_table

    return [json.dumps({"type": "function", "function": spec.function_schema()}) for spec in tool_table()]


def tokenizer_corpus() -> list[str]:
    """The fixed training texts of the tiny BPE (depends only on the installed trajforge)."""
    return [*_prompt_texts(), *_tool_texts(), *SAMPLE_TURNS]
