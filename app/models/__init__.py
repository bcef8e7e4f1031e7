"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""

from app.models.comment import Comment
from app.models.event import Event, EventRetention
from app.models.idempotency_key import IdempotencyKey
from app.models.job import OutboxCursor
from app.models.label import Label, TaskLabel
from app.models.notification import Notification, SentReminder
from app.models.project import Invitation, Project, ProjectMember
from app.models.refresh_token import RefreshToken
from app.models.task import Task, TaskAssignee, TaskPriority, TaskStatus
from app.models.user import Role, User
from app.models.webhook import Webhook, WebhookDelivery

__all__ = [
    "Comment",
    "Event",
    "EventRetention",
    "IdempotencyKey",
    "Invitation",
    "Label",
    "Notification",
    "OutboxCursor",
    "Project",
    "ProjectMember",
    "RefreshToken",
    "SentReminder",
    "Role",
    "Task",
    "TaskAssignee",
    "TaskLabel",
    "TaskPriority",
    "TaskStatus",
    "User",
    "Webhook",
    "WebhookDelivery",
]
