"""History in words: the current project's Activity screen (/activity), and the History
section under a task (drawn under its comments on the task list, turned on by "Show history").

Both read the newest events first, a page at a time; "Load more" shows the next page under
them. What was shown is read again from the newest on every run, so a change made meanwhile
appears at the top and nothing in between is skipped. Each event is one sentence
(history.py) with its time; names come from what the screen already read (the project's
members and labels, the person's projects), the rest are named by id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st

from api_client import ApiError, ApiSession
from history import Names, label_names, moment, person_name, sentence, task_titles
from task_fields import plain
from ui import show_read_error
from workspace import Workspace

PAGE_SIZE = 20  # events per page, and how many more "Load more" shows
Reader = Callable[[int], tuple[list[dict[str, Any]], bool]]


def _shown_key(scope: str) -> str:
    return f"_history_shown_{scope}"


def _load_more(scope: str) -> None:
    key = _shown_key(scope)
    st.session_state[key] = int(st.session_state.get(key, PAGE_SIZE)) + PAGE_SIZE


def actor_names(events: list[dict[str, Any]]) -> dict[int, str]:
    """The people who made the changes, as the events name them: a former member (no longer
    in the members' list) is still named by what they did."""
    return {
        int(event["actor"]["id"]): str(event["actor"]["full_name"])
        for event in events
        if isinstance(event.get("actor"), Mapping) and event["actor"].get("full_name")
    }


def event_list(
    scope: str,
    read: Reader,
    names_for: Callable[[list[dict[str, Any]]], Names],
    *,
    in_task: bool,
    empty: str,
) -> None:
    """The newest events `read` gives (as many pages as the person asked for), one sentence
    each, and "Load more" while older ones are left."""
    shown = int(st.session_state.get(_shown_key(scope), PAGE_SIZE))
    try:
        events, more = read(shown)
    except ApiError as exc:
        show_read_error(exc, retry_key=f"{scope}_retry")
        return
    if not events:
        st.caption(empty)
        return
    names = names_for(events)
    for event in events:
        with st.container(key=f"{scope}_event_{event['id']}"):
            when_col, what_col = st.columns([2, 8])
            when_col.caption(moment(event.get("at")))
            # Titles and comments are typed by people: shown literally, never as markdown.
            what_col.markdown(plain(sentence(event, names, in_task=in_task)))
    if more:
        st.button("Load more", key=f"{scope}_more", on_click=_load_more, args=(scope,))


def history_toggle(task_id: Any) -> str:
    """The key of the "Show history" toggle under a task."""
    return f"history_open_{task_id}"


def task_history(workspace: Workspace, names: Names, task_id: Any) -> None:
    """The History section under a task: its events and its comments', newest first. Read
    only when the person turns it on (the comments above are read whenever they are open)."""
    if not st.toggle("Show history", key=history_toggle(task_id)):
        return

    def with_actors(events: list[dict[str, Any]]) -> Names:
        return Names(
            people={**actor_names(events), **names.people},
            projects=names.projects,
            labels=names.labels,
            tasks=names.tasks,
            emails=names.emails,
        )

    event_list(
        f"task_history_{task_id}",
        lambda most: workspace.session.task_activity(task_id, most),
        with_actors,
        in_task=True,
        empty="Nothing recorded yet.",
    )


def project_names(workspace: Workspace) -> Names:
    """The names the project's page knows: its members, its labels, the person's projects."""
    session, project_id = workspace.session, workspace.project_id
    members = session.all_members(project_id)
    labels = session.all_labels(project_id)
    return Names(
        people={int(m["user"]["id"]): person_name(m["user"]) for m in members},
        projects={int(p["id"]): str(p["name"]) for p in workspace.projects},
        labels={int(label["id"]): str(label["name"]) for label in labels},
        emails={int(m["user"]["id"]): str(m["user"].get("email") or "") for m in members},
    )


def render(workspace: Workspace) -> None:
    session, project_id = workspace.session, workspace.project_id
    st.caption(
        f"What happened in **{plain(str(workspace.project['name']))}**, newest first: "
        "who changed what, from what to what."
    )
    try:
        known = project_names(workspace)
        # The tasks changed most lately, to name a task by its title now.
        recent = session.list_tasks({"project_id": project_id, "sort": "-updated_at", "limit": 100})
    except ApiError as exc:
        show_read_error(exc, retry_key="activity_retry")
        return
    titles = {int(task["id"]): str(task["title"]) for task in recent["items"]}

    def names_for(events: list[dict[str, Any]]) -> Names:
        tasks = {**task_titles(events), **titles}
        if any(task_id not in tasks for task_id in _task_ids(events)):
            tasks = {**_trashed_titles(session, project_id), **tasks}
        return Names(
            people={**actor_names(events), **known.people},
            projects=known.projects,
            # A label deleted since is still named by its own events.
            labels={**label_names(events), **known.labels},
            tasks=tasks,
            emails=known.emails,
        )

    event_list(
        f"project_activity_{project_id}",
        lambda most: session.project_activity(project_id, most),
        names_for,
        in_task=False,
        empty="Nothing has happened in this project yet.",
    )


def _task_ids(events: list[dict[str, Any]]) -> set[int]:
    """The tasks the events are about (a comment's event names its task)."""
    ids = {event.get("task_id") for event in events}
    ids |= {event.get("entity_id") for event in events if event.get("entity") == "task"}
    return {task_id for task_id in ids if isinstance(task_id, int)}


def _trashed_titles(session: ApiSession, project_id: int) -> dict[int, str]:
    """The titles of the project's tasks in the trash (the most lately changed): a deleted
    task's event holds no title, and the Trash screen shows it. Read only when an event
    names a task the page does not know; without it, such a task is named by its id."""
    params = {"project_id": project_id, "deleted": "true", "sort": "-updated_at", "limit": 100}
    try:
        page = session.list_tasks(params)
    except ApiError:
        return {}
    return {int(task["id"]): str(task["title"]) for task in page["items"]}
