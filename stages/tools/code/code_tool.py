"""The `code` tool: teacher-written Python over the trajectory's images, in the sandbox.

R1V4 semantics: the code sees every image of the trajectory so far (`image_paths`, inputs first,
then images produced by earlier calls, all under /input), saves new images under /output and
prints. The observation is the printed text followed by one `Saved image_<k>.png: <image>` line
per new image, where `<image>` is the chat layout's image marker; each new image is registered
in the ToolContext so later calls (code or image_search) can name it.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from pipeline.config import CodeToolConfig, ToolsConfig
from pipeline.format import IMAGE_MARKER
from pipeline.images import ImageError, read_image
from pipeline.schema import Observation
from pipeline.tool_spec import ToolSpec
from stages.tools.args import code_string
from stages.tools.base import Tool, ToolContext, ToolEnv
from stages.tools.code.sandbox import SandboxPool

#: What a PNG's info may hold for it to be kept byte for byte (no text, EXIF or ICC profile).
PLAIN_PNG_INFO = frozenset({"dpi", "gamma", "transparency", "aspect", "srgb", "chromaticity"})

DESCRIPTION = (
    "Run Python code on the images of this conversation (crop, resize, rotate, enhance contrast, denoise, "
    "measure pixels). PIL, numpy and cv2 are available; there is no network. The list `image_paths` holds the "
    "paths of all images so far (input images first, then images produced by earlier calls); save new images "
    "under OUTPUT_DIR ('/output') and print what you found. Each saved image is shown back to you."
)


def _incoming_dir(ctx: ToolContext) -> Path:
    """Where the sandbox hands this call's saved images over (the trajectory's folder is made
    on first use)."""
    return ctx.workdir / "tool_images" / ".incoming"


class CodeTool(Tool):
    spec = ToolSpec(
        name="code",
        modes=("deepresearch", "general"),
        description=DESCRIPTION,
        parameters={
            "type": "object",
            "properties": {"code": {"type": "string", "description": "Python source to execute."}},
            "required": ["code"],
        },
        prompt=(
            "Runs Python with PIL, numpy and cv2 in a sandbox without network. The images of this "
            "conversation are at /input/<name> (image_0.png is the first input image) and listed in order in "
            "`image_paths`, followed by every image produced by earlier calls. Open an image, crop, zoom, "
            "rotate, enhance contrast or denoise it, save the result under /output/ and print what you found. "
            "Each saved image is shown back to you as a new image (image_<k>.png) that later calls can use."
        ),
        text_usage='{"code": "<python source>"}',
        plan_parameter="operation",
        plan_step="Use code to {value}",
        plan_prompt="an image operation such as cropping, zooming, rotating or enhancing a region",
        plan_label="Text read in Step {k}",
        runs_code=True,
    )

    @classmethod
    def create(cls, cfg: ToolsConfig, env: ToolEnv) -> CodeTool:
        return cls(cfg.code)

    def __init__(self, cfg: CodeToolConfig, pool: SandboxPool | None = None) -> None:
        self.cfg = cfg
        self.pool = pool or SandboxPool(cfg, Path(cfg.work_dir) if cfg.work_dir else None)
        self.errors = 0

    async def _run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation:
        code = code_string(arguments)
        images = list(ctx.images.items())
        # file work (the trajectory's folder, reading back and moving what the code saved) runs
        # in a thread: on the event loop a contended directory stalled every trajectory in flight
        scratch = await asyncio.to_thread(_incoming_dir, ctx)
        session = ctx.trajectory_id if self.cfg.session else None
        result = await self.pool.run(code, images, scratch, session=session)
        lines = [result.stdout.rstrip("\n")] if result.stdout.strip() else []
        adopted, error = await asyncio.to_thread(
            self._adopt, result.files, result.names, ctx, len(ctx.images)
        )
        error = result.error or error
        produced: list[str] = []
        for target, name in adopted:
            ctx.register_image(target, name)
            produced.append(str(target))
            lines.append(f"Saved {name}: {IMAGE_MARKER}")
        if error:
            self.errors += 1
            if not any(error in line for line in lines[-1:]):  # a traceback already ends with it
                lines.append(f"Error: {error}")
        text = "\n".join(lines) if lines else "(the code printed nothing and saved no image)"
        return Observation(text=text, images=produced, error=error, meta={"timings": result.timings})

    def _adopt(
        self, files: list[Path], names: list[str], ctx: ToolContext, first_index: int
    ) -> tuple[list[tuple[Path, str]], str | None]:
        """(where each readable saved image now lives, its image_<k> name), and the first
        unreadable one's error. Plain PNGs are moved as they are; anything else is re-encoded
        without text chunks, EXIF or ICC, so nothing rides along unseen. In a worker thread."""
        adopted: list[tuple[Path, str]] = []
        error = None
        for path, original in zip(files, names, strict=True):
            try:
                image = read_image(path, max_pixels=self.cfg.max_image_pixels)
            except ImageError as exc:
                error = error or f"{original}: {exc}"
                path.unlink(missing_ok=True)
                continue
            name = f"image_{first_index + len(adopted)}.png"
            target = ctx.workdir / "tool_images" / f"{ctx.trajectory_id or 'run'}_{name}"
            if image.format == "PNG" and set(image.info) <= PLAIN_PNG_INFO:
                shutil.move(path, target)
            else:
                image.info = {k: v for k, v in image.info.items() if k == "transparency"}
                image.save(target, format="PNG")
                path.unlink(missing_ok=True)
            adopted.append((target.resolve(), name))
        return adopted, error

    def warm(self, ctx: ToolContext) -> None:
        """Start the fast copies of the trajectory's input images (made once per pool)."""
        for path in ctx.images.values():
            self.pool.fast_inputs.prefetch(path)

    def stats(self) -> dict[str, float]:
        """Counts, and where a call's time goes (mean seconds: staging fast inputs, waiting for
        a worker (mean, p99, longest), the worker's round trip and the code's run inside it, CPU
        spent in the sandbox and the part of it the code's own process spent), and how many
        sandbox workers the pool grew to (of its ceiling). In session mode a session's process
        counts in `sandbox_cpu_s` only once it ends."""
        calls = max(1, self.pool.calls)
        return {
            "calls": self.pool.calls,
            "errors": self.errors,
            "worker_restarts": self.pool.restarts,
            "fast_inputs_made": self.pool.fast_inputs.made,
            "fast_inputs_reused": self.pool.fast_inputs.reused,
            "decode_cache_decoded": self.pool.decoded,
            "decode_cache_affine_calls": self.pool.affine,
            "mean_fast_inputs_s": round(self.pool.seconds["fast_inputs_s"] / calls, 4),
            **self.pool.wait_stats(),  # waits for a free sandbox worker: mean, p99, longest
            "sandbox_workers": len(self.pool.workers),
            "sandbox_workers_ceiling": self.pool.max_workers,
            "mean_roundtrip_s": round(self.pool.seconds["roundtrip_s"] / calls, 4),
            "mean_exec_s": round(self.pool.seconds["exec_s"] / calls, 4),
            "mean_total_s": round(self.pool.seconds["total_s"] / calls, 4),
            "mean_cpu_s": round(self.pool.seconds["cpu_s"] / calls, 4),
            "sandbox_cpu_s": round(self.pool.seconds["cpu_s"], 3),
            # of which the code's own process (its fork's start and what the teacher's code did);
            # the rest is the sandbox's own: decoding inputs into the cache, fork, sweep, copy-out
            "sandbox_code_cpu_s": round(self.pool.seconds["code_cpu_s"], 3),
            "mean_code_cpu_s": round(self.pool.seconds["code_cpu_s"] / calls, 4),
        }

    async def end_session(self, trajectory_id: str) -> None:
        """Drop the variables kept for a trajectory (session mode); a no-op otherwise."""
        await self.pool.close_session(trajectory_id)

    async def aclose(self) -> None:
        await self.pool.aclose()
