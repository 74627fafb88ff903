"""The `trajforge` command: one Typer app; each command group lives in `pipeline/commands/`.

Command modules keep heavy imports (ray, torch, transformers) inside their functions so that
`trajforge --help` and small commands start fast.
"""

from __future__ import annotations

import logging
import sys

import typer

from pipeline.commands import (
    corpus,
    export,
    filter,
    importers,
    publish,
    sft,
    synth,
    tasks,
    tools,
    view,
    world,
)
from pipeline.commands import eval as eval_cmd

app = typer.Typer(
    name="trajforge",
    help="Data factory for agentic multimodal trajectories: synth -> filter -> sft -> publish.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (importers, world, corpus, tasks, tools, synth, filter, sft, publish, export, view, eval_cmd):
    module.register(app)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    app()


if __name__ == "__main__":
    main()
