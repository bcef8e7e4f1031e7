"""History in words (client/history.py): every entity, action and field of an event (spec
api-v2 section 7) as the sentence a person reads, with ids named from what the client knows
and by their id otherwise. Pure functions: no API, no Streamlit run."""

from __future__ import annotations

from typing import Any

import pytest

from history import (
    Names,
    day_or_moment,
    label_names,
    listed,
    moment,
    person_name,
    quoted,
    sentence,
    task_titles,
)

ADA = {"id": 1, "full_name": "Ada Lovelace"}
NAMES = Names(
    people={1: "Ada Lovelace", 2: "Bob", 3: "carol@example.com"},
    projects={10: "Launch", 11: "Other"},
    labels={100: "Bug", 101: "Docs"},
    tasks={7: "Final"},
)


def event(
    entity: str,
    action: str,
    changes: dict[str, list[Any]] | None = None,
    *,
    actor: dict[str, Any] | None = ADA,
    entity_id: int = 7,
) -> dict[str, Any]:
    return {
        "id": 1,
        "at": "2026-12-06T05:18:09.123Z",
        "actor": actor,
        "project_id": 10,
        "entity": entity,
        "entity_id": entity_id,
        "action": action,
        "changes": changes or {},
    }


def in_task(entity: str, action: str, changes: dict[str, list[Any]] | None = None) -> str:
    return sentence(event(entity, action, changes), NAMES, in_task=True)


# --- the words around the sentences ---------------------------------------------------------


def test_moments_read_as_day_month_year_and_utc_time() -> None:
    assert moment("2026-12-06T05:18:09.123Z") == "6 Dec 2026, 05:18 UTC"
    assert moment("2026-01-15T23:05:00+01:00") == "15 Jan 2026, 22:05 UTC"
    assert moment(None) == "None"
    # A due date this client sets is the end of a UTC day: the day alone.
    assert day_or_moment("2026-12-24T23:59:59.000Z") == "24 Dec 2026"
    assert day_or_moment("2026-12-24T09:30:00Z") == "24 Dec 2026, 09:30 UTC"


def test_quotes_are_one_line_and_long_text_is_cut() -> None:
    assert quoted("Draft") == "“Draft”"
    assert quoted("two\n\nlines  here") == "“two lines here”"
    long = quoted("word " * 40)
    assert long.endswith("…”")
    assert len(long) == 80 + 2  # 80 characters between the quotes, the last one "…"


def test_lists_and_names() -> None:
    assert listed([]) == ""
    assert listed(["a"]) == "a"
    assert listed(["a", "b"]) == "a and b"
    assert listed(["a", "b", "c"]) == "a, b and c"
    assert person_name({"id": 4, "full_name": "Dee", "email": "d@example.com"}) == "Dee"
    assert person_name({"id": 4, "full_name": None, "email": "d@example.com"}) == "d@example.com"
    assert person_name({"id": 4}) == "user #4"
    assert NAMES.project(12) == "project #12"
    assert NAMES.person(9) == "user #9"
    assert NAMES.label(None) == "label #None"


def test_the_actor_is_named_by_the_event_then_by_the_members_then_by_id() -> None:
    changes = {"title": ["a", "b"]}
    assert sentence(event("task", "updated", changes), NAMES, in_task=True).startswith("Ada ")
    no_name = event("task", "updated", changes, actor={"id": 2, "full_name": None})
    assert sentence(no_name, NAMES, in_task=True).startswith("Bob changed")
    stranger = event("task", "updated", changes, actor={"id": 99, "full_name": None})
    assert sentence(stranger, NAMES, in_task=True).startswith("user #99 changed")
    system = event("task", "purged", {"title": ["Old", None]}, actor=None)
    assert sentence(system, NAMES, in_task=True) == "System purged the task"


