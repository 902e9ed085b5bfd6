"""Real Chromium profiles for tests: a tiny local page writes IndexedDB + localStorage.

    port = free_port()
    written = make_real_profile(profile_dir, port=port)          # launches /usr/bin/chromium
    assert read_back(profile_dir, port=port)["token"] == written["token"]

The origin's folders are named ``http_127.0.0.1_<port>``: write and read back on the same port.
``open_browser`` keeps a browser running on the profile (hot backups, crash tests).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.plugins.fixtures import free_port

CHROMIUM = os.environ.get("LINDA_BROWSER", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-blink-features=AutomationControlled",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
DB_NAME = "linda-test"

PAGE = r"""<!doctype html>
<html><head><meta charset="utf-8"><title>linda test page</title></head>
<body><p id="status">ready</p>
<script>
function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open("__DB__", 1);
    req.onupgradeneeded = () => {
      req.result.createObjectStore("records");
      req.result.createObjectStore("payload");
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}
function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("aborted"));
  });
}
const WORDS = ("hello ok thanks see you tomorrow meeting photo call me later where are you " +
  "yes no maybe good morning night lunch dinner today invoice order price delivery address " +
  "status pending paid received sent read message group family work").split(" ");
function chatText(n, seed) {
  // Message-like JSON text: repetitive structure, varied words (compresses ~3-5x, like chat data).
  const out = [];
  let len = 0, i = 0, x = seed;
  while (len < n) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const words = [];
    for (let w = 0; w < 4 + (x % 12); w++) {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      words.push(WORDS[x % WORDS.length]);
    }
    const s = JSON.stringify({id: "3EB0" + x.toString(16).toUpperCase(), t: 1700000000 + x % 9999999,
      from: (x % 100000000000) + "@c.us", ack: x % 4, body: words.join(" ")});
    out.push(s); len += s.length; i++;
  }
  return out.join(",").slice(0, n);
}
function randomBytes(n) {
  const buf = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(buf.subarray(o, Math.min(n, o + 65536)));
  return buf;
}
// Writes the marker records, localStorage and ``payloadMb`` MB of mixed data (half random
// bytes like encrypted media/keys, half chat-like text) in ~16 KB values, 4 MB per transaction.
async function writeAll(token, payloadMb) {
  const db = await openDb();
  let tx = db.transaction("records", "readwrite");
  for (let i = 0; i < 5; i++) tx.objectStore("records").put({token: token, n: i, text: "record " + i}, "r" + i);
  await done(tx);
  const valueSize = 16 * 1024, perTx = 256;
  const total = Math.floor(payloadMb * 1024 * 1024 / valueSize);
  for (let start = 0; start < total; start += perTx) {
    tx = db.transaction("payload", "readwrite");
    const store = tx.objectStore("payload");
    for (let i = start; i < Math.min(total, start + perTx); i++) {
      const value = (i % 2) ? {n: i, bin: randomBytes(valueSize)} : {n: i, text: chatText(valueSize, i + 1)};
      store.put(value, "p" + String(i).padStart(8, "0"));
    }
    await done(tx);
  }
  db.close();
  localStorage.setItem("linda-token", token);
  localStorage.setItem("linda-payload-count", String(total));
  document.getElementById("status").textContent = "written";
  return {token: token, payload_records: total};
}
// Keeps writing small records in the background (a busy page) until stopChurn(); returns at once.
let churning = false, churned = 0;
async function churnLoop() {
  const db = await openDb();
  while (churning) {
    const tx = db.transaction("payload", "readwrite");
    for (let i = 0; i < 32; i++) {
      tx.objectStore("payload").put({n: churned, text: chatText(2048, churned + 7)},
                                    "c" + String(churned).padStart(8, "0"));
      churned++;
    }
    await done(tx);
  }
  db.close();
}
function startChurn() { churning = true; churnLoop(); return true; }
function stopChurn() { churning = false; return churned; }
async function readAll() {
  const db = await openDb();
  const tx = db.transaction(["records", "payload"], "readonly");
  const get = (req) => new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const records = await get(tx.objectStore("records").getAll());
  const count = await get(tx.objectStore("payload").count());
  db.close();
  return {records: records, payload_records: count,
          token: localStorage.getItem("linda-token"),
          local_payload_count: localStorage.getItem("linda-payload-count")};
}
</script></body></html>
""".replace("__DB__", DB_NAME)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGE.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@contextlib.contextmanager
def serve(port: int = 0) -> Iterator[str]:
    """Serve the test page on 127.0.0.1:``port`` (0: any free port); yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def open_browser(profile_dir: Path, *, port: int) -> Iterator[Any]:
    """A running Chromium on ``profile_dir`` with the test page loaded; yields the Playwright page.
    Closed cleanly on exit (so localStorage is flushed)."""
    from playwright.sync_api import sync_playwright

    with serve(port) as url, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile_dir), executable_path=CHROMIUM, headless=True, args=ARGS
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(url)
            page.wait_for_function("typeof writeAll === 'function'")
            yield page
        finally:
            context.close()


def write_data(page: Any, *, payload_mb: float = 0, token: str | None = None) -> dict:
    """Have the loaded test page write its records, localStorage and payload; returns what it wrote."""
    token = token or secrets.token_hex(8)
    return page.evaluate("([t, mb]) => writeAll(t, mb)", [token, payload_mb])


def read_data(page: Any) -> dict:
    return page.evaluate("() => readAll()")


def start_churn(page: Any) -> None:
    """The page keeps writing small IndexedDB records in the background until ``stop_churn``."""
    page.evaluate("() => startChurn()")


def stop_churn(page: Any) -> int:
    """Stop the background writes; returns how many records were written."""
    return page.evaluate("() => stopChurn()")


def make_real_profile(profile_dir: Path, *, port: int, payload_mb: float = 0) -> dict:
    """Launch Chromium on ``profile_dir``, write IndexedDB + localStorage, close cleanly.
    Returns ``{"token", "payload_records"}``."""
    Path(profile_dir).mkdir(parents=True, exist_ok=True)
    with open_browser(profile_dir, port=port) as page:
        written = write_data(page, payload_mb=payload_mb)
        time.sleep(0.5)
    return written


def read_back(profile_dir: Path, *, port: int) -> dict:
    """Relaunch Chromium on ``profile_dir`` and read what the page finds:
    ``{"records": [...], "payload_records", "token", "local_payload_count"}``."""
    with open_browser(profile_dir, port=port) as page:
        return read_data(page)


if __name__ == "__main__":  # quick manual probe: python -m tests.helpers.chromium_profile DIR [MB]
    import sys

    target = Path(sys.argv[1])
    p = free_port()
    t0 = time.monotonic()
    print(json.dumps(make_real_profile(target, port=p, payload_mb=float(sys.argv[2]) if len(sys.argv) > 2 else 0)))
    print("write took", round(time.monotonic() - t0, 2), "s")
    print(json.dumps(read_back(target, port=p))[:300])
