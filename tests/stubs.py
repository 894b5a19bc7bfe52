"""A small OpenAI-compatible chat and embeddings server on 127.0.0.1: a local stand-in for the online API in tests; and what the tests
that start servers share (a free port, whether CI is running)."""
import base64, contextlib, json, os, re, socket, struct, threading, time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer



def in_ci() -> bool:
    "True under CI (`CI=true`, as `.ci/run` is called), where tests that need a browser or a server extra must run."
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def free_port() -> int:
    "A TCP port on 127.0.0.1 that nothing listens on now."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StubOpenAI:
    """Answers /v1/chat/completions with questions about the document (or with `contents`, one per choice, while they
    last) and /v1/embeddings with small vectors. `statuses` are returned first; the first `drops` chat requests get no
    reply (the connection is closed), the next `slow` ones are answered after `delay` seconds (one at a time with
    `serial`, as a busy server with one slot answers its queue). With `slots`, a request for more replies (`n`) than
    that is refused with 400, as llama-server refuses it. Every request's body is in `requests` (chat) or `embedded`
    (embeddings), its headers (lower-case names) in `headers`."""
    def __init__(self, statuses=(), fail_after=None, fail_status=401, drops=0, slow=0, delay=0.0, contents=(), serial=False, slots=None):
        self.statuses, self.fail_after, self.fail_status = list(statuses), fail_after, fail_status
        self.drops, self.slow, self.delay, self.contents = drops, slow, delay, list(contents)
        self.slot, self.slots = threading.Lock() if serial else contextlib.nullcontext(), slots
        self.requests, self.embedded, self.headers, self.answered = [], [], [], 0

    def fault(self) -> str|None:
        "What to do to the next chat request instead of answering at once: 'drop', 'slow' or None."
        if self.drops: self.drops -= 1; return "drop"
        if self.slow: self.slow -= 1; return "slow"
        return None

    def embed(self, body):
        "Status and JSON payload for an embeddings request: one 8-dimensional vector per input, base64 if asked."
        self.embedded.append(body)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, t in enumerate(texts):
            v = [float(len(str(t)) % (k + 2)) + 1.0 for k in range(8)]
            e = base64.b64encode(struct.pack("<8f", *v)).decode() if body.get("encoding_format") == "base64" else v
            data.append({"object": "embedding", "index": i, "embedding": e})
        return 200, {"object": "list", "data": data, "model": body.get("model", "stub"), "usage": {"prompt_tokens": 1, "total_tokens": 1}}

    def reply(self, body):
        "Status and JSON payload for one request: `n` choices (as OpenAI and vLLM give), one question each when one is asked for."
        self.requests.append(body)
        if self.statuses: return self.statuses.pop(0), {"error": {"message": "try again later", "type": "server_error"}}
        if self.slots and (body.get("n") or 1) > self.slots:
            return 400, {"error": {"code": 400, "message": f"Field 'n': Value must be between 1 <= value <= {self.slots}, but got {body['n']}",
                                   "type": "invalid_request_error"}}
        if self.fail_after is not None and self.answered >= self.fail_after:
            return self.fail_status, {"error": {"message": "invalid api key", "type": "invalid_request_error"}}
        self.answered += 1
        text = body["messages"][-1]["content"]
        words = re.findall(r"[A-Za-z_]{4,}", text.split("Document:", 1)[-1]) or ["this"]
        choices = []
        for i in range(body.get("n") or 1):
            w = words[((body.get("seed") or 0) + i) % len(words)]
            content = (self.contents.pop(0) if self.contents else f"What does the reference say about {w}?" if "Write one" in text else
                       f"Here are the questions:\n1. What does the reference say about {w}?\n\n2. Why is {w} used, e.g. in 3.11?")
            choices.append({"index": i, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"})
        return 200, {"id": "stub", "object": "chat.completion", "created": 0, "model": body.get("model", "stub"),
                     "choices": choices, "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@contextmanager
def serve_openai(stub: StubOpenAI, keep_alive: bool = False):
    """Run `stub` on a free port; yields the base URL to pass as `base_url`. `keep_alive`: HTTP/1.1, connections stay
    open as vLLM's, llama.cpp's and OpenAI's do."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"
        def log_message(self, *a): pass
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stub.headers.append({k.lower(): v for k, v in self.headers.items()})
            if self.path.rstrip("/").endswith("/embeddings"): status, payload = stub.embed(body)
            else:
                fault = stub.fault()
                if fault == "drop":  # no reply at all: the client sees the connection closed
                    stub.requests.append(body)
                    self.close_connection = True
                    return
                status, payload = stub.reply(body)
                if fault == "slow":
                    with stub.slot: time.sleep(stub.delay)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError): self.close_connection = True  # the client gave up waiting
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try: yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
        finally: srv.shutdown()


def run_slow() -> bool:
    "True when the slow tests run too (live models, several processes, whole pipelines): under CI, or with EMBEDTUNE_SLOW=1."
    return in_ci() or os.environ.get("EMBEDTUNE_SLOW", "").strip().lower() not in ("", "0", "false", "no")
