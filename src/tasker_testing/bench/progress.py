"""Progress lines while the bench runs: rich on a terminal, plain lines when CI is set."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any


class Progress:
    def __init__(self, plain: bool | None = None) -> None:
        self.t0 = time.monotonic()
        self.plain = (
            plain if plain is not None else bool(os.environ.get("CI")) or not sys.stdout.isatty()
        )
        self._lock = threading.Lock()
        self._console: Any = None
        if not self.plain:
            from rich.console import Console

            self._console = Console(highlight=False)

    def _stamp(self) -> str:
        elapsed = time.monotonic() - self.t0
        return f"[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}]"

    def section(self, title: str) -> None:
        with self._lock:
            if self._console is not None:
                self._console.rule(f"[bold]{title}")
            else:
                print(f"{self._stamp()} == {title}", flush=True)

    def say(self, message: str) -> None:
        with self._lock:
            if self._console is not None:
                self._console.print(f"[dim]{self._stamp()}[/dim] {message}")
            else:
                print(f"{self._stamp()} {message}", flush=True)

    def detail(self, message: str) -> None:
        """Sub-process chatter (build logs): dimmed locally."""
        with self._lock:
            if self._console is not None:
                self._console.print(f"[dim]{self._stamp()}   {message}[/dim]")
            else:
                print(f"{self._stamp()}   {message}", flush=True)

    def result(self, label: str, text: str, met: bool | None) -> None:
        mark = {True: "met", False: "MISSED", None: ""}[met]
        with self._lock:
            if self._console is not None:
                colour = {True: "green", False: "red", None: "white"}[met]
                self._console.print(
                    f"[dim]{self._stamp()}[/dim] [bold]{label}[/bold]: {text} [{colour}]{mark}[/]"
                )
            else:
                print(f"{self._stamp()} {label}: {text} {mark}".rstrip(), flush=True)
