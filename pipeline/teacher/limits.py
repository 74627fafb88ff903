"""Flow control: an AIMD concurrency limit, an adaptive request pacer and a token budget."""

from __future__ import annotations

import asyncio
import collections
import time


class AdaptiveLimiter:
    """Concurrency limit with AIMD: halve on push-back (at most once per cooldown), +1 per window."""

    def __init__(self, maximum: int, *, minimum: int = 1, cooldown_s: float = 1.0):
        self.maximum, self.minimum, self.cooldown_s = maximum, minimum, cooldown_s
        self.limit = float(maximum)
        self.in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._last_cut = 0.0

    async def acquire(self) -> None:
        if self.in_use < int(self.limit) and not self._waiters:
            self.in_use += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release_slot()  # we were granted a slot but will not use it
            else:
                self._waiters.remove(future)
            raise

    def release(self) -> None:
        self._release_slot()

    def _release_slot(self) -> None:
        self.in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < int(self.limit):
            future = self._waiters.popleft()
            if not future.done():
                self.in_use += 1
                future.set_result(None)

    def on_success(self) -> None:
        if self.limit < self.maximum:
            self.limit = min(self.maximum, self.limit + 1.0 / self.limit)
            self._wake()

    def on_pushback(self) -> None:
        now = time.monotonic()
        if now - self._last_cut >= self.cooldown_s:
            self._last_cut = now
            self.limit = max(float(self.minimum), self.limit / 2)


