"""One module per screen of the client. Each signed-in screen exposes `render(session)`: app.py
reads the session once per run and hands it over, so no screen looks it up or checks it. The
sign-in screen (account.py) exposes `render()`."""
