"""Bot API benchmark: sends, event latency, catch-up throughput, webhook latency and the outbox.

    python tests/bench/bench_api.py [--messages 300] [--concurrency 8] [--events 60] [--poll-ms 150]
                                    [--replay 200] [--slow-ms 20] [--outbox 100]

Runs the real `linda-desktop run --json` (API on, real Chromium) against the WhatsApp Web
simulator, links it, then measures:

  send, sequential:  one keep-alive connection, one message after the other, each answered only
                     once WhatsApp (here the simulator's server) acknowledged it;
  send, concurrent:  the same with N connections at once;
  event latency:     from the phone delivering a message (simulator endpoint returns) to the bot
                     reading it on GET /v1/events; median and p95. The simulator's page learns
                     of new messages by polling its server every --poll-ms (like a long-poll
                     socket but coarser), so that interval bounds the latency from below.

and (issue 14), with a webhook receiver in this process:

  replay throughput: the app stopped, the phone sends --replay messages, the app starts: messages
                     per second from the app's "connected" to the last one at the webhook (the
                     catch-up path: unread chats → event store → outbox);
  webhook latency:   a live message, from the page's own event time (``page_time``, the moment
                     wa-js handed it to the bridge) to its arrival at the webhook; median and p95;
  outbox rate:       --outbox live messages while the receiver takes --slow-ms per request,
                     delivered per second, against the same with a receiver that answers at once
                     (measured in the same run) and the slow receiver's own ceiling (1000/slow-ms).

The API token lives in the keyring: without LINDA_TEST_SESSION set (tests/run.sh sets it) the
script re-runs itself inside a private D-Bus session with an unlocked gnome-keyring, as run.sh does.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import AppProcess, wait_until, write_settings  # noqa: E402
from tests.plugins.fixtures import free_port  # noqa: E402
from tests.whatsapp_sim.control import Simulator  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Client:
    """One keep-alive connection to the API."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def send(self, to: str, text: str) -> dict:
        self.conn.request("POST", "/v1/messages", json.dumps({"to": to, "text": text}), self.headers)
        response = self.conn.getresponse()
        body = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body}")
        return body

    def get(self, path: str) -> dict:
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        return json.loads(response.read())