class AdaptivePacer:
    """Spaces request starts evenly at `rate` per second; learns the rate an endpoint admits.

    Start-up: where the limit is known -- configured (`ceiling`) or stated by the endpoint's
    rate-limit headers (`announce`) -- pacing runs at it from the first request the client
    knows it, and never probes above a stated one. Where nothing is known the client starts
    unpaced, as a bare loop does, and the first 429 cuts. Optional slow start, for an endpoint
    that limits without saying so: with `start` set, pacing begins at `start` per second and doubles
    every `ramp_s` seconds until the first 429, so the first second never floods an endpoint
    whose limit is unknown; once no request has had to wait for a whole window (demand, not the
    pacer, is the bound), pacing stops (`rate` None) unless a ceiling is configured.

    On a 429 for a request sent after the last cut, the rate drops to just under the best
    estimate of what the endpoint admits: the lowest of 95% of the current rate, the admitted
    rate over the window, and 1 / Retry-After when that is under a second (a token bucket's
    wait for its next token is at most 1/R, so 1/wait bounds R from above). It never drops
    below half the peak admitted rate of the last minute, so random 429s cannot spiral it down;
    429s for requests sent before the last cut are stale and ignored. An unpaced start's first
    burst, before `min_samples` admissions, has only the Retry-After bound to go by: it cuts to
    that (or waits for more traffic where the 429 gave no wait under a second). It then creeps up by
    `probe` (1%) a second, so the client probes the limit rarely and stays under it almost
    always; after two quiet minutes without a ceiling it stops pacing.
    """

    def __init__(
        self,
        ceiling: float | None,
        *,
        start: float | None = None,
        ramp_s: float = 0.5,
        window_s: float = 2.0,
        backoff: float = 0.97,
        probe: float = 0.01,
        min_samples: int = 20,
        headroom: float = 0.99,
    ):
        self.ceiling, self.window_s, self.backoff, self.probe = ceiling, window_s, backoff, probe
        self.min_samples, self.ramp_s, self.headroom = min_samples, ramp_s, headroom
        self.rate: float | None = ceiling
        self.announced_rate: float | None = None  # what the endpoint's headers say it admits
        self._announced: collections.deque[float] = collections.deque(maxlen=15)
        if start is not None:
            self.rate = min(start, ceiling) if ceiling is not None else start
        self.slow_start = start is not None and (ceiling is None or start < ceiling)
        self._last_start = -1e9  # when the last paced request started
        self._lock: asyncio.Lock | None = None
        self._admitted: collections.deque[float] = collections.deque()
        self._peaks: collections.deque[tuple[float, float]] = collections.deque()  # (time, admitted rate)
        self._last_cut = -1e9
        self._last_grow = time.monotonic()
        self._last_wait = time.monotonic()  # last time a request had to wait for its slot
        self._first: float | None = None
        self._waits: collections.deque[tuple[float, float]] = collections.deque()  # (time, Retry-After)

    async def acquire(self) -> float:
        """Wait for this request's slot; returns when it started (for on_rejected's staleness).

        Waiters queue on a FIFO lock and only the head watches the clock, so each start is
        spaced by the rate in force *now*: a ramp or a cut applies to requests already queued.
        """
        now = time.monotonic()
        if self.rate is None:
            return now
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                now = time.monotonic()
                self._grow(now)
                if self.rate is None:
                    return now
                due = self._last_start + 1.0 / self.rate
                if due <= now:
                    break
                self._last_wait = now
                await asyncio.sleep(due - now)
            # keep the schedule through sleep overshoot (up to one interval late), no credit beyond
            self._last_start = max(due, now - 1.0 / self.rate)
            return now

    def _grow(self, now: float) -> None:
        elapsed, self._last_grow = now - self._last_grow, now
        if self.rate is None or (self.ceiling is not None and self.rate >= self.ceiling):
            return
        if self.slow_start:
            if self.ceiling is None and now - self._last_wait > self.window_s:
                self.rate, self.slow_start = None, False  # demand-bound: pacing only costs
                return
            self.rate *= 2.0 ** (elapsed / self.ramp_s)
        else:
            self.rate *= (1.0 + self.probe) ** elapsed
        if self.ceiling is not None:
            self.rate = min(self.rate, self.ceiling)
        if self.announced_rate is not None:
            self.rate = min(self.rate, self.announced_rate * self.headroom)
        elif self.ceiling is None and not self.slow_start and now - self._last_cut > 120.0:
            self.rate = None  # two quiet minutes: the limit is gone or far away

    def announce(self, rate: float, spare: float | None = None) -> None:
        """The endpoint's headers state it admits `rate` requests/s: pace just under it once
        less than a quarter of its bucket is `spare` (remaining / limit; a bucket of thousands
        lets an unpaced burst run on until it is nearly spent, pacing it from the start would
        only waste it).

        The median of the last 15 statements, so one reading rounded to the millisecond (or
        taken as the window turned) cannot move the pace; under a configured ceiling.
        """
        if not rate > 0.0:
            return
        self._announced.append(rate)
        ordered = sorted(self._announced)
        self.announced_rate = ordered[len(ordered) // 2]
        if self.rate is None and spare is not None and spare > 0.25:
            return
        target = self.announced_rate * self.headroom
        if self.ceiling is not None:
            target = min(target, self.ceiling)
        if self.rate is None or self.slow_start or self.rate > target:
            self.rate, self.slow_start = target, False
            self._last_grow = time.monotonic()

    def _trim(self, now: float) -> float:
        """Admitted requests per second over the window (or since the first, if more recent)."""
        while self._admitted and self._admitted[0] < now - self.window_s:
            self._admitted.popleft()
        span = min(self.window_s, max(0.5, now - self._first)) if self._first is not None else self.window_s
        return len(self._admitted) / span

    def on_admitted(self) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = now
        self._admitted.append(now)
        if len(self._admitted) % 16 == 0:
            self._trim(now)
            self._peaks.append((now, len(self._admitted) / self.window_s))  # a full window: no burst spikes
            while self._peaks and self._peaks[0][0] < now - 60.0:
                self._peaks.popleft()

    def on_rejected(self, sent_at: float, retry_after: float | None = None) -> None:
        """A 429 for a request scheduled at `sent_at` (monotonic): slow down unless it is stale."""
        now = time.monotonic()
        if retry_after is not None and 0.0 < retry_after < 1.0:
            self._waits.append((now, retry_after))  # stale or not, the wait says something about R
        if sent_at < self._last_cut:
            return  # scheduled at the old rate, before the last cut: no news
        observed = self._trim(now)
        while self._waits and self._waits[0][0] < now - self.window_s:
            self._waits.popleft()
        # the longest recent wait is the tightest bound on R (never below it: no spiral)
        bound = 1.0 / max(wait for _, wait in self._waits) if self._waits else None
        few = len(self._admitted) < self.min_samples
        if (self.rate is None or self.slow_start) and few and bound is None:
            return  # too little traffic yet to say what the limit is
        self._last_cut, self.slow_start = now, False
        if few:  # an unpaced start's first burst: only the Retry-After bound is evidence
            floor, estimate = 0.1, bound if bound is not None else observed
        else:
            floor = 0.5 * max((rate for _, rate in self._peaks), default=observed)
            estimate = observed if bound is None else min(observed, bound)
            if bound is not None:
                floor = min(floor, estimate * self.backoff)  # peaks may include the start-up burst
        current = self.rate if self.rate is not None else estimate / self.backoff
        if self.announced_rate is not None:
            estimate = min(estimate, self.announced_rate)
        self.rate = max(floor, min(current * 0.95, estimate * self.backoff), 0.1)
        self._last_start = max(self._last_start, now)  # the next start waits a full new interval


class TokenBudget:
    """Tokens per minute: a sliding 60 s window of consumed tokens; callers wait while it is full."""

    def __init__(self, per_minute: int | None):
        self.per_minute = per_minute
        self._used: collections.deque[tuple[float, int]] = collections.deque()
        self._total = 0

    async def wait(self) -> None:
        if not self.per_minute:
            return
        while True:
            now = time.monotonic()
            while self._used and self._used[0][0] < now - 60.0:
                self._total -= self._used.popleft()[1]
            if self._total < self.per_minute or not self._used:
                return
            await asyncio.sleep(max(0.05, self._used[0][0] + 60.0 - now))

    def consume(self, tokens: int) -> None:
        if self.per_minute and tokens:
            self._used.append((time.monotonic(), tokens))
            self._total += tokens
