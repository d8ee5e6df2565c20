"""Background workers: loops that claim due entries of a schedule and handle them.

They run inside every `payrelay serve` process (started and stopped by the app's lifespan) or on
their own (`payrelay worker`). On shutdown they stop claiming, finish what is in hand, and hand
back any claim they still hold.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from service import keys
from service.clock import now_ms
from service.schedule import Claim, Schedule
from service.store import StoreUnavailable

log = logging.getLogger("payrelay.workers")

IDLE_SECONDS = keys.WAKE_HORIZON_MS / 1000  # the longest an idle worker waits before it looks again


class Finished:
    """What ``handle`` answers when it ended the claim itself (in the script that recorded the
    outcome): nothing is left to reschedule."""


FINISHED = Finished()


class Worker(abc.ABC):
    name: str
    schedule: Schedule
    # Entries handled at once, and the most claims held at once: a tick claims no more than it
    # can work on right away, so a lease only ever has to cover the handling of one entry.
    concurrency = 32
    soonest: int | None = None  # the first score of its schedule at its last tick (ms)

    def __init__(self) -> None:
        self._in_hand: set[asyncio.Task[None]] = set()  # the entries being handled

    @abc.abstractmethod
    async def handle(self, claim: Claim, now: int) -> int | Finished | None:
        """Handle one claimed entry (``claim.record``: its hash as claimed); answer when to look
        at it again (ms), None when done, or FINISHED when it ended the claim itself."""

    @abc.abstractmethod
    async def retry_at(self, claim: Claim, now: int, exc: Exception) -> int:
        """When to try again after ``handle`` raised."""

    async def report(self, backlog: int, oldest_due_ms: int | None, now: int) -> None:  # noqa: B027
        """Backlog gauges; optional."""

    async def aclose(self) -> None:  # noqa: B027
        """Release what the worker holds (HTTP clients…); called once when its pool stops."""

    async def tick(self) -> int:
        """Claim what is due now, as much as there is room for, and handle it; answer how many
        entries it claimed. While more is due than there is room for, a tick returns once half
        the room is free again, so the next claims go out while the slower entries are still in
        hand (no entry waits for the slowest of a batch); else once all it holds is handled.
        ``soonest`` is then when the next entry falls due."""
        in_hand = self._in_hand
        now = now_ms()
        look = await self.schedule.look(now)
        self.soonest = look.soonest
        backlog = sum(look.counts.values())
        await self.report(backlog, look.oldest_due, now)
        claims = await self.schedule.claim_due(look.counts, now, self.concurrency - len(in_hand))
        for claim in claims:
            task = asyncio.create_task(self._one(claim), name=f"{self.name} {claim.id}")
            in_hand.add(task)
            task.add_done_callback(in_hand.discard)
        keep = self.concurrency // 2 if backlog > len(claims) else 0
        while len(in_hand) > keep:
            await asyncio.wait(in_hand, return_when=asyncio.FIRST_COMPLETED)
        return len(claims)

    async def settle(self) -> None:
        """Wait until the entries in hand are handled (shutdown); cancelled, cancel them too."""
        in_hand = self._in_hand
        try:
            while in_hand:
                await asyncio.wait(in_hand)
        except asyncio.CancelledError:
            for task in in_hand:
                task.cancel()
            raise

    async def _one(self, claim: Claim) -> None:
        next_ms: int | Finished | None
        try:
            next_ms = await self.handle(claim, now_ms())
        except Exception as exc:
            log.warning("%s: %s", self.name, exc, extra={"worker": self.name, "outcome": "retry",
                                                         "entry": claim.id},
                        exc_info=not isinstance(exc, StoreUnavailable))
            next_ms = await self.retry_at(claim, now_ms(), exc)
        if isinstance(next_ms, Finished):
            self.schedule.forget(claim)
        else:
            await self.schedule.finish(claim, next_ms)


class WorkerPool:
    """The workers of one process, each looping over its schedule: a tick handles what is due;
    an idle worker sleeps until the soonest entry it saw, ``idle_seconds`` at most (the scripts'
    ``WAKE_HORIZON_MS``), and an entry another process schedules sooner wakes it: the scripts
    announce those on the schedule's channel (``keys.wake``), to which the pool listens. So an
    idle process costs a few Redis commands a second and still reacts at once."""

    def __init__(self, redis: Any, workers: list[Worker], idle_seconds: float = IDLE_SECONDS) -> None:
        self.redis = redis
        self.workers = workers
        self.idle_seconds = idle_seconds
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._last_tick: dict[str, float] = {}
        self._wake = {worker.name: asyncio.Event() for worker in workers}
        self._asleep_until: dict[str, int | None] = dict.fromkeys(self._wake)  # ms; None: awake

    def start(self) -> None:
        for worker in self.workers:
            self._last_tick[worker.name] = time.monotonic()
            self._tasks[worker.name] = asyncio.create_task(self._loop(worker), name=worker.name)
        self._tasks["heartbeat"] = asyncio.create_task(self._heartbeat(), name="heartbeat")
        self._tasks["wake"] = asyncio.create_task(self._listen(), name="wake")

    async def _loop(self, worker: Worker) -> None:
        wake = self._wake[worker.name]
        while not self._stopping.is_set():
            wake.clear()  # what is announced from here on wakes the worker once it is idle
            self._asleep_until[worker.name] = None
            try:
                handled = await worker.tick()
            except StoreUnavailable as exc:
                log.error("%s: Redis unavailable: %s", worker.name, exc, extra={"worker": worker.name})
                handled = 0
            except Exception:
                log.exception("%s: tick failed", worker.name, extra={"worker": worker.name})
                handled = 0
            self._last_tick[worker.name] = time.monotonic()
            if not handled:
                now = now_ms()
                until = now + int(self.idle_seconds * 1000)
                if worker.soonest is not None:
                    until = max(now, min(until, worker.soonest))
                self._asleep_until[worker.name] = until
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), (until - now) / 1000)
        await worker.settle()

    async def _listen(self) -> None:
        """Wake a worker when an entry of its schedule is announced due before it would look.
        Best effort: while it cannot listen, the workers' sleeps keep their limit."""
        by_channel = {worker.schedule.channel: worker.name for worker in self.workers}
        while not self._stopping.is_set():
            pubsub = None
            try:
                if isinstance(self.redis, RedisCluster):  # its pubsub picks a node by the slots it
                    await self.redis.initialize()  # learns here (a KeyError before)
                pubsub = self.redis.pubsub()
                await pubsub.subscribe(*by_channel)
                while not self._stopping.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    name = by_channel.get(message["channel"])
                    if name is None:
                        continue
                    asleep_until = self._asleep_until[name]
                    if asleep_until is None or int(message["data"]) < asleep_until:
                        self._wake[name].set()
            except Exception as exc:  # any trouble: listen again in a second
                log.warning("wake-ups unavailable: %s: %s", type(exc).__name__, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.aclose()

    async def _heartbeat(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(RedisError, OSError):
                alive = ",".join(name for name, ok in self.alive().items() if ok)
                await self.redis.set(keys.worker(self.instance), alive, ex=keys.HEARTBEAT_TTL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), keys.HEARTBEAT_TTL / 3)

    def alive(self) -> dict[str, bool]:
        """Per worker: its loop runs and has completed a tick recently."""
        now = time.monotonic()
        return {
            worker.name: not self._tasks[worker.name].done()
            and now - self._last_tick[worker.name] < keys.HEARTBEAT_TTL
            for worker in self.workers if worker.name in self._tasks
        }

    async def stop(self, timeout: float = 15.0) -> None:
        """Stop claiming, let in-hand work finish (up to ``timeout``), hand back what is held."""
        self._stopping.set()
        for wake in self._wake.values():
            wake.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for worker in self.workers:
            with contextlib.suppress(StoreUnavailable):
                await worker.schedule.release_all(now_ms())
            await worker.aclose()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(keys.worker(self.instance))
