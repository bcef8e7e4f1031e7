"""How task fields look to a person, and back: labels, due dates, reminders, safe markdown.

Dates are calendar days in UTC: a task due on a day is due at the end of that day, and the
"due until" filter includes its day (the API's `due_before` is exclusive). A reminder
(`remind_at`) is a day and a time of day in UTC, to the minute; a day without a time is
reminded at REMIND_DEFAULT_TIME.
"""

from __future__ import annotations

import string
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

STATUS_LABELS = {"todo": "To do", "in_progress": "In progress", "done": "Done"}
PRIORITY_LABELS = {"low": "Low", "medium": "Medium", "high": "High", "urgent": "Urgent"}
SORT_LABELS = {
    "-created_at": "Newest first",
    "created_at": "Oldest first",
    "-updated_at": "Recently changed",
    "due_at": "Due soonest",
    "-due_at": "Due latest",
    "-priority": "Most urgent",
    "priority": "Least urgent",
}
PAGE_SIZES = (10, 20, 50, 100)
REMIND_DEFAULT_TIME = time(9, 0)

_MARKDOWN_SPECIAL = frozenset(string.punctuation)
# Streamlit's markdown (remark-gfm) links a bare address ("www.", "http://", "https://") or an
# email after escapes are resolved, searching each text node as a whole, so a backslash does
# not stop it (a character reference neither: it joins the same text node). A colour directive
# with no colour is Streamlit's bare <span>: the character in it is a text node of its own,
# which cuts the address where the search needs it whole. Checked in Chromium (Streamlit
# 1.67): no link, and the text reads and copies as it was typed.
_UNLINKED = ":color[\\{}]"
_BEFORE_UNLINKED = {".": ("www",), ":": ("http", "https"), "@": ("",)}
# Streamlit's markdown also turns some tokens standing alone in a text node into symbols
# (" -> " into " → ", " <-> " into " ↔ ", " -- " into " — ", " <= " into " ≤ "): the second
# character of every pair they are made of, kept apart the same way, leaves none whole in any
# text node, wherever the other spans cut it.
_SYMBOL_PAIRS = frozenset(("->", "<-", "--", ">=", "<=", "~="))


def plain(text: str) -> str:
    """`text` shown literally in st.markdown: every ASCII punctuation mark backslash-escaped,
    so a title cannot become a link, an image fetched from elsewhere, LaTeX or a directive;
    and the "." of "www.", the ":" of "http:", every "@" and the ">" of "->" kept apart,
    so no address or email in it becomes a link, nor an arrow a symbol. Its line breaks stay
    line breaks (markdown's hard break): a description or a comment of several lines was
    drawn as one."""
    shown = []
    for index, char in enumerate(text):
        if char == "\r":
            continue  # of a CRLF; the LF breaks the line
        if char == "\n":
            shown.append("  \n")
        elif (
            char in _BEFORE_UNLINKED
            and text[max(0, index - 5) : index].lower().endswith(_BEFORE_UNLINKED[char])
        ) or text[max(0, index - 1) : index + 1] in _SYMBOL_PAIRS:
            shown.append(_UNLINKED.format(char))
        elif char in _MARKDOWN_SPECIAL:
            shown.append("\\" + char)
        else:
            shown.append(char)
    return "".join(shown)


def parse_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def due_date(task: dict[str, Any]) -> date | None:
    moment = parse_timestamp(task.get("due_at"))
    return moment.date() if moment else None


def due_at_for(day: date | None) -> str | None:
    """The API timestamp for "due on `day`": the last second of that day, UTC."""
    if day is None:
        return None
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC).isoformat().replace("+00:00", "Z")


def start_of(day: date) -> str:
    return datetime.combine(day, time(0, 0), tzinfo=UTC).isoformat().replace("+00:00", "Z")


def day_after(day: date) -> date:
    return day + timedelta(days=1)


def remind_parts(task: dict[str, Any]) -> tuple[date | None, time | None]:
    """The task's reminder as the form's day and time of day (UTC, to the minute)."""
    moment = parse_timestamp(task.get("remind_at"))
    if moment is None:
        return None, None
    return moment.date(), moment.time().replace(second=0, microsecond=0)


def remind_at_for(day: date | None, at: time | None) -> str | None:
    """The API timestamp (RFC 3339, UTC) of a reminder on `day` at `at`; None (no reminder,
    or clear it) without a day."""
    if day is None:
        return None
    moment = datetime.combine(day, at or REMIND_DEFAULT_TIME, tzinfo=UTC)
    return moment.replace(second=0, microsecond=0).isoformat().replace("+00:00", "Z")


# A reminder's time chosen with no day: no reminder would be set.
REMINDER_NEEDS_A_DAY = "Choose the reminder's day too, or clear its time."


def reminder_refusal(remind_at: str | None, now: datetime) -> str | None:
    """Why a reminder chosen in a form would never be sent, in words; None when it will be.
    The API takes a time gone by (a reminder missed while no worker ran is sent late, up to
    a day), but one chosen in the past is a slip: said rather than kept silently."""
    moment = parse_timestamp(remind_at)
    if moment is not None and moment < now.replace(second=0, microsecond=0):
        # The time said: a day chosen without a time is at REMIND_DEFAULT_TIME.
        return (
            f"{moment:%Y-%m-%d %H:%M} UTC has already passed: choose a time to come, or "
            "clear the day."
        )
    return None


def remind_at_minute(task: dict[str, Any]) -> str | None:
    """The task's `remind_at` as the form would send it back unchanged (to the minute)."""
    return remind_at_for(*remind_parts(task))


def is_overdue(task: dict[str, Any], now: datetime) -> bool:
    moment = parse_timestamp(task.get("due_at"))
    return moment is not None and moment < now and task.get("status") != "done"


def summary_line(task: dict[str, Any], now: datetime) -> str:
    """Status, priority and due date of a task, as one markdown line."""
    parts = [
        STATUS_LABELS.get(str(task.get("status")), str(task.get("status"))),
        f"{PRIORITY_LABELS.get(str(task.get('priority')), str(task.get('priority')))} priority",
    ]
    day = due_date(task)
    if day is not None:
        parts.append(f"due {day.isoformat()}")
    remind = parse_timestamp(task.get("remind_at"))
    if remind is not None:
        parts.append(f"reminder {remind:%Y-%m-%d %H:%M} UTC")
    line = " · ".join(plain(part) for part in parts)
    if is_overdue(task, now):
        line += " · :red[**overdue**]"
    return line