# --- tasks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"title": ["Draft", "Final"]}, "changed the title from “Draft” to “Final”"),
        ({"description": [None, "Some notes"]}, "added the description “Some notes”"),
        ({"description": ["", "Notes"]}, "added the description “Notes”"),
        ({"description": ["Some notes", None]}, "removed the description"),
        ({"description": ["Old", "New notes"]}, "changed the description to “New notes”"),
        ({"status": ["todo", "in_progress"]}, "set the status from To do to In progress"),
        ({"priority": ["low", "urgent"]}, "set the priority from low to urgent"),
        ({"priority": ["medium", "high"]}, "set the priority from medium to high"),
        ({"due_at": [None, "2026-12-24T23:59:59Z"]}, "set the due date to 24 Dec 2026"),
        ({"due_at": ["2026-12-24T23:59:59Z", None]}, "removed the due date"),
        (
            {"due_at": ["2026-12-24T23:59:59Z", "2026-12-31T12:00:00Z"]},
            "changed the due date from 24 Dec 2026 to 31 Dec 2026, 12:00 UTC",
        ),
        (
            {"remind_at": [None, "2026-12-20T09:00:00Z"]},
            "set a reminder for 20 Dec 2026, 09:00 UTC",
        ),
        ({"remind_at": ["2026-12-20T09:00:00Z", None]}, "removed the reminder"),
        (
            {"remind_at": ["2026-12-20T09:00:00Z", "2026-12-21T10:00:00Z"]},
            "moved the reminder from 20 Dec 2026, 09:00 UTC to 21 Dec 2026, 10:00 UTC",
        ),
        (
            {"completed_at": [None, "2026-12-06T05:18:00Z"]},
            "marked the task completed at 6 Dec 2026, 05:18 UTC",
        ),
        ({"completed_at": ["2026-12-06T05:18:00Z", None]}, "marked the task not completed"),
        ({"assignee_ids": [[], [2]]}, "assigned Bob"),
        ({"assignee_ids": [[1], [1, 2, 3]]}, "assigned Bob and carol@example.com"),
        ({"assignee_ids": [[2, 9], []]}, "unassigned Bob and user #9"),
        ({"assignee_ids": [[2], [3]]}, "assigned carol@example.com and unassigned Bob"),
        ({"label_ids": [[], [100]]}, "added the label Bug"),
        ({"label_ids": [[], [100, 101, 555]]}, "added the labels Bug, Docs and label #555"),
        ({"label_ids": [[100], []]}, "removed the label Bug"),
        ({"label_ids": [[100], [101]]}, "added the label Docs and removed the label Bug"),
        # A label the client cannot name (deleted since, or another project's): by its id,
        # not "the label label #5".
        ({"label_ids": [[5], []]}, "removed label #5"),
        ({"label_ids": [[100], [6]]}, "added label #6 and removed the label Bug"),
        ({"project_id": [10, 11]}, "moved the task from Launch to Other"),
        ({"estimate": [1, 2]}, "changed estimate from “1” to “2”"),
    ],
)
def test_each_field_of_a_task_update(changes: dict[str, list[Any]], words: str) -> None:
    assert in_task("task", "updated", changes) == f"Ada Lovelace {words}"


def test_several_fields_in_one_sentence() -> None:
    changes = {"title": ["Draft", "Final"], "priority": ["low", "urgent"]}
    assert in_task("task", "updated", changes) == (
        "Ada Lovelace changed the title from “Draft” to “Final” and set the priority from low "
        "to urgent"
    )


def test_done_says_the_status_not_the_completion_time() -> None:
    changes = {"status": ["todo", "done"], "completed_at": [None, "2026-12-06T05:18:00.000Z"]}
    assert in_task("task", "updated", changes) == "Ada Lovelace set the status from To do to Done"


