"""Per-item logs: `RUN/logs/<stage>.log` says what happened to every dropped or failed item.

These loggers do not propagate to the console: a run prints progress and a summary, while the
file keeps one line per item (the console would otherwise drown in thousands of drop lines).
"""

from __future__ import annotations

import logging
from pathlib import Path


def item_logger(run_dir: str | Path, stage: str) -> logging.Logger:
    """The logger writing `RUN/logs/<stage>.log` (one handler per file, however often asked)."""
    logger = logging.getLogger(f"trajforge.items.{stage}")
    path = (Path(run_dir) / "logs" / f"{stage}.log").resolve()
    if not any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
        for handler in list(logger.handlers):  # a new run folder in the same process
            logger.removeHandler(handler)
            handler.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger
