"""Case-insensitive "contains" that folds all of Unicode on both databases.

PostgreSQL's ILIKE folds every letter; SQLite's LIKE and lower() fold ASCII only. On SQLite
each connection registers `unicode_lower` (Python's str.lower) and the expression compiles
to `unicode_lower(column) LIKE unicode_lower(pattern)`. The built-in lower() is left alone:
an index (the unique lower(email)) depends on it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BindParameter, Boolean, ColumnElement
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.expression import FunctionElement

SQLITE_LOWER_FUNCTION = "unicode_lower"
_ESCAPE = "\\"


class _ContainsInsensitive(FunctionElement[bool]):
    type = Boolean()
    inherit_cache = True
    name = "contains_insensitive"


def contains_pattern(text: str) -> str:
    """The LIKE pattern of "contains `text`": its wildcards and escape character are literal."""
    escaped = text.replace(_ESCAPE, _ESCAPE * 2).replace("%", "\\%").replace("_", "\\_")
    return "%" + escaped + "%"


def contains_insensitive(
    column: ColumnElement[Any] | InstrumentedAttribute[Any], pattern: BindParameter[str]
) -> ColumnElement[bool]:
    """`column` contains the text whose `contains_pattern` is the value of `pattern` (a bind
    parameter, so the statement is compiled once), ignoring case."""
    return _ContainsInsensitive(column, pattern)


@compiles(_ContainsInsensitive)
def _compile_default(element: _ContainsInsensitive, compiler: Any, **kw: Any) -> str:
    column, pattern = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"{column} ILIKE {pattern} ESCAPE '\\'"


@compiles(_ContainsInsensitive, "sqlite")
def _compile_sqlite(element: _ContainsInsensitive, compiler: Any, **kw: Any) -> str:
    column, pattern = (compiler.process(clause, **kw) for clause in element.clauses)
    lower = SQLITE_LOWER_FUNCTION
    return f"{lower}({column}) LIKE {lower}({pattern}) ESCAPE '\\'"


def sqlite_unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value