def bench_send(port: int, token: str, count: int, concurrency: int) -> float:
    per = count // concurrency
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        client = Client(port, token)
        try:
            for i in range(per):
                client.send(f"1555{n:03d}{i % 1000:04d}", f"bench message {n}/{i}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    return per * concurrency / seconds


def bench_events(port: int, token: str, sim: Simulator, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/v1/events", headers={"Authorization": f"Bearer {token}"})
    stream = conn.getresponse()
    assert stream.status == 200
    arrived: dict[str, float] = {}
    cond = threading.Condition()

    def read() -> None:
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("data:"):
                event = json.loads(line[5:])
                if event.get("event") == "message":
                    with cond:
                        arrived[event["text"]] = time.perf_counter()
                        cond.notify_all()

    threading.Thread(target=read, daemon=True).start()
    latencies = []
    for i in range(count):
        text = f"latency probe {i}"
        time.sleep(0.05 + (i % 7) * 0.023)  # spread over the page's poll phase
        sim.deliver("15557654321", text)
        sent = time.perf_counter()  # the phone's send has returned: the server holds the message
        with cond:
            if not cond.wait_for(lambda text=text: text in arrived, 10):
                raise RuntimeError(f"event {i} never arrived")
        latencies.append((arrived[text] - sent) * 1000)
    conn.close()
    return latencies


class Receiver:
    """The bot's webhook: records (arrival time, body); sleeps ``delay`` seconds per request."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.delay = 0.0
        self.got: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if hook.delay:
                    time.sleep(hook.delay)
                with hook.lock:
                    hook.got.append((time.time(), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def messages(self, prefix: str) -> list[tuple[float, dict]]:
        with self.lock:
            return [(t, b) for t, b in self.got if b.get("event") == "message" and
                    str(b.get("text", "")).startswith(prefix)]


def bench_webhook_latency(sim: Simulator, hook: Receiver, count: int) -> list[float]:
    """Page event time → webhook arrival, in ms."""
    out = []
    for i in range(count):
        text = f"hook probe {i}"
        time.sleep(0.05 + (i % 7) * 0.023)
        sim.deliver("15557654322", text)
        if not wait_until(lambda text=text: hook.messages(text), 10, 0.005):
            raise RuntimeError(f"webhook {i} never arrived")
        arrived, body = hook.messages(text)[0]
        out.append((arrived - float(body["page_time"])) * 1000)
    return out


def bench_outbox(sim: Simulator, hook: Receiver, count: int, delay: float, tag: str) -> float:
    """Messages per second through the outbox to a receiver taking ``delay`` s per request."""
    hook.delay = delay
    prefix = f"outbox {tag} "
    for i in range(count):
        sim.deliver("15557654323", f"{prefix}{i}")
    assert wait_until(lambda: hook.messages(prefix), 30, 0.005)
    first = hook.messages(prefix)[0][0]
    if not wait_until(lambda: len(hook.messages(prefix)) >= count, 120, 0.01):
        raise RuntimeError(f"outbox {tag}: {len(hook.messages(prefix))}/{count}")
    last = hook.messages(prefix)[-1][0]
    hook.delay = 0.0
    return (count - 1) / max(1e-6, last - first)


def bench_replay(data: Path, sim: Simulator, hook: Receiver, count: int) -> tuple[float, float]:
    """(messages/s from "connected" to the last at the webhook, seconds) for ``count`` messages
    that arrived while the app was stopped."""
    for i in range(count):
        sim.deliver("15557654324", f"replay {i}")
    app = AppProcess(data, sim.url).start()
    try:
        app.wait_state("connected", 60)
        connected = time.time()
        if not wait_until(lambda: len(hook.messages("replay ")) >= count, 120, 0.01):
            raise RuntimeError(f"replay: {len(hook.messages('replay '))}/{count}")
        last = max(t for t, _ in hook.messages("replay "))
        got = hook.messages("replay ")
        assert len(got) == count and all(b["backfilled"] for _, b in got), "duplicates or not backfilled"
        return count / (last - connected), last - connected
    finally:
        app.terminate()


def in_keyring_session() -> None:
    """Re-exec inside a private D-Bus session with an unlocked Secret Service (as tests/run.sh)."""
    if os.environ.get("LINDA_TEST_SESSION") or not shutil.which("dbus-run-session"):
        return
    scratch = tempfile.mkdtemp(prefix="bench-keyring-")
    script = (f'export XDG_RUNTIME_DIR="{scratch}/run" XDG_DATA_HOME="{scratch}/data"; '
              'mkdir -p "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME"; chmod 700 "$XDG_RUNTIME_DIR"; '
              'printf %s bench | gnome-keyring-daemon --unlock --components=secrets >/dev/null; '
              'exec "$0" "$@"')
    os.execvpe("dbus-run-session", ["dbus-run-session", "--", "bash", "-c", script, sys.executable,
                                    *sys.argv], {**os.environ, "LINDA_TEST_SESSION": "1"})


def main() -> int:
    in_keyring_session()
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--events", type=int, default=60)
    parser.add_argument("--poll-ms", type=int, default=150, help="the simulator page's poll interval")
    parser.add_argument("--replay", type=int, default=200, help="messages sent while the app is stopped")
    parser.add_argument("--slow-ms", type=int, default=20, help="the slow receiver's time per request")
    parser.add_argument("--outbox", type=int, default=100, help="messages for each outbox run")
    parser.add_argument("--hook-events", type=int, default=40, help="live messages for the webhook latency")
    args = parser.parse_args()

    from linda_desktop.api.token import load_token

    token = load_token(create=True)
    assert token
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    port = free_port()
    data = work / "data"
    hook = Receiver()
    write_settings(data, api_enabled=True, api_port=port, flush_delay_seconds=6, webhook_url=hook.url,
                   replay_max_messages=max(500, args.replay))
    sim = Simulator(free_port(), work / "sim", loading_seconds=0.3, first_qr_seconds=30)
    sim.start()
    sim._request("POST", "/_sim/config", {"poll_ms": args.poll_ms})
    app = AppProcess(data, sim.url).start()
    try:
        app.wait_state("needs_link", 60)
        app.wait_for(lambda e: e.get("event") == "qr", 30)
        sim.link()
        app.wait_state("connected", 30)
        # The first backup after linking reopens the tab (storage flush): measure after it.
        app.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "link", 60)
        client = Client(port, token)
        assert wait_until(lambda: client.get("/v1/status").get("ready_to_send"), 30)
        def one_send() -> bool:
            try:
                client.send("15550000001", "warm-up")
                return True
            except RuntimeError:
                return False
        assert wait_until(one_send, 60, 0.5), "no send succeeded"
        bench_send(port, token, 19, 1)  # warm-up
        sequential = bench_send(port, token, args.messages, 1)
        concurrent = bench_send(port, token, args.messages, args.concurrency)
        latencies = bench_events(port, token, sim, args.events)
        recorded = len(sim.sent_messages())
        hook_ms = bench_webhook_latency(sim, hook, args.hook_events)
        fast_rate = bench_outbox(sim, hook, args.outbox, 0.0, "fast")
        slow_rate = bench_outbox(sim, hook, args.outbox, args.slow_ms / 1000, "slow")
        app.terminate()
        replay_rate, replay_s = bench_replay(data, sim, hook, args.replay)
        print(json.dumps({
            "send_sequential_msgs_per_s": round(sequential, 1),
            f"send_concurrent{args.concurrency}_msgs_per_s": round(concurrent, 1),
            "event_latency_ms": {"median": round(statistics.median(latencies), 1),
                                 "p95": round(percentile(latencies, 0.95), 1),
                                 "min": round(min(latencies), 1), "max": round(max(latencies), 1),
                                 "n": len(latencies)},
            "webhook_latency_from_page_event_ms": {"median": round(statistics.median(hook_ms), 1),
                                                   "p95": round(percentile(hook_ms, 0.95), 1),
                                                   "max": round(max(hook_ms), 1), "n": len(hook_ms)},
            "outbox_msgs_per_s": {"fast_receiver": round(fast_rate, 1),
                                  f"slow_receiver_{args.slow_ms}ms": round(slow_rate, 1),
                                  "slow_receiver_ceiling": round(1000 / args.slow_ms, 1),
                                  "slow_vs_ceiling": round(slow_rate / (1000 / args.slow_ms), 2)},
            "replay": {"messages": args.replay, "msgs_per_s": round(replay_rate, 1),
                       "seconds_from_connected_to_last_webhook": round(replay_s, 2)},
            "sim_poll_ms": args.poll_ms,
            "messages_recorded_by_phone": recorded,
        }, indent=2))
        expected = 20 + args.messages // 1 + (args.messages // args.concurrency) * args.concurrency
        assert recorded == expected, (recorded, expected)
    finally:
        app.terminate()
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
