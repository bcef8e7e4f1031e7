"""One module per screen of the client; each exposes `render()`."""
