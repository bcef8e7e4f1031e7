"""Events of the history (spec api-v2 section 7) in words: who changed what, from what to what.

Pure functions, no Streamlit and no HTTP: `sentence` turns one event into one sentence
("Ada Lovelace changed the title from “Draft” to “Final” and set the priority from low to
urgent"), `moment` says when it happened. Ids are named from what the client already knows
(`Names`: the person's projects, the project's members, labels and tasks); what it does not
know is named by its id ("project #12"). A null actor is the system. The sentences hold text
that people typed (titles, comments): the screens show them literally, never as markdown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from task_fields import PRIORITY_LABELS, STATUS_LABELS, parse_timestamp

QUOTE_LIMIT = 80  # longer text (a comment, a description) is cut to this many characters
SYSTEM = "System"
# A due date the client sets is the last second of a UTC day: shown as the day alone.
_END_OF_DAY = time(23, 59, 59)


@dataclass(frozen=True)
class Names:
    """What the client knows to name ids by: {id: name} of people, projects, labels, tasks."""

    people: Mapping[int, str] = field(default_factory=dict)
    projects: Mapping[int, str] = field(default_factory=dict)
    labels: Mapping[int, str] = field(default_factory=dict)
    tasks: Mapping[int, str] = field(default_factory=dict)
    # Members' email addresses: who answered an invitation, and who revoked one.
    emails: Mapping[int, str] = field(default_factory=dict)

    def person(self, user_id: Any) -> str:
        return _named(self.people, user_id, "user")

    def project(self, project_id: Any) -> str:
        return _named(self.projects, project_id, "project")

    def label(self, label_id: Any) -> str:
        return _named(self.labels, label_id, "label")

    def the_label(self, label_id: Any) -> str:
        """A label in a sentence: "the label Bug", or "label #5" when its name is not known
        (not "the label label #5")."""
        return _the(self.labels, label_id, "label")


def _the(known: Mapping[int, str], item_id: Any, kind: str) -> str:
    name = _named(known, item_id, kind)
    return name if name == f"{kind} #{item_id}" else f"the {kind} {name}"


def _named(known: Mapping[int, str], item_id: Any, kind: str) -> str:
    try:
        name = known.get(int(item_id))
    except (TypeError, ValueError):
        name = None
    return name if name else f"{kind} #{item_id}"


def person_name(user: Mapping[str, Any]) -> str:
    """How a person is named in a sentence: their full name, else their email."""
    return str(user.get("full_name") or user.get("email") or f"user #{user.get('id')}")


def quoted(text: Any, limit: int = QUOTE_LIMIT) -> str:
    """Typed text between quotes, on one line, cut to `limit` characters."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return f"“{flat}”"


def moment(value: Any) -> str:
    """A timestamp of the API as a person reads it: "6 Dec 2026, 05:18 UTC"."""
    when = parse_timestamp(value)
    if when is None:
        return str(value)
    return f"{when.day} {when:%b %Y, %H:%M} UTC"


def day_or_moment(value: Any) -> str:
    """A due date: the day alone when it is the end of a day (as this client sets them)."""
    when = parse_timestamp(value)
    if when is None:
        return str(value)
    if when.timetz().replace(tzinfo=None) == _END_OF_DAY:
        return f"{when.day} {when:%b %Y}"
    return moment(value)


