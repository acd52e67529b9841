"""A tiny headless-Chromium driver for tests: the DevTools protocol over `--remote-debugging-pipe`.

Chromium reads NUL-terminated JSON commands on fd 3 and writes replies and
events on fd 4, so no websocket and no third-party package are needed. `open_page`
loads a file, collects every console message, uncaught exception and browser
log entry, runs JavaScript expressions, and closes the browser.
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APT_HINT = ("headless Chromium is required for this test: install it with "
            "`apt-get install -y chromium` (Debian's package)")


GUARD = """
['alert', 'confirm', 'prompt'].forEach(function (name) {
  window[name] = function (msg) { console.error('dialog ' + name + ' called: ' + msg); };
});
"""


def chromium_binary() -> str:
    """The Chromium executable; raises AssertionError (the test fails, it is never skipped) when absent."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError(APT_HINT)


@dataclass
class PageReport:
    console: list[dict] = field(default_factory=list)      # {"type", "text"} from console.* calls
    exceptions: list[str] = field(default_factory=list)     # uncaught JavaScript exceptions
    log: list[dict] = field(default_factory=list)           # browser log entries {"level", "text", "source"}
    values: dict[str, Any] = field(default_factory=dict)    # results of the evaluated expressions

    @property
    def errors(self) -> list[str]:
        out = [f"exception: {e}" for e in self.exceptions]
        out += [f"console.{c['type']}: {c['text']}" for c in self.console if c["type"] in ("error", "assert")]
        out += [f"log {e['level']} ({e['source']}): {e['text']}" for e in self.log if e["level"] == "error"]
        return out


class _Pipe:
    def __init__(self, proc: subprocess.Popen, wfd: int, rfd: int, timeout: float):
        self.proc, self.wfd, self.rfd, self.timeout = proc, wfd, rfd, timeout
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.rfd], [], [], left)
            if ready:
                chunk = os.read(self.rfd, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"DevTools {method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, seconds: float) -> dict:
        deadline = time.monotonic() + seconds
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            m = self._read_message(deadline)
            if m.get("method") == method:
                return m
            self.events.append(m)

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass


def open_page(path: Path, expressions: dict[str, str], tmp: Path, timeout: float = 30.0) -> PageReport:
    """Load `path` in headless Chromium, evaluate `expressions` (name -> JS expression returning JSON-able
    values), and report console messages, exceptions and log entries."""
    binary = chromium_binary()
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()

    def child_fds() -> None:
        a = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)
        b = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
        os.dup2(a, 3)
        os.dup2(b, 4)

    args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            "--disable-default-apps", f"--user-data-dir={tmp / 'chromium-profile'}", "--remote-debugging-pipe",
            "about:blank"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=child_fds, pass_fds=(3, 4))
    os.close(to_r)
    os.close(from_w)
    pipe = _Pipe(proc, to_w, from_r, timeout)
    report = PageReport()
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            pipe.send(domain, session=session)
        # a script injected into the page would most likely call a dialog: make that a console error
        # instead of a modal that blocks the page
        pipe.send("Page.addScriptToEvaluateOnNewDocument", {"source": GUARD}, session=session)
        pipe.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        pipe.wait_event("Page.loadEventFired", timeout)
        pipe.drain(0.5)
        for name, expr in expressions.items():
            res = pipe.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True},
                            session=session)
            if "exceptionDetails" in res:
                report.values[name] = {"evaluation_error": res["exceptionDetails"].get("text", "")}
            else:
                report.values[name] = res.get("result", {}).get("value")
        pipe.drain(0.3)
        for e in pipe.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                report.console.append({"type": p.get("type", ""), "text": text})
            elif e.get("method") == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                report.exceptions.append(d.get("exception", {}).get("description") or d.get("text", ""))
            elif e.get("method") == "Log.entryAdded":
                entry = p.get("entry", {})
                report.log.append({"level": entry.get("level", ""), "text": entry.get("text", ""),
                                   "source": entry.get("source", "")})
        try:
            pipe.send("Browser.close")
        except (RuntimeError, TimeoutError):
            pass
    finally:
        os.close(to_w)
        os.close(from_r)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return report
