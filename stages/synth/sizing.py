"""How many trajectories in flight keep the teacher busy: Little's law over what a run measured.

A trajectory makes C teacher calls over W seconds of wall time (its calls' latency plus its
tools' and its waits), so it asks the teacher for C / W calls a second. To send R calls a
second -- the teacher's pace, as configured (`teacher.requests_per_s`) or as its rate-limit
headers state it -- a run needs

    trajectories in flight = R x W / C        (teacher calls in flight = R x L, L = mean latency)

Fewer leave the teacher idle; more only queue behind the pacer. With no pace known, the summary
says what the run reached and that the number needs one (a server without limits takes what
it is sent: there the bound is the teacher's own throughput, which only its operator knows).
"""

from __future__ import annotations

import math
from typing import Any

FORMULA = "trajectories in flight = rate x trajectory wall s / calls per trajectory"
#: Mean seconds code calls may wait for a sandbox worker before the summary says so.
SANDBOX_WAIT_NOTE_S = 1.0


def sizing(
    summary: dict[str, Any], *, requests_per_s: float | None, in_flight: int, workers: int
) -> dict[str, Any]:
    """The `sizing` block of a synth summary (see the module doc); `in_flight` is per worker."""
    teacher, executor = summary.get("teacher", {}), summary.get("executor", {})
    trajectories = int(executor.get("trajectories_timed") or 0)
    calls = int(teacher.get("calls") or 0)
    out: dict[str, Any] = {"formula": FORMULA, "configured_in_flight": in_flight * workers}
    if not trajectories or not calls:
        out["note"] = "nothing ran: no latency or calls per trajectory to size from"
        return out
    wall = executor.get("trajectory_wall_s", 0.0) / trajectories
    if note := _sandbox_note(summary.get("tools", {}).get("code") or {}, workers, trajectories, wall):
        out["sandbox_note"] = note
    per_trajectory = calls / trajectories
    latency = float(teacher.get("mean_latency_s") or 0.0)
    rate, source = _pace(requests_per_s, teacher.get("stated_rate_per_s"))
    reached = calls / summary["wall_s"] if summary.get("wall_s") else None
    out.update(
        {
            "calls_per_trajectory": round(per_trajectory, 2),
            "trajectory_wall_s": round(wall, 2),
            "teacher_latency_s": round(latency, 3),
            "teacher_rate_per_s": rate,
            "rate_from": source,
            "reached_calls_per_s": round(reached, 2) if reached else None,
        }
    )
    if rate is None:
        out["note"] = (
            "the teacher's pace is unknown (set teacher.requests_per_s, or an endpoint that states "
            "x-ratelimit headers): at R calls/s, in flight = R x "
            f"{wall:.1f} / {per_trajectory:.2f}"
        )
        return out
    needed = math.ceil(rate * wall / per_trajectory)
    out["in_flight_needed"] = needed
    out["teacher_calls_in_flight_needed"] = math.ceil(rate * latency)
    out["in_flight_needed_per_worker"] = math.ceil(needed / max(1, workers))
    out["note"] = (
        f"{rate:g} calls/s x {wall:.1f} s / {per_trajectory:.2f} calls = {needed} trajectories in flight "
        f"(configured {in_flight * workers}: "
        + (
            "enough)"
            if in_flight * workers >= needed
            else "the teacher waits; raise synth.in_flight or workers)"
        )
    )
    return out


def _sandbox_note(code: dict[str, Any], workers: int, trajectories: int, wall_s: float) -> str | None:
    """Where code calls queued for a full sandbox pool: how long, and what to raise (at 2,000 in
    flight on 2 cores, calls waited 5.9 s on average with the pool at its default ceiling of 2
    processes, 3.3 s with 4; a trajectory waits that on top of its teacher calls)."""
    workers = max(1, workers)
    waited = float(code.get("mean_queue_s") or 0.0) / workers  # each worker's mean, summed
    processes, ceiling = code.get("sandbox_workers", 0), code.get("sandbox_workers_ceiling", 0)
    if waited < SANDBOX_WAIT_NOTE_S or not ceiling or processes < ceiling:
        return None
    per_trajectory = waited * float(code.get("calls") or 0) / max(1, trajectories)
    share = f" ({per_trajectory / wall_s:.0%} of a trajectory's wall)" if wall_s > 0 else ""
    return (
        f"code calls waited {waited:.1f} s on average for a sandbox process{share}, the pool at its "
        f"ceiling ({ceiling // workers} per worker): where the machine has idle cores, raise "
        "tools.code.max_workers (each process keeps its own decoded inputs) or run more synth.workers"
    )


def _pace(configured: float | None, stated: float | None) -> tuple[float | None, str | None]:
    """The teacher's calls per second: the configured ceiling, else what its headers state."""
    if configured:
        return float(configured), "teacher.requests_per_s"
    if stated:
        return round(float(stated), 2), "the endpoint's rate-limit headers"
    return None, None
