"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe): no port,
no browser download, no Python package beyond the standard library. Opens one page with the network
cut off, and records every request the page makes, every console message and uncaught exception, and a
screenshot."""
import base64
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import List, Optional

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser")


def find_browser() -> Optional[str]:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclasses.dataclass
class PageVisit:
    requests: List[str]
    console: List[dict]        # {"level", "text"} for console calls, log entries and exceptions
    screenshot: bytes          # PNG


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int):
        self._write, self._read = os.fdopen(write_fd, "wb", buffering=0), os.fdopen(read_fd, "rb", buffering=0)
        self._buffer = b""
        self._next_id = 0
        self.events: List[dict] = []

    def _message(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from the browser")
            chunk = self._read.read(65536)
            if not chunk:
                raise RuntimeError("the browser closed the pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: Optional[str] = None, timeout: float = 30, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self._write.write(json.dumps(message).encode() + b"\0")
        while True:
            answer = self._message(timeout)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._message(timeout)
            self.events.append(event)
            if event.get("method") == method:
                return event


def visit(url: str, browser: str, width: int = 1280, height: int = 2400, settle: float = 0.5) -> PageVisit:
    """Loads `url` with every network request failing (no proxy reachable, no host resolving) and
    returns what the page asked for and logged."""
    profile = tempfile.mkdtemp(prefix="tfxline-browser-")
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    args = [browser, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--disable-domain-reliability",
            f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--window-size={width},{height}", "about:blank"]

    def pipe_fds():  # the protocol's fixed descriptors: the browser reads 3 and writes 4
        read, write = os.dup(to_browser_r), os.dup(from_browser_w)
        os.dup2(read, 3)
        os.dup2(write, 4)

    process = subprocess.Popen(args, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=pipe_fds)
    os.close(to_browser_r)
    os.close(from_browser_w)
    pipe = _Pipe(to_browser_w, from_browser_r)
    try:
        target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
        session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Network", "Runtime", "Log", "Page"):
            pipe.call(f"{domain}.enable", session)
        pipe.call("Emulation.setDeviceMetricsOverride", session, width=width, height=height, deviceScaleFactor=1,
                  mobile=False)
        pipe.events.clear()
        pipe.call("Page.navigate", session, url=url)
        pipe.wait_for("Page.loadEventFired")
        time.sleep(settle)
        shot = pipe.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=False)
        requests, console = [], []
        for event in pipe.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                requests.append(params["request"]["url"])
            elif method == "Runtime.consoleAPICalled":
                text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
                console.append({"level": params.get("type"), "text": text})
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text", "exception")
                console.append({"level": "error", "text": text})
            elif method == "Log.entryAdded":
                entry = params["entry"]
                console.append({"level": entry.get("level"), "text": entry.get("text", "")})
        return PageVisit(requests, console, base64.b64decode(shot["data"]))
    finally:
        try:
            pipe.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)
