"""A connection pool that serves waiting requests first come, first served.

SQLAlchemy's asyncio pool keeps its idle connections in an `asyncio.Queue`, and a request that
asks for one first tries to take one without waiting. When a connection comes back while
others wait, the queue wakes the longest waiter, but until that waiter's task runs the
connection sits in the queue, and any request that reaches its checkout in between (on a busy
event loop, many do) takes it; the woken waiter finds the queue empty and goes to the back of
the line. Under load (more requests in flight in a worker than its pool holds: the kernel can
give one worker two thirds of the connections) a few requests lost their turn dozens of times
and waited hundreds of milliseconds, which was most of the service's tail latency under a
sustained mixed load (docs/performance.md, "The mixed load's tail").

`FairAsyncQueuePool` is SQLAlchemy's `AsyncAdaptedQueuePool` with one change, its queue: a
connection that comes back while requests wait is handed to the longest-waiting one directly,
so idle connections exist only while nobody waits, and a waiter is served before any newcomer.
A waiter that gives up (its `pool_timeout` passed, or its request was cancelled) after a
connection was handed to it passes that connection on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import queue as sqla_queue
from sqlalchemy.util.concurrency import await_


class FirstComeFirstServedQueue(sqla_queue.QueueCommon[Any]):
    """The pool's queue of idle connections, handing each returned one to the longest waiter.

    Its methods are called by the pool's synchronous code, which runs in SQLAlchemy's
    greenlets inside the event loop: a wait is awaited with `await_`, as SQLAlchemy's own
    asyncio queue does.
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._idle: deque[Any] = deque()
        self._waiters: deque[asyncio.Future[Any]] = deque()

    def empty(self) -> bool:
        return not self._idle

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._idle)

    def qsize(self) -> int:
        return len(self._idle)

    def put_nowait(self, item: Any) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a waiter that gave up has no use for it
                waiter.set_result(item)
                return
        if self.full():
            raise sqla_queue.Full()
        self._idle.append(item)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:  # noqa: ARG002
        self.put_nowait(item)  # handing over or keeping a connection never waits

    def get_nowait(self) -> Any:
        if not self._idle:
            raise sqla_queue.Empty()
        return self._idle.pop() if self.use_lifo else self._idle.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if self._idle:  # idle connections exist only while nobody waits: none is skipped
            return self.get_nowait()
        if not block:
            raise sqla_queue.Empty()
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await_(self._wait(waiter, timeout))
        except TimeoutError:
            raise sqla_queue.Empty() from None

    async def _wait(self, waiter: asyncio.Future[Any], timeout: float | None) -> Any:
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.put_nowait(waiter.result())  # handed over, then given up: pass it on
            else:
                waiter.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            raise


class FairAsyncQueuePool(AsyncAdaptedQueuePool):
    """`AsyncAdaptedQueuePool` whose waiters are served first come, first served."""

    _queue_class = FirstComeFirstServedQueue
    # The pool logs under SQLAlchemy's name, as its own pools do, not under `app.` (whose
    # handlers and INFO level are the service's request log).
    _sqla_logger_namespace = "sqlalchemy.pool.impl.FairAsyncQueuePool"
