"""Stopping background tasks within a bound."""

from __future__ import annotations

import asyncio

from meterlib.tasks import stop_task


async def test_a_cancellable_task_is_stopped() -> None:
    task = asyncio.create_task(asyncio.sleep(60))
    await stop_task(task, within_seconds=1)
    assert task.cancelled()


async def test_a_task_that_ignores_cancellation_is_given_up_on() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                continue  # a library swallowing the cancellation

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_task(task, within_seconds=0.1), timeout=5)
    assert not task.done()
    release.set()
    task.cancel()
    await asyncio.wait({task}, timeout=5)


async def test_nothing_to_stop() -> None:
    await stop_task(None)
