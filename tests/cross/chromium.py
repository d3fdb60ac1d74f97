"""A real headless Chromium (Debian's `chromium`, installed by scripts/cross-tests.sh) driven over
the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ending in NUL on file
descriptors 3 and 4), so a test needs no WebSocket client and no port. Every wait has a deadline;
the browser is killed at close."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional



def chromium_binary() -> str:
    """$TOOLMESH_CHROMIUM, else `chromium` on PATH."""
    found = os.environ.get("TOOLMESH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("no chromium on PATH: scripts/cross-tests.sh installs Debian's chromium (or set TOOLMESH_CHROMIUM)")
    return found


class Chromium:
    """One headless browser with one page, attached to over the DevTools protocol."""

    def __init__(self, work: Path, width: int = 1400, height: int = 900) -> None:
        profile = work / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def descriptors() -> None:
            # The browser reads commands on fd 3 and writes answers on fd 4. Moved up first so
            # that placing one cannot overwrite the other.
            read_end = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        argv = [chromium_binary(), "--headless", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                # CI runs as root, where Chromium's sandbox cannot start.
                "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--mute-audio", f"--window-size={width},{height}",
                "about:blank"]
        self.log_path = work / "chromium.log"
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(3, 4),
                                          preexec_fn=descriptors)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._next_id = 0
        self._buffer = b""
        target = self.command("Target.createTarget", {"url": "about:blank"}, timeout=60)["targetId"]
        self.session = self.command("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.command("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)

    def command(self, method: str, params: Optional[dict[str, Any]] = None, session: bool = False,
                timeout: float = 30) -> dict[str, Any]:
        """Sends one DevTools command (to the page's session if ``session``) and waits for its answer."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for answer in self._messages(deadline, method):
                if answer.get("id") == self._next_id:
                    if "error" in answer:
                        raise AssertionError(f"DevTools {method} failed: {answer['error']}")
                    return answer.get("result", {})

    def _messages(self, deadline: float, waiting_for: str) -> list[dict[str, Any]]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"Chromium did not answer {waiting_for} in time\n{self.log()}")
        ready, _, _ = select.select([self._from_browser], [], [], left)
        if not ready:
            return []
        chunk = os.read(self._from_browser, 1 << 20)
        if not chunk:
            raise AssertionError(f"Chromium closed its DevTools pipe (exit {self.popen.poll()})\n{self.log()}")
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\0")
        return [json.loads(m) for m in complete if m]

    def navigate(self, url: str, timeout: float = 30) -> None:
        """Opens ``url`` and waits until its document has loaded."""
        answer = self.command("Page.navigate", {"url": url}, session=True)
        if answer.get("errorText"):
            raise AssertionError(f"Chromium could not open {url}: {answer['errorText']}")
        loaded = f"document.readyState === 'complete' && location.href === {json.dumps(url)}"
        self.wait_for(loaded, timeout, f"{url} loaded")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise), as JSON."""
        answer = self.command("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                              session=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"the page threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str, check: Callable[[Any], bool] = bool) -> Any:
        """Evaluates ``expression`` until ``check`` holds for its value; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if check(value):
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for the page to show {what}; last: {value!r}")

    def screenshot(self, path: Path) -> None:
        """The page as it is now, as a PNG."""
        data = self.command("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)
