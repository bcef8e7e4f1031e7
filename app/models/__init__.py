"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""

from app.models.refresh_token import RefreshToken
from app.models.task import Task, TaskPriority, TaskStatus
from app.models.user import Role, User

__all__ = ["RefreshToken", "Role", "Task", "TaskPriority", "TaskStatus", "User"]
