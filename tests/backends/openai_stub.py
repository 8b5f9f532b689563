"""A small OpenAI-compatible server for the fault tests: a real HTTP server on
127.0.0.1 (run as its own process, so a test can kill it mid-batch) that
answers chat completions and can be told to misbehave.

It answers each chat request with `{"entities": {"person": [W]}}`, W being the
first word of the last line of the user turn (the sentence, in the JSON
prompts), with one log-probability per character. `POST /control` sets the
faults (each applies to the next n chat requests): `fail` (status
`fail_status`), `slow` (`slow_seconds` before answering), `malformed` (a 200
with a body that is not JSON), `fail_match` (every request whose prompt
contains this string gets status 500), `echo` (status `echo_status` with a body
that echoes the request's headers, as a debugging proxy would; /v1/models too),
`cut` (an unusable answer: `cut_as` "null" or "empty" content, or "length" as
finish_reason), `trickle` (the body sent a byte every `trickle_seconds`),
`retry_after` (status 429 with the header Retry-After: `retry_after_value`).
Settings: `key` (the API key required), `reasoning` (sent as
`reasoning_content`), `tokenize` (false: no /tokenize, "empty": no tokens,
"broken": status 500), `usage` (sent as the usage field instead of the counts),
`logprob` (every token's log-probability; "nan" for NaN).
`GET /stats` counts the requests seen (and `times`: when each chat request came).

Run: python tests/backends/openai_stub.py PORT
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {
    "fail": 0,
    "fail_status": 500,
    "slow": 0,
    "slow_seconds": 0.0,
    "malformed": 0,
    "fail_match": None,
    "echo": 0,
    "echo_status": 500,
    "cut": 0,
    "cut_as": "null",
    "trickle": 0,
    "trickle_seconds": 0.05,
    "retry_after": 0,
    "retry_after_value": "1",
}
SETTINGS = {"key": None, "reasoning": None, "tokenize": True, "usage": None, "logprob": -0.1}
STATS = {"chat": 0, "tokenize": 0, "models": 0, "authorized": 0, "times": []}
LOCK = threading.Lock()
IN_FLIGHT = [0]  # requests being answered (but /control)


def take(fault: str) -> bool:
    with LOCK:
        if STATE[fault] > 0:
            STATE[fault] -= 1
            return True
    return False


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def send_json(self, status, data, headers=None, trickle=0.0):
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not trickle:
            return self.wfile.write(body)
        try:
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(trickle)
        except OSError:  # the client gave up
            pass

    def echo(self):
        """What a debugging proxy answers: the request's headers, the key among them."""
        return self.send_json(STATE["echo_status"], {"error": "echo", "headers": dict(self.headers.items())})

    def do_GET(self):
        if self.path == "/stats":
            with LOCK:
                return self.send_json(200, dict(STATS))
        if self.path == "/v1/models":
            if take("echo"):
                return self.echo()
            STATS["models"] += 1
            return self.send_json(200, {"data": [{"id": "stub", "max_model_len": 4096}]})
        if self.path == "/health":
            return self.send_json(200, {})
        self.send_json(404, {"error": "not found"})

    def do_POST(self):
        if self.path == "/control":
            # Settings change between requests only: a request still being answered
            # for an earlier test (its client gave up or moved on) must not take the
            # next test's faults, nor be counted in its stats.
            deadline = time.monotonic() + 10
            while IN_FLIGHT[0] and time.monotonic() < deadline:
                time.sleep(0.01)
            return self.post()
        with LOCK:
            IN_FLIGHT[0] += 1
        try:
            return self.post()
        finally:
            with LOCK:
                IN_FLIGHT[0] -= 1

    def post(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/control":
            with LOCK:
                for key, value in body.items():
                    (STATE if key in STATE else SETTINGS)[key] = value
                for key in STATS:
                    STATS[key] = [] if key == "times" else 0
            return self.send_json(200, {})
        if self.path == "/tokenize":
            if not SETTINGS["tokenize"]:
                return self.send_json(404, {"detail": "Not Found"})
            if SETTINGS["tokenize"] == "empty":  # as a server that reads another field
                return self.send_json(200, {"tokens": []})
            if SETTINGS["tokenize"] == "broken":
                return self.send_json(500, {"error": "tokenizer crashed"})
            STATS["tokenize"] += 1
            text = body.get("prompt") or " ".join(m["content"] for m in body.get("messages", []))
            return self.send_json(200, {"tokens": list(range(len(text.split())))})
        if self.path != "/v1/chat/completions":
            return self.send_json(404, {"error": "not found"})
        with LOCK:
            STATS["chat"] += 1
            STATS["times"].append(time.monotonic())
        if take("echo"):
            return self.echo()
        if SETTINGS["key"] is not None:
            if self.headers.get("Authorization") != f"Bearer {SETTINGS['key']}":
                return self.send_json(401, {"error": "invalid api key"})
            with LOCK:
                STATS["authorized"] += 1
        prompt = body["messages"][-1]["content"]
        if take("slow"):
            time.sleep(STATE["slow_seconds"])
        if take("fail") or (STATE["fail_match"] and STATE["fail_match"] in prompt):
            return self.send_json(STATE["fail_status"], {"error": "injected failure"})
        if take("retry_after"):
            return self.send_json(429, {"error": "busy"}, headers={"Retry-After": STATE["retry_after_value"]})
        if take("malformed"):
            data = b'{"choices": [{"message": {"content": "trunc'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return self.wfile.write(data)
        word = prompt.strip().splitlines()[-1].split()[0]
        content = json.dumps({"entities": {"person": [word]}})
        message = {"role": "assistant", "content": content}
        choice = {"message": message, "finish_reason": "stop"}
        if take("cut"):
            if STATE["cut_as"] == "length":
                choice["finish_reason"] = "length"
                message["content"] = content[: len(content) // 2]
            else:
                message["content"] = None if STATE["cut_as"] == "null" else ""
        if SETTINGS["reasoning"]:
            message["reasoning_content"] = SETTINGS["reasoning"]
        logprob = float(SETTINGS["logprob"])  # "nan" too: json writes NaN, as a broken server would
        choice["logprobs"] = {
            "content": [
                {"token": ch, "logprob": logprob, "bytes": list(ch.encode())} for ch in message["content"] or ""
            ]
        }
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(content)}
        if SETTINGS["usage"] is not None:
            usage = SETTINGS["usage"]
        self.send_json(200, {"choices": [choice], "usage": usage}, trickle=STATE["trickle_seconds"] * take("trickle"))


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()
