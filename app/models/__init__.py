"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""

from app.models.idempotency_key import IdempotencyKey
from app.models.refresh_token import RefreshToken
from app.models.task import Task, TaskPriority, TaskStatus
from app.models.user import Role, User

__all__ = ["IdempotencyKey", "RefreshToken", "Role", "Task", "TaskPriority", "TaskStatus", "User"]
