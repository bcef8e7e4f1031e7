"""One module per screen of the client. Each screen about a project exposes
`render(workspace)` (the session, the person's projects, the current project and the roles
table; see workspace.py); the account screens (profile.py, admin.py) expose `render(session)`.
app.py reads the session and the projects once per run and hands them over, so no screen looks
them up or checks them. The sign-in screen (account.py) exposes `render()`; task_comments.py
and the History section of activity.py are drawn inside the task list."""