def test_task_actions() -> None:
    created = {"title": [None, "Ship it"], "priority": [None, "low"], "status": [None, "todo"]}
    assert in_task("task", "created", created) == "Ada Lovelace created the task “Ship it”"
    trashed = {"deleted_at": [None, "2026-12-06T05:18:00.000Z"]}
    assert in_task("task", "deleted", trashed) == "Ada Lovelace deleted the task"
    back = {"deleted_at": ["2026-12-06T05:18:00.000Z", None]}
    assert in_task("task", "restored", back) == "Ada Lovelace restored the task"
    assert in_task("task", "purged", {"title": ["Ship it", None]}) == "Ada Lovelace purged the task"
    moved = {"project_id": [10, 12], "assignee_ids": [[2], []]}
    assert in_task("task", "moved", moved) == (
        "Ada Lovelace moved the task from Launch to project #12 and unassigned Bob"
    )
    assert in_task("task", "updated", {}) == "Ada Lovelace changed the task"


def test_on_the_projects_page_a_task_is_named() -> None:
    def project_page(action: str, changes: dict[str, list[Any]], task_id: int = 7) -> str:
        return sentence(event("task", action, changes, entity_id=task_id), NAMES)

    # By its title now, when the client knows it.
    assert project_page("updated", {"priority": ["low", "high"]}) == (
        "Ada Lovelace changed the task “Final”: set the priority from low to high"
    )
    assert project_page("deleted", {"deleted_at": [None, "2026-12-06T05:18:00Z"]}) == (
        "Ada Lovelace deleted the task “Final”"
    )
    assert project_page("moved", {"project_id": [10, 11]}) == (
        "Ada Lovelace moved the task “Final” from Launch to Other"
    )
    # Otherwise by the title the event holds, or by its id.
    assert project_page("created", {"title": [None, "New one"]}, task_id=8) == (
        "Ada Lovelace created the task “New one”"
    )
    assert project_page("purged", {"title": ["Gone", None]}, task_id=8) == (
        "Ada Lovelace purged the task “Gone”"
    )
    assert project_page("restored", {"deleted_at": ["2026-12-06T05:18:00Z", None]}, 8) == (
        "Ada Lovelace restored task #8"
    )
    assert project_page("updated", {}, task_id=8) == "Ada Lovelace changed task #8"


def test_task_titles_are_the_newest_each_task_had() -> None:
    events = [
        event("task", "updated", {"priority": ["low", "high"]}, entity_id=1),
        event("task", "updated", {"title": ["Draft", "Final"]}, entity_id=1),
        event("task", "created", {"title": [None, "Draft"]}, entity_id=1),
        event("task", "purged", {"title": ["Gone", None]}, entity_id=2),
        event("label", "created", {"name": [None, "Bug"]}, entity_id=3),
    ]
    assert task_titles(events) == {1: "Final", 2: "Gone"}


def test_label_names_are_the_newest_each_label_had() -> None:
    """A deleted label's name is in its own events: the tasks it was taken off name it."""
    events = [
        event("task", "updated", {"label_ids": [[3], []]}, entity_id=1),
        event("label", "deleted", {"name": ["Hot", None]}, entity_id=3),
        event("label", "updated", {"name": ["Warm", "Hot"]}, entity_id=3),
        event("label", "created", {"name": [None, "Warm"]}, entity_id=3),
        event("label", "updated", {"color": ["#000000", "#ffffff"]}, entity_id=4),
    ]
    assert label_names(events) == {3: "Hot"}
    names = Names(labels=label_names(events))
    assert sentence(events[0], names, in_task=True) == "Ada Lovelace removed the label Hot"


# --- comments -----------------------------------------------------------------------------


def test_comment_actions() -> None:
    assert in_task("comment", "created", {"body": [None, "Looks good"]}) == (
        "Ada Lovelace commented: “Looks good”"
    )
    assert in_task("comment", "updated", {"body": ["Looks good", "Looks great"]}) == (
        "Ada Lovelace edited a comment from “Looks good” to “Looks great”"
    )
    assert in_task("comment", "updated", {"body": [None, "Looks great"]}) == (
        "Ada Lovelace edited a comment: “Looks great”"
    )
    assert in_task("comment", "deleted", {"body": ["Looks good", None]}) == (
        "Ada Lovelace deleted a comment: “Looks good”"
    )
    assert in_task("comment", "purged", {}) == "Ada Lovelace purged a comment"
    assert in_task("comment", "created", {}) == "Ada Lovelace commented"
    assert in_task("comment", "restored", {}) == "Ada Lovelace restored a comment"


