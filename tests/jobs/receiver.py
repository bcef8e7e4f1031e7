"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 that answers each
request with the next of a script of answers (then 200), and keeps what it was sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    # The delivery job opens up to a run's places of connections at once; with the default
    # listen backlog of 5, a loaded machine reset some of them before they were accepted.
    request_queue_size = 128


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    # Seconds to wait before answering (a slow receiver; a sender killed meanwhile).
    delay: float = 0.0
    # Answer as soon as this is set, waiting at most `delay` (whether it was set is kept in
    # `Receiver.opened`); and one to set when this answer is given.
    until: threading.Event | None = None
    sets: threading.Event | None = None


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.url = ""
        self.opened: list[bool] = []  # for each answer with `until`: set in time, or not

    def answer(self, *answers: Answer) -> None:
        with self.lock:
            self.script.extend(answers)

    def _next(self) -> Answer:
        with self.lock:
            return self.script.pop(0) if self.script else Answer()


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            answer = receiver._next()
            if answer.until is not None:
                opened = answer.until.wait(answer.delay)
                with receiver.lock:
                    receiver.opened.append(opened)
            elif answer.delay:
                time.sleep(answer.delay)
            if answer.sets is not None:
                answer.sets.set()
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, *_args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
