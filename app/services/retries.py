"""A write that a concurrent change refused, made again.

A write's statement decides inside itself whether it may be made (decision 0026); when it
matches nothing, a second, read-only statement tells why, and the answer follows from it.
When that read finds nothing that refuses the write (the project restored, the membership
back, the task in the trash after all), the first statement met a change that committed
between the two: what refused it is gone, and the write is made again, as the client would
do. After `ATTEMPTS` such starts the answer is the 409 of a concurrent update, to send again
(decision 0036).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from app.core.errors import AppError, ConcurrentUpdate

# How many times a write starts when a concurrent change refused it and is gone by the read
# that tells why; each time another change committed in between, so past a few the client
# is better told to send it again. Five: a change of a task's fields that waited behind a
# move of the task starts again in its new project (`task._versioned_detail_update`), and
# three editors moving one task back and forth while others edit it must not starve them.
ATTEMPTS: Final = 5

Written = TypeVar("Written")


async def made_again_while_allowed(
    write: Callable[[], Awaitable[Written | None]],
    refusal: Callable[[], Awaitable[AppError | None]],
) -> Written:
    """`write`'s result; when it matched nothing (None), `refusal`'s error, or, when that
    finds none (None: allowed now), `write` again."""
    for _ in range(ATTEMPTS):
        written = await write()
        if written is not None:
            return written
        error = await refusal()
        if error is not None:
            raise error
    raise ConcurrentUpdate()
