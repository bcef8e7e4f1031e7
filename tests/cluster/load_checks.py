"""The verdicts of the cluster test's load driver (tests/cluster/load.py): pure functions
from what the driver saw (every request, what was acknowledged, the webhook receiver's
messages, the change feed walked, the lists read at the end) to a pass/fail check with the
figures a human reads. Nothing here talks to the network."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook as StandardWebhook

# A request that got no HTTP answer is recorded with one of these instead of a status.
CONNECTION_ERROR = "connection-error"
TIMEOUT = "timeout"
# A kept-alive connection that HAProxy closed without an answer: what it does, by design,
# when the host of a request that was not the first on its connection dies mid-request
# ("the client is required to retry", HTTP/1.1's rule for persistent connections). The
# client retries what may be sent twice; anything else has an unknown outcome, as with the
# load balancer's 503 for a request that was not the first.
CLOSED_WITHOUT_ANSWER = "closed-without-answer"


@dataclass(frozen=True)
class Record:
    """One request as the client made it."""

    start: float  # time.monotonic() when it was sent
    end: float  # time.monotonic() when its answer (or its failure) came
    kind: str
    target: str  # "lb", "api1", "api2"
    status: int | str  # the HTTP status, or CONNECTION_ERROR / TIMEOUT / CLOSED_WITHOUT_ANSWER
    retry_after: bool
    # Answered by the load balancer itself (no host could answer, or one died mid-request).
    from_lb: bool = False


@dataclass
class Check:
    name: str
    ok: bool
    figures: dict[str, Any] = field(default_factory=dict)
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "figures": self.figures, "detail": self.detail}


@dataclass(frozen=True)
class Timeline:
    """The orchestrator's `timeline.json`: when each fault ran (monotonic seconds)."""

    faults: list[tuple[str, float, float]]
    faults_over: float | None
    rolling: tuple[float, float] | None

    @classmethod
    def read(cls, path: Path) -> Timeline | None:
        try:
            raw = json.loads(path.read_text())
            faults = [(str(f["name"]), float(f["start"]), float(f["end"])) for f in raw["faults"]]
            over, rolling = raw.get("faults_over"), raw.get("rolling_restart")
            return cls(
                faults=faults,
                faults_over=float(over) if over is not None else None,
                rolling=(float(rolling["start"]), float(rolling["end"])) if rolling else None,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


@dataclass
class Received:
    """One request the webhook receiver got, and what it answered."""

    at: float
    headers: dict[str, str]
    body: bytes
    answered: int
    # The body ended before its Content-Length: its sender died mid-request (not a delivery).
    cut: bool = False
    # Verified when it arrived (the library refuses timestamps older than five minutes,
    # and a run can take longer): the payload, or None if the signature was refused.
    verified: bool = False
    payload: dict[str, Any] | None = None

    def verify(self, secret: str) -> None:
        try:
            self.payload = StandardWebhook(secret).verify(self.body, self.headers)
        except Exception:  # the library raises its own error types; any is a refusal
            self.payload = None
        self.verified = True


def _failed(record: Record, *, allow_503: bool) -> bool:
    """`allow_503`: during the faults, a 503 with Retry-After, or a kept-alive connection
    closed without an answer because its host died, is what a client is told to retry."""
    if record.status == CLOSED_WITHOUT_ANSWER:
        return not allow_503
    if isinstance(record.status, str):
        return True
    if record.status == 503 and allow_503:
        return not record.retry_after
    return record.status >= 500


def _tally(records: list[Record]) -> dict[str, int]:
    return dict(sorted(Counter(str(record.status) for record in records).items()))


def check_responses(records: list[Record], timeline: Timeline | None) -> list[Check]:
    """During the faults only 2xx/3xx/4xx or 503 with Retry-After; outside them no 5xx and
    no request without an answer; in the rolling restart not one failed request."""
    if timeline is None:
        return [Check("responses", False, {}, "no timeline.json from the orchestrator")]
    first = min((start for _, start, _ in timeline.faults), default=None)
    over = timeline.faults_over
    if first is None or over is None:
        return [Check("responses", False, {}, "the timeline names no fault window")]
    # A request belongs to the faults if it was in flight at any moment of them: one sent
    # a moment before a host died is answered by its death.
    before = [r for r in records if r.end < first]
    during = [r for r in records if r.end >= first and r.start < over]
    after = [r for r in records if r.start >= over]
    checks: list[Check] = []
    for name, window, allow_503 in (
        ("responses before the faults: no 5xx, no connection error", before, False),
        ("responses during the faults: 2xx-4xx or 503 with Retry-After", during, True),
        ("responses after the faults: no 503, no 5xx, no connection error", after, False),
    ):
        bad = [r for r in window if _failed(r, allow_503=allow_503)]
        figures: dict[str, Any] = {
            "requests": len(window),
            "by_status": _tally(window),
            "503_with_retry_after": sum(1 for r in window if r.status == 503 and r.retry_after),
            "503_made_by_the_load_balancer": sum(1 for r in window if r.from_lb),
            "kept_alive_connections_closed_without_answer": sum(
                1 for r in window if r.status == CLOSED_WITHOUT_ANSWER
            ),
            "failed": len(bad),
        }
        detail = "; ".join(
            f"{r.kind} via {r.target} at +{r.start - first:.2f}s: {r.status}"
            + ("" if r.retry_after else " (no Retry-After)")
            for r in bad[:10]
        )
        checks.append(Check(name, not bad, figures, detail))
    per_fault: dict[str, Any] = {}
    for fault, start, end in timeline.faults:
        inside = [r for r in records if r.end >= start and r.start < end]
        per_fault[fault] = {"seconds": round(end - start, 2), "by_status": _tally(inside)}
    checks[1].figures["per_fault"] = per_fault
    if timeline.rolling is None:
        checks.append(Check("rolling restart: zero failed requests", False, {}, "no window"))
    else:
        start, end = timeline.rolling
        window = [r for r in records if r.end >= start and r.start < end]
        bad = [r for r in window if _failed(r, allow_503=False)]
        checks.append(
            Check(
                "rolling restart: zero failed requests",
                not bad and bool(window),
                {
                    "seconds": round(end - start, 2),
                    "requests": len(window),
                    "by_status": _tally(window),
                    "failed": len(bad),
                },
                "; ".join(f"{r.kind} via {r.target}: {r.status}" for r in bad[:10])
                or ("" if window else "no request was made during the rolling restart"),
            )
        )
    return checks


def title_token(title: str, prefix: str) -> str | None:
    return title[len(prefix) :] if title.startswith(prefix) else None


def check_creates(
    acknowledged: dict[str, str],
    unknown: set[str],
    rejected: dict[str, int],
    replays: int,
    listed: list[dict[str, Any]],
    prefix: str,
    longest: float,
) -> Check:
    """Every acknowledged create exists exactly once (the id it was acknowledged with), and
    no token, acknowledged or not, exists twice."""
    counts: Counter[str] = Counter()
    ids: dict[str, set[str]] = {}
    for task in listed:
        token = title_token(task["title"], prefix)
        if token is not None:
            counts[token] += 1
            ids.setdefault(token, set()).add(str(task["id"]))
    missing = sorted(t for t in acknowledged if counts[t] == 0)
    wrong_id = sorted(t for t in acknowledged if counts[t] == 1 and ids[t] != {acknowledged[t]})
    duplicated = sorted(t for t, n in counts.items() if n > 1)
    unknown_created = sum(1 for t in unknown if counts[t] == 1)
    rejected_created = sorted(t for t in rejected if counts[t] > 0)
    figures = {
        "acknowledged": len(acknowledged),
        "acknowledged_as_replay": replays,
        "longest_until_a_definite_answer_seconds": round(longest, 2),
        "outcome_unknown": len(unknown),
        "outcome_unknown_but_created": unknown_created,
        "rejected": dict(Counter(str(s) for s in rejected.values())),
        "tasks_listed_with_a_token": sum(counts.values()),
        "missing": len(missing),
        "duplicated": len(duplicated),
        "acknowledged_id_differs": len(wrong_id),
        "rejected_but_created": len(rejected_created),
    }
    problems = []
    if missing:
        problems.append(f"acknowledged but absent: {missing[:10]}")
    if duplicated:
        problems.append(f"more than once: {duplicated[:10]}")
    if wrong_id:
        problems.append(f"another id than acknowledged: {wrong_id[:10]}")
    if rejected_created:
        problems.append(f"rejected (4xx) but created: {rejected_created[:10]}")
    return Check(
        "creates: every acknowledged one exactly once, no retry duplicated one",
        not problems and bool(acknowledged),
        figures,
        "; ".join(problems) or ("" if acknowledged else "no create was acknowledged"),
    )


def check_patches(
    acknowledged: dict[str, list[str]],
    unknown: dict[str, list[str]],
    counters: dict[str, int],
    final: dict[str, str],
) -> Check:
    """Each token an acknowledged PATCH (If-Match) appended is in the final description
    exactly once; no token is there twice."""
    lost: list[str] = []
    doubled: list[str] = []
    for task_id, description in final.items():
        present = Counter(description.split())
        doubled += [t for t, n in present.items() if n > 1]
        lost += [t for t in acknowledged.get(task_id, []) if present[t] == 0]
    acked = sum(len(tokens) for tokens in acknowledged.values())
    unknown_landed = sum(
        1 for task_id, tokens in unknown.items() for t in tokens if t in final[task_id].split()
    )
    figures = {
        "shared_tasks": len(final),
        "acknowledged": acked,
        "outcome_unknown": sum(len(t) for t in unknown.values()),
        "outcome_unknown_but_applied": unknown_landed,
        **counters,
        "lost_updates": len(lost),
        "tokens_twice": len(doubled),
    }
    problems = []
    if lost:
        problems.append(f"lost: {lost[:10]}")
    if doubled:
        problems.append(f"twice: {doubled[:10]}")
    return Check(
        "patches under If-Match: no lost update",
        not problems and acked > 0,
        figures,
        "; ".join(problems) or ("" if acked else "no patch was acknowledged"),
    )


def check_reminders(
    due: dict[str, float],
    armed_late: set[str],
    sent: Counter[str],
    lateness: list[float],
) -> Check:
    """`due`: task id -> the monotonic time its remind_at fell due, for acknowledged creates
    acknowledged before that time (exactly one reminder each); `armed_late`: acknowledged only
    after remind_at (at most one each); `sent`: reminders found per task id."""
    missing = sorted(t for t in due if sent[t] == 0)
    duplicated = sorted(t for t, n in sent.items() if n > 1)
    figures = {
        "due": len(due),
        "acknowledged_after_remind_at": len(armed_late),
        "sent": sum(sent.values()),
        "tasks_reminded": len(sent),
        "missing": len(missing),
        "duplicated": len(duplicated),
        "latest_seconds_after_remind_at": round(max(lateness), 2) if lateness else None,
        # The spec's "within 10 seconds" holds while a worker runs; a killed worker's job
        # waits for its lease to end: shown, not asserted.
        "sent_more_than_10s_late": sum(1 for late in lateness if late > 10),
    }
    problems = []
    if missing:
        problems.append(f"no reminder for {missing[:10]}")
    if duplicated:
        problems.append(f"more than one reminder for {duplicated[:10]}")
    return Check(
        "reminders: every due one sent exactly once",
        not problems and bool(due),
        figures,
        "; ".join(problems) or ("" if due else "no reminder fell due"),
    )


def verified_deliveries(
    received: list[Received], secret: str
) -> tuple[list[tuple[Received, dict[str, Any]]], int]:
    """The deliveries whose signature the standardwebhooks library accepts, and how many it
    refused (requests cut short by a sender that died are neither)."""
    good: list[tuple[Received, dict[str, Any]]] = []
    refused = 0
    for message in received:
        if message.cut:
            continue
        if not message.verified:
            message.verify(secret)
        if message.payload is None:
            refused += 1
        else:
            good.append((message, message.payload))
    return good, refused


def check_webhooks(
    received: list[Received],
    secret: str,
    expected_events: set[str],
    acknowledged_task_ids: set[str],
    forced_failures: int,
) -> Check:
    """Every expected event (the project's task events as its activity lists them) reached
    the receiver at least once; an event never came under two webhook-ids; the ids of the
    acknowledged creates are among the task.created events delivered."""
    deliveries, refused = verified_deliveries(received, secret)
    ids_of_event: dict[str, set[str]] = {}
    per_webhook_id: Counter[str] = Counter()
    created_tasks: set[str] = set()
    # Delivered means answered 2xx: the attempts the receiver refused (503) do not count,
    # so a service that never retried would leave those events undelivered.
    accepted: set[str] = set()
    refused_ids: set[str] = set()
    accepted_ids: set[str] = set()
    for message, payload in deliveries:
        if payload.get("type") == "ping":
            continue
        data = payload["data"]
        event_id = str(data["id"])
        webhook_id = message.headers["webhook-id"]
        ids_of_event.setdefault(event_id, set()).add(webhook_id)
        per_webhook_id[webhook_id] += 1
        if 200 <= message.answered < 300:
            accepted.add(event_id)
            accepted_ids.add(webhook_id)
            if payload["type"] == "task.created":
                created_tasks.add(str(data["entity_id"]))
        else:
            refused_ids.add(webhook_id)
    events_of_id: dict[str, set[str]] = {}
    for event_id, webhook_ids in ids_of_event.items():
        for webhook_id in webhook_ids:
            events_of_id.setdefault(webhook_id, set()).add(event_id)
    shared_ids = sorted(w for w, events in events_of_id.items() if len(events) > 1)
    undelivered = sorted(expected_events - accepted)
    never_retried = sorted(refused_ids - accepted_ids)
    creates_missing = sorted(acknowledged_task_ids - created_tasks)
    split = sorted(e for e, ids in ids_of_event.items() if len(ids) > 1)
    figures = {
        "events_expected": len(expected_events),
        "events_delivered": len(accepted),
        "requests_received": len(received),
        "signatures_refused": refused,
        "requests_cut_by_a_sender_that_died": sum(1 for message in received if message.cut),
        "distinct_webhook_ids": len(per_webhook_id),
        "webhook_ids_delivered_more_than_once": sum(1 for n in per_webhook_id.values() if n > 1),
        "repeat_deliveries": sum(per_webhook_id.values()) - len(per_webhook_id),
        "first_attempts_answered_503": forced_failures,
        "answered_503_then_accepted_under_the_same_id": len(refused_ids & accepted_ids),
        "answered_503_never_retried": len(never_retried),
        "undelivered": len(undelivered),
        "acknowledged_creates_without_task_created": len(creates_missing),
        "events_under_several_webhook_ids": len(split),
        "webhook_ids_naming_several_events": len(shared_ids),
    }
    problems = []
    if refused:
        problems.append(f"{refused} signatures refused")
    if undelivered:
        problems.append(f"never delivered: {undelivered[:10]}")
    if never_retried:
        problems.append(f"refused once and never sent again: {never_retried[:10]}")
    if not forced_failures:
        problems.append("the receiver refused no first attempt: retries went untested")
    if creates_missing:
        problems.append(f"no task.created for acknowledged tasks {creates_missing[:10]}")
    if split:
        problems.append(f"events under several webhook-ids: {split[:10]}")
    if shared_ids:
        problems.append(f"webhook-ids carrying several events: {shared_ids[:10]}")
    return Check(
        "webhooks: every event at least once, retries under the same webhook-id",
        not problems and bool(expected_events),
        figures,
        "; ".join(problems),
    )


def check_feed(
    name: str,
    items: list[dict[str, Any]],
    project_id: str,
    activity: list[dict[str, Any]],
    acknowledged_task_ids: set[str],
    acknowledged_patch_tokens: dict[str, list[str]],
    failed_reads: int,
) -> Check:
    """The feed walked through the run: no event twice; every event of the project (as its
    activity lists them at the end) seen; every acknowledged create and patch seen; each
    shared task's description changes in commit order (each event's old value is the
    previous event's new value)."""
    ids = [str(item["id"]) for item in items]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    in_project = {str(i["id"]) for i in items if str(i.get("project_id")) == project_id}
    expected = {str(event["id"]) for event in activity}
    gaps = sorted(expected - in_project)
    created = {
        str(i["entity_id"]) for i in items if i["entity"] == "task" and i["action"] == "created"
    }
    creates_unseen = sorted(acknowledged_task_ids - created)
    descriptions: dict[str, list[tuple[Any, Any]]] = {}
    for item in items:
        change = (item.get("changes") or {}).get("description")
        if item["entity"] == "task" and change is not None:
            descriptions.setdefault(str(item["entity_id"]), []).append((change[0], change[1]))
    out_of_order = 0
    patches_unseen: list[str] = []
    for task_id, tokens in acknowledged_patch_tokens.items():
        chain = descriptions.get(task_id, [])
        out_of_order += sum(
            1 for before, after in zip(chain, chain[1:], strict=False) if after[0] != before[1]
        )
        appended: set[str] = set()
        for old, new in chain:
            appended |= set((new or "").split()) - set((old or "").split())
        patches_unseen += [t for t in tokens if t not in appended]
    figures = {
        "events_seen": len(items),
        "events_of_the_project": len(in_project),
        "project_events_in_activity": len(expected),
        "duplicates": len(duplicates),
        "gaps": len(gaps),
        "acknowledged_creates_unseen": len(creates_unseen),
        "acknowledged_patches_unseen": len(patches_unseen),
        "order_violations": out_of_order,
        "failed_reads_retried": failed_reads,
    }
    problems = []
    if duplicates:
        problems.append(f"seen twice: {duplicates[:10]}")
    if gaps:
        problems.append(f"never seen: {gaps[:10]}")
    if creates_unseen:
        problems.append(f"creates unseen: {creates_unseen[:10]}")
    if patches_unseen:
        problems.append(f"patches unseen: {patches_unseen[:10]}")
    if out_of_order:
        problems.append(f"{out_of_order} description changes out of commit order")
    if not activity:
        problems.append("the project's activity could not be read to compare")
    return Check(
        f"change feed ({name}): no gap, no duplicate, in commit order",
        not problems and bool(items),
        figures,
        "; ".join(problems),
    )