def test_on_the_projects_page_a_comment_names_its_task() -> None:
    on_task_5 = event("comment", "created", {"body": [None, "Looks good"]}) | {"task_id": 5}
    names = Names(people=NAMES.people, tasks={5: "Write the post"})
    assert sentence(on_task_5, names) == (
        "Ada Lovelace commented on the task “Write the post”: “Looks good”"
    )
    assert sentence(on_task_5 | {"task_id": 6}, names) == (
        "Ada Lovelace commented on task #6: “Looks good”"
    )
    # Under its task, the task goes without saying.
    assert sentence(on_task_5, names, in_task=True) == "Ada Lovelace commented: “Looks good”"


def test_a_long_comment_is_cut() -> None:
    words = in_task("comment", "created", {"body": [None, "x" * 500]})
    assert words.startswith("Ada Lovelace commented: “xxx")
    assert words.endswith("…”")
    assert len(words) < 120


# --- projects, members, invitations, labels --------------------------------------------------


def test_project_actions() -> None:
    def words(action: str, changes: dict[str, list[Any]]) -> str:
        return sentence(event("project", action, changes, entity_id=10), NAMES)

    assert words("created", {"name": [None, "Launch"]}) == (
        "Ada Lovelace created the project “Launch”"
    )
    assert words("updated", {"name": ["Launch", "Lift-off"]}) == (
        "Ada Lovelace renamed the project from “Launch” to “Lift-off”"
    )
    assert words("updated", {"description": [None, "All of it"]}) == (
        "Ada Lovelace added the description “All of it”"
    )
    assert words("updated", {"description": ["All of it", None]}) == (
        "Ada Lovelace removed the description"
    )
    assert words("updated", {"deleted_at": [None, "2026-12-06T05:18:00Z"]}) == (
        "Ada Lovelace moved the project to the trash"
    )
    assert words("deleted", {"deleted_at": [None, "2026-12-06T05:18:00Z"]}) == (
        "Ada Lovelace deleted the project"
    )
    assert words("restored", {"deleted_at": ["2026-12-06T05:18:00Z", None]}) == (
        "Ada Lovelace restored the project"
    )
    purged = sentence(event("project", "purged", {}, actor=None, entity_id=10), NAMES)
    assert purged == "System purged the project"
    assert words("updated", {}) == "Ada Lovelace changed the project"


def test_member_actions() -> None:
    def words(action: str, changes: dict[str, list[Any]], member: int, by: Any = ADA) -> str:
        return sentence(event("member", action, changes, actor=by, entity_id=member), NAMES)

    assert words("joined", {"role": [None, "editor"]}, 1) == (
        "Ada Lovelace joined the project as editor"
    )
    assert words("joined", {"role": [None, "owner"]}, 2) == "Ada Lovelace added Bob as owner"
    assert words("left", {"role": ["editor", None]}, 1) == "Ada Lovelace left the project"
    assert words("removed", {"role": ["viewer", None]}, 2) == (
        "Ada Lovelace removed Bob from the project"
    )
    assert words("removed", {"role": ["viewer", None]}, 42) == (
        "Ada Lovelace removed user #42 from the project"
    )
    assert words("role_changed", {"role": ["editor", "admin"]}, 2) == (
        "Ada Lovelace changed the role of Bob from editor to admin"
    )
    assert words("role_changed", {"role": ["admin", "viewer"]}, 1) == (
        "Ada Lovelace changed their own role from admin to viewer"
    )
    # A former member, no longer in the members' list, is named by their own event.
    former = {"id": 50, "full_name": "Dee Former"}
    assert words("left", {}, 50, former) == "Dee Former left the project"
    assert words("joined", {"role": [None, "viewer"]}, 50, former) == (
        "Dee Former joined the project as viewer"
    )
    assert words("updated", {}, 2) == "Ada Lovelace updated the member Bob"


