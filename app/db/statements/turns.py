"""Turns: the order in which the writers of one thing get their transaction ids (PostgreSQL).

The change feed orders transactions by xid (docs/decisions/0030), so a write must get its xid
after every writer of the same thing it waits for. Waiting for a row lock alone does not
ensure it: when several writers queue for one row, the one woken by a commit follows the
row's update chain under an xid it takes then, and may then wait for another waiter that got
there first (PostgreSQL's heap_lock_tuple), committing after a writer with a higher xid. So a
write first waits for its *turn*, a transaction-level advisory lock: waiting for one takes no
xid, and once it is granted the thing's last writer has committed, so the row locks (and the
xid with them) are taken at once.

Two kinds of turn order the feed. A task's: its writes (`task_write_turns` in the statement
itself on the hot task routes) and its comments' (`take_task_turns`). A project's: the
writes of the project, its members, invitations and labels take it (`take_project_turn`),
and so come in the feed in the order they committed; every write of a task of the project
takes it shared, after the task's (`task_write_turns`, `new_task_turn`), so a change of the
project waits for the task writes under way and comes after them. A transaction that takes
both kinds takes the tasks' turns first, in id order, then the project's, so that no two
transactions wait for each other's turns in a circle. On SQLite one writer at a time commits
in order: a turn is true there and nothing is taken.

A turn taken inside a statement is waited for after that statement's snapshot was taken
(READ COMMITTED takes it when the statement starts): what the writer it waited for changed
is seen only by a locked read, which finds a row as its last writer left it. So a task write
checks the caller's membership after its turns with one (`memberships.caller_role_now`);
a turn taken by a statement of its own needs none (the next statement's snapshot is newer).

A third kind has nothing to do with the feed: a refresh-token family's (`take_family_turn`).
Its rotations, replays and logouts come one at a time, each seeing what the one before it
committed (app/services/auth.py, decision 0011). It too is taken before any row lock, and a
transaction takes one family's turn at most.
"""

from __future__ import annotations

import enum
import hashlib
from functools import cache
from typing import Any, Final

from sqlalchemy import BigInteger, Boolean, ColumnElement, Select, bindparam, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from app.db.access import Db, Statement
from app.models.task import Task


class TurnOf(enum.IntEnum):
    """Whose turn: the advisory lock's first key (the kind's name in ASCII); the second is the
    id modulo 2^31 - 1 (past 2^31 ids, two things may share a turn: more waiting, and two
    writes of several tasks, taking turns in id order, may then deadlock: a 409, decision
    0036). A token family's id is a digest, so two families share a turn by chance at any
    scale (even odds among some 55,000 live ones): they only wait for each other."""

    TASK = 0x7461736B  # "task"
    PROJECT = 0x70726F6A  # "proj"
    TOKEN_FAMILY = 0x746F6B6E  # "tokn"; the id, a digest of the family's id