def listed(words: Sequence[str]) -> str:
    """["a"] -> "a"; ["a", "b", "c"] -> "a, b and c"."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def actor(event: Mapping[str, Any], names: Names) -> str:
    """Who made the change: their name, or "System" (purges and other work of the service)."""
    who = event.get("actor")
    if not isinstance(who, Mapping):
        return SYSTEM
    return str(who.get("full_name") or names.person(who.get("id")))


def _ids(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _added_and_removed(old: Any, new: Any) -> tuple[list[Any], list[Any]]:
    before, after = _ids(old), _ids(new)
    return [i for i in after if i not in before], [i for i in before if i not in after]


def _status(value: Any) -> str:
    return STATUS_LABELS.get(str(value), str(value))


def _priority(value: Any) -> str:
    return PRIORITY_LABELS.get(str(value), str(value)).lower()


def _set_or_changed(what: str, old: Any, new: Any, show: Callable[[Any], str]) -> str:
    """A value set, removed or changed: "set the due date to …", "removed the due date",
    "changed the due date from … to …"."""
    if old is None:
        return f"set {what} to {show(new)}"
    if new is None:
        return f"removed {what}"
    return f"changed {what} from {show(old)} to {show(new)}"


# --- tasks ---------------------------------------------------------------------------------


def _task_field(name: str, old: Any, new: Any, names: Names) -> list[str]:
    """What one changed field of a task says; some fields say nothing by themselves."""
    if name == "title":
        return [f"changed the title from {quoted(old)} to {quoted(new)}"]
    if name == "description":
        if old is None or old == "":
            return [f"added the description {quoted(new)}"]
        if new is None or new == "":
            return ["removed the description"]
        return [f"changed the description to {quoted(new)}"]
    if name == "status":
        return [f"set the status from {_status(old)} to {_status(new)}"]
    if name == "priority":
        return [f"set the priority from {_priority(old)} to {_priority(new)}"]
    if name == "due_at":
        return [_set_or_changed("the due date", old, new, day_or_moment)]
    if name == "remind_at":
        if old is None:
            return [f"set a reminder for {moment(new)}"]
        if new is None:
            return ["removed the reminder"]
        return [f"moved the reminder from {moment(old)} to {moment(new)}"]
    if name == "completed_at":
        if new is None:
            return ["marked the task not completed"]
        return [f"marked the task completed at {moment(new)}"]
    if name == "deleted_at":
        return ["moved the task to the trash" if new is not None else "restored the task"]
    if name == "project_id":
        return [f"moved the task from {names.project(old)} to {names.project(new)}"]
    if name == "assignee_ids":
        added, removed = _added_and_removed(old, new)
        phrases = []
        if added:
            phrases.append("assigned " + listed([names.person(i) for i in added]))
        if removed:
            phrases.append("unassigned " + listed([names.person(i) for i in removed]))
        return phrases
    if name == "label_ids":
        added, removed = _added_and_removed(old, new)
        phrases = []
        for verb, ids in (("added", added), ("removed", removed)):
            if len(ids) == 1:
                phrases.append(f"{verb} {names.the_label(ids[0])}")
            elif ids:
                phrases.append(f"{verb} the labels " + listed([names.label(i) for i in ids]))
        return phrases
    return [_generic_field(name, old, new)]


def _generic_field(name: str, old: Any, new: Any) -> str:
    what = name.replace("_", " ")
    return _set_or_changed(what, old, new, quoted)


def _field_phrases(
    changes: Mapping[str, Any],
    describe: Callable[[str, Any, Any], list[str]],
    skip: Iterable[str] = (),
) -> list[str]:
    left_out = set(skip)
    phrases: list[str] = []
    for name, pair in changes.items():
        if name in left_out:
            continue
        old, new = pair if isinstance(pair, list | tuple) and len(pair) == 2 else (None, pair)
        phrases.extend(describe(name, old, new))
    return phrases


def _task_title(event: Mapping[str, Any], names: Names) -> str | None:
    """The task's name for a sentence on the project's page: its title now if known, else
    the one the event holds."""
    task_id = event.get("entity_id")
    title = names.tasks.get(int(task_id)) if isinstance(task_id, int) else None
    if title is None:
        old, new = _pair(event.get("changes") or {}, "title")
        title = new if new is not None else old
    return None if title is None else str(title)


def _pair(changes: Mapping[str, Any], name: str) -> tuple[Any, Any]:
    pair = changes.get(name)
    if isinstance(pair, list | tuple) and len(pair) == 2:
        return pair[0], pair[1]
    return None, None


def _task(event: Mapping[str, Any], names: Names, in_task: bool) -> str:
    action = str(event.get("action"))
    changes: Mapping[str, Any] = event.get("changes") or {}
    title = _task_title(event, names)
    if in_task:
        the_task = "the task"
    else:
        the_task = f"the task {quoted(title)}" if title else f"task #{event.get('entity_id')}"

    def fields(*skip: str) -> list[str]:
        return _field_phrases(
            changes, lambda n, o, v: _task_field(n, o, v, names), skip=("deleted_at", *skip)
        )

    if action == "created":
        # The title it was created with: what happened then, whatever it is called now.
        _, first = _pair(changes, "title")
        return f"created the task {quoted(first or title)}" if first or title else "created a task"
    if action in ("deleted", "restored", "purged"):
        phrases = [f"{action} {the_task}"] + fields("title")
        return listed(phrases)
    if action == "moved":
        old, new = _pair(changes, "project_id")
        moved = f"moved {the_task}"
        if old is not None and new is not None:
            moved += f" from {names.project(old)} to {names.project(new)}"
        return listed([moved, *fields("project_id")])
    # The time a task was done says nothing more than its new status does.
    phrases = fields("completed_at") if "status" in changes else fields()
    if not phrases:
        return f"changed {the_task}"
    if in_task:
        return listed(phrases)
    return f"changed {the_task}: " + listed(phrases)


# --- everything else -----------------------------------------------------------------------


def _comment(event: Mapping[str, Any], names: Names, in_task: bool) -> str:
    """A comment's event; on the project's page, naming the task it is on."""
    action = str(event.get("action"))
    old, new = _pair(event.get("changes") or {}, "body")
    task_id = event.get("task_id")
    on = ""
    if not in_task and isinstance(task_id, int):
        title = names.tasks.get(task_id)
        on = f" on the task {quoted(title)}" if title else f" on task #{task_id}"
    if action == "created":
        return f"commented{on}: {quoted(new)}" if new is not None else f"commented{on}"
    if action == "updated":
        # Old and new, as a title's change is told: the event holds both.
        edited = f"edited a comment{on}"
        if old is not None and new is not None:
            return f"{edited} from {quoted(old)} to {quoted(new)}"
        return f"{edited}: {quoted(new)}" if new is not None else edited
    if action in ("deleted", "purged"):
        return f"{action} a comment{on}" + (f": {quoted(old)}" if old is not None else "")
    return f"{_verb(action)} a comment{on}"


def _project(event: Mapping[str, Any]) -> str:
    action = str(event.get("action"))
    changes: Mapping[str, Any] = event.get("changes") or {}
    old, new = _pair(changes, "name")
    if action == "created":
        return f"created the project {quoted(new)}" if new is not None else "created the project"
    if action in ("deleted", "restored", "purged"):
        return f"{action} the project"

    def field_phrase(name: str, before: Any, after: Any) -> list[str]:
        if name == "name":
            return [f"renamed the project from {quoted(before)} to {quoted(after)}"]
        if name == "description":
            return _task_field("description", before, after, Names())
        if name == "deleted_at":
            return ["moved the project to the trash" if after else "restored the project"]
        return [_generic_field(name, before, after)]

    phrases = _field_phrases(changes, field_phrase)
    return listed(phrases) if phrases else "changed the project"


def _member(event: Mapping[str, Any], names: Names) -> str:
    action = str(event.get("action"))
    old, new = _pair(event.get("changes") or {}, "role")
    who = event.get("actor")
    by_themselves = isinstance(who, Mapping) and who.get("id") == event.get("entity_id")
    member = names.person(event.get("entity_id"))
    if by_themselves and member.startswith("user #"):
        member = actor(event, names)  # a former member is still named by their own event
    if action == "joined":
        role = f" as {new}" if new else ""
        return f"joined the project{role}" if by_themselves else f"added {member}{role}"
    if action == "left":
        return "left the project"
    if action == "removed":
        return f"removed {member} from the project"
    if action == "role_changed":
        whose = "their own role" if by_themselves else f"the role of {member}"
        return f"changed {whose}" + (f" from {old} to {new}" if old and new else "")
    return f"{_verb(action)} the member {member}"


def _invitation(event: Mapping[str, Any], names: Names) -> str:
    action = str(event.get("action"))
    changes: Mapping[str, Any] = event.get("changes") or {}
    old_email, new_email = _pair(changes, "email")
    old_role, new_role = _pair(changes, "role")
    if action == "created":
        return "invited " + (new_email or "someone") + (f" as {new_role}" if new_role else "")
    if action == "updated":
        phrases = ["renewed an invitation"]
        if "role" in changes:
            phrases.append(f"changed its role from {old_role} to {new_role}")
        _, until = _pair(changes, "expires_at")
        if until is not None:
            phrases.append(f"made it last until {moment(until)}")
        return listed(phrases)
    email = old_email or new_email
    of = f"the invitation of {email}" if email else "an invitation"
    if action == "deleted":
        # Accepted, declined or revoked: the event does not say which. Only the invitee
        # answers it, so a member whose address is another's revoked it; an actor whose
        # address the client does not know (not a member: perhaps one who declined) closed it.
        who = event.get("actor")
        actor_id = who.get("id") if isinstance(who, Mapping) else None
        actor_email = names.emails.get(actor_id) if isinstance(actor_id, int) else None
        if not actor_email or not email:
            return f"closed {of}"
        if actor_email.lower() == str(email).lower():
            return "answered their invitation"
        return f"revoked {of}"
    return f"{_verb(action)} {of}"


def _label(event: Mapping[str, Any], names: Names) -> str:
    action = str(event.get("action"))
    changes: Mapping[str, Any] = event.get("changes") or {}
    old_name, new_name = _pair(changes, "name")
    old_color, new_color = _pair(changes, "color")
    label_id = event.get("entity_id")

    def the_label(name: Any) -> str:
        """By the name the event holds, else as the page knows it (or by its id)."""
        return f"the label {name}" if name else names.the_label(label_id)

    if action == "created":
        return f"created {the_label(new_name)}"
    if action in ("deleted", "purged"):
        return f"{action} {the_label(old_name)}"
    phrases = []
    if "name" in changes:
        phrases.append(f"renamed the label {old_name} to {new_name}")
    if "color" in changes:
        label = the_label(new_name)
        phrases.append(f"changed the colour of {label} from {old_color} to {new_color}")
    if not phrases:
        return f"{_verb(action)} {the_label(None)}"
    return listed(phrases)


def _verb(action: str) -> str:
    return action.replace("_", " ")


def sentence(event: Mapping[str, Any], names: Names, *, in_task: bool = False) -> str:
    """One event in words, its actor first. `in_task`: it is shown under its task (so "the
    task" needs no title); otherwise on the project's page, where a task is named."""
    entity = str(event.get("entity"))
    if entity == "task":
        what = _task(event, names, in_task)
    elif entity == "comment":
        what = _comment(event, names, in_task)
    elif entity == "project":
        what = _project(event)
    elif entity == "member":
        what = _member(event, names)
    elif entity == "invitation":
        what = _invitation(event, names)
    elif entity == "label":
        what = _label(event, names)
    else:
        what = f"{_verb(str(event.get('action')))} {entity} #{event.get('entity_id')}"
    return f"{actor(event, names)} {what}"


def label_names(events: Iterable[Mapping[str, Any]]) -> dict[int, str]:
    """The newest name each label has in `events` (newest first): a label deleted since is
    still named by its own events in the sentences about the tasks it was taken off."""
    return _newest(events, "label", "name")


def task_titles(events: Iterable[Mapping[str, Any]]) -> dict[int, str]:
    """The newest title each task has in `events` (newest first), to name tasks by."""
    return _newest(events, "task", "title")


def _newest(events: Iterable[Mapping[str, Any]], entity: str, name: str) -> dict[int, str]:
    found: dict[int, str] = {}
    for event in events:
        item_id = event.get("entity_id")
        if event.get("entity") != entity or not isinstance(item_id, int) or item_id in found:
            continue
        old, new = _pair(event.get("changes") or {}, name)
        value = new if new is not None else old
        if value is not None:
            found[item_id] = str(value)
    return found
