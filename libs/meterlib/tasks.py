"""Background tasks that stop within a bound, so a service's shutdown never hangs on one of them."""

from __future__ import annotations

import asyncio

from meterlib.logs import get_logger

log = get_logger("meterlib.tasks")


async def stop_task(task: asyncio.Task[None] | None, within_seconds: float = 5.0) -> None:
    """Cancel ``task`` and wait for it to end, at most ``within_seconds``; then give up on it (logged),
    so that a task stuck in a library call that ignores cancellation does not hold up shutdown."""
    if task is None or task.done():
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=within_seconds)
    if not done:
        log.warning("task.stop_timed_out", task=task.get_name(), timeout_s=within_seconds)