class _Turns(ColumnElement[bool]):
    """PostgreSQL: turns (transaction-level advisory locks), waited for one after the other,
    in the order given, where the expression is evaluated: in a scan, before the row lock;
    SQLite: true. Each turn is of a kind, an id (a column or a bind parameter) and whether it
    is shared (a task write's turn of its project: the project's own writes wait for every
    task write of it under way, and task writes do not wait for each other)."""

    __visit_name__ = "write_turns"
    inherit_cache = True
    type = Boolean()

    _traverse_internals = [
        ("ids", InternalTraversal.dp_clauseelement_tuple),
        ("kinds", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, *turns: tuple[TurnOf, bool, ColumnElement[Any]]) -> None:
        self.kinds = tuple((of, shared) for of, shared, _ in turns)
        self.ids = tuple(entity_id for _, _, entity_id in turns)


@compiles(_Turns, "postgresql")
def _turns_postgresql(element: _Turns, compiler: SQLCompiler, **kw: Any) -> str:
    # Each function returns void, as text ''; their concatenation is evaluated left to right
    # (PostgreSQL evaluates a function's arguments in order), so the turns are taken in the
    # order given, and the comparison lets the whole stand in a WHERE clause.
    calls = [
        f"pg_advisory_xact_lock{'_shared' if shared else ''}"
        f"({int(of)}, ({compiler.process(entity_id, **kw)} % 2147483647)::integer)::text"
        for (of, shared), entity_id in zip(element.kinds, element.ids, strict=True)
    ]
    return f"({' || '.join(calls)}) = ''"


@compiles(_Turns)
def _turns(element: _Turns, compiler: SQLCompiler, **kw: Any) -> str:  # noqa: ARG001
    return "1 = 1"


def write_turn(task_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """The turn of the task `task_id` among its writers, taken before any of them locks its
    row or writes anything (true once taken; held until the transaction ends). A write of
    several tasks takes all their turns first, in id order (`turns_of`)."""
    return _Turns((TurnOf.TASK, False, task_id))


def task_write_turns(task_id: ColumnElement[Any], project_id: Any) -> ColumnElement[bool]:
    """The turn of the task `task_id`, then the shared turn of its project `project_id`:
    a write of a task in a project, which comes in the feed after the project's writes,
    membership changes and label deletions that committed before it, and before those that
    commit after it (they wait for it)."""
    return _Turns((TurnOf.TASK, False, task_id), (TurnOf.PROJECT, True, project_id))


def new_task_turn(project_id: Any) -> ColumnElement[bool]:
    """The shared turn of the project a task is created in (`task_write_turns`)."""
    return _Turns((TurnOf.PROJECT, True, project_id))


def project_turn(project_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """The turn of the project `project_id` among the writers of it, its members, its
    invitations and its labels; they also wait for the task writes of it under way."""
    return _Turns((TurnOf.PROJECT, False, project_id))


# At most this many turns in one transaction. Each is an entry in PostgreSQL's shared lock
# table (about max_locks_per_transaction × max_connections entries for all sessions): a write
# of more tasks (a label on thousands) takes none, rather than fill it.
TURNS_MAX: Final = 32


def turns_of(tasks: Select[Any]) -> Statement:
    """The turns (`write_turn`) of the tasks whose ids `tasks` selects, in id order (the
    expression is volatile: PostgreSQL evaluates it after the ORDER BY), when there are at
    most `TURNS_MAX` of them; none otherwise. For a write of several tasks, before it locks
    or writes anything."""
    found = tasks.add_columns(func.count().over().label("found")).subquery("turns_of")
    return Statement(
        select(write_turn(found.c.id)).where(found.c.found <= TURNS_MAX).order_by(found.c.id)
    )


@cache
def _family_turn_statement() -> Statement:
    family = bindparam("family", type_=BigInteger)
    return Statement(select(_Turns((TurnOf.TOKEN_FAMILY, False, family))))


@cache
def _project_turn_statement() -> Statement:
    return Statement(select(project_turn(bindparam("project_id", type_=BigInteger))))


@cache
def _task_turn_statement() -> Statement:
    return Statement(select(write_turn(bindparam("task_id", type_=BigInteger))))


@cache
def _task_project_turn_statement() -> Statement:
    task_id = bindparam("task_id", type_=BigInteger)
    return Statement(select(new_task_turn(Task.project_id)).where(Task.id == task_id))


async def take_project_turn(db: Db, project_id: int) -> None:
    """Wait for the project's turn, as the first statement of a write of the project, its
    members, invitations or labels (on PostgreSQL; SQLite needs none)."""
    if db.dialect.name == "postgresql":
        await db.rows(_project_turn_statement(), {"project_id": project_id})


async def take_task_turns(db: Db, task_id: int) -> None:
    """Wait for the task's turn, then its project's shared one (`task_write_turns`), as the
    first statements of a write of its comments (on PostgreSQL; SQLite needs none). Two
    statements: the second reads the task's project after the turn, as the writer it may
    have waited for (a move) left it."""
    if db.dialect.name == "postgresql":
        await db.rows(_task_turn_statement(), {"task_id": task_id})
        await db.rows(_task_project_turn_statement(), {"task_id": task_id})


async def take_family_turn(db: Db, family_id: str) -> None:
    """Wait for the turn of the refresh-token family `family_id` (PostgreSQL; SQLite needs
    none), before the write of its tokens locks or reads anything more of it."""
    if db.dialect.name == "postgresql":
        digest = hashlib.blake2b(family_id.encode(), digest_size=7).digest()
        await db.rows(_family_turn_statement(), {"family": int.from_bytes(digest, "big")})
