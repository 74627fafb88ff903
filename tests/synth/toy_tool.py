"""A toy tool, as a user would add one: this module plus one config line
(`tools.extra: ["tests.synth.toy_tool:ImageSizeTool"]`)."""

from __future__ import annotations

from typing import Any

from PIL import Image

from pipeline.config import ToolsConfig
from pipeline.schema import Observation
from pipeline.tool_spec import ToolSpec
from stages.tools.base import Tool, ToolContext, ToolEnv


class ImageSizeTool(Tool):
    spec = ToolSpec(
        name="image_size",
        modes=("deepresearch",),
        description="The width and height in pixels of images of this conversation.",
        parameters={
            "type": "object",
            "properties": {"image_paths": {"type": "array", "items": {"type": "string"}}},
            "required": ["image_paths"],
        },
        prompt="Reports the width and height in pixels of each image.",
        text_usage='{"image_paths": ["image_0.png"]}',
        native_usage="(image_paths)",
        plan_parameter="image_path",
        plan_prompt="measure an image",
        plan_step="Measure the size of {value}",
    )

    @classmethod
    def create(cls, cfg: ToolsConfig, env: ToolEnv) -> ImageSizeTool:
        return cls()

    async def _run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation:
        lines = []
        for name in arguments.get("image_paths") or []:
            with Image.open(ctx.images[name]) as image:
                lines.append(f"{name}: {image.width}x{image.height}")
        return Observation(text="\n".join(lines))
