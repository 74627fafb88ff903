"""The offline world: a small procedural internet and a teacher that knows the answers.

`build_world` writes an encyclopedia (pages + entity images), high-resolution scenes and tasks
with gold answers, plans and paths; `WorldServer` serves the pages and images and answers the
OpenAI chat-completions protocol as an oracle planner, executor and judge, with knobs for
latency, rate limits, error and defect injection.
"""

from world.build import build_world, is_built, load_entities, load_tasks, manifest
from world.knobs import Knobs
from world.server import WorldServer

__all__ = ["Knobs", "WorldServer", "build_world", "is_built", "load_entities", "load_tasks", "manifest"]