def test_invitation_actions() -> None:
    def words(action: str, changes: dict[str, list[Any]]) -> str:
        return sentence(event("invitation", action, changes, entity_id=5), NAMES)

    created = {
        "email": [None, "kim@example.com"],
        "role": [None, "commenter"],
        "expires_at": [None, "2026-12-13T05:18:00Z"],
    }
    assert words("created", created) == "Ada Lovelace invited kim@example.com as commenter"
    renewed = {
        "role": ["viewer", "editor"],
        "expires_at": ["2026-12-13T05:18:00Z", "2026-12-14T06:00:00Z"],
    }
    assert words("updated", renewed) == (
        "Ada Lovelace renewed an invitation, changed its role from viewer to editor and made it "
        "last until 14 Dec 2026, 06:00 UTC"
    )
    gone = {"email": ["kim@example.com", None], "role": ["editor", None]}
    # Who closed it: a member with another address revoked it; the invitee answered it
    # (accepted or declined); someone whose address the client does not know closed it.
    emails = Names(people=NAMES.people, emails={1: "ada@example.com", 2: "KIM@example.com"})
    revoked = event("invitation", "deleted", gone)
    assert sentence(revoked, emails) == "Ada Lovelace revoked the invitation of kim@example.com"
    answered = event("invitation", "deleted", gone, actor={"id": 2, "full_name": "Kim"})
    assert sentence(answered, emails) == "Kim answered their invitation"
    assert words("deleted", gone) == "Ada Lovelace closed the invitation of kim@example.com"
    assert words("deleted", {}) == "Ada Lovelace closed an invitation"
    purged = sentence(event("invitation", "purged", gone, actor=None), NAMES)
    assert purged == "System purged the invitation of kim@example.com"


def test_label_actions() -> None:
    def words(action: str, changes: dict[str, list[Any]], label: int = 100) -> str:
        return sentence(event("label", action, changes, entity_id=label), NAMES)

    assert words("created", {"name": [None, "Bug"], "color": [None, "#a1b2c3"]}) == (
        "Ada Lovelace created the label Bug"
    )
    assert words("updated", {"name": ["Bug", "Defect"]}) == (
        "Ada Lovelace renamed the label Bug to Defect"
    )
    assert words("updated", {"color": ["#000000", "#ffffff"]}) == (
        "Ada Lovelace changed the colour of the label Bug from #000000 to #ffffff"
    )
    assert words("updated", {"color": ["#000000", "#ffffff"]}, label=7) == (
        "Ada Lovelace changed the colour of label #7 from #000000 to #ffffff"
    )
    assert words("deleted", {}, label=7) == "Ada Lovelace deleted label #7"
    assert words("updated", {}, label=7) == "Ada Lovelace updated label #7"
    assert words("deleted", {"name": ["Doomed", None], "color": ["#123456", None]}) == (
        "Ada Lovelace deleted the label Doomed"
    )
    assert words("updated", {}) == "Ada Lovelace updated the label Bug"


def test_an_unknown_entity_still_reads() -> None:
    assert sentence(event("webhook", "role_changed"), NAMES) == (
        "Ada Lovelace role changed webhook #7"
    )


@pytest.mark.parametrize(
    "action",
    [
        "created",
        "updated",
        "moved",
        "deleted",
        "restored",
        "purged",
        "joined",
        "left",
        "removed",
        "role_changed",
    ],
)
@pytest.mark.parametrize("entity", ["project", "member", "invitation", "task", "label", "comment"])
def test_every_entity_and_action_makes_a_sentence(entity: str, action: str) -> None:
    """Whatever the log holds, a readable sentence and never an exception: events with their
    usual changes, and with none at all."""
    for changes in ({}, {"title": ["a", "b"], "name": ["a", "b"], "role": ["viewer", "editor"]}):
        words = sentence(event(entity, action, changes), NAMES)
        assert words.startswith("Ada Lovelace ")
        assert "None" not in words, words
