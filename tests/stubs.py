"""A small OpenAI-compatible chat server on 127.0.0.1: a local stand-in for the online API in tests; and what the tests
that start servers share (a free port, whether CI is running)."""
import json, os, re, socket, threading
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
    "Answers /v1/chat/completions with questions about the document; `statuses` are returned first."
    def __init__(self, statuses=(), fail_after=None, fail_status=401):
        self.statuses, self.fail_after, self.fail_status = list(statuses), fail_after, fail_status
        self.requests, self.answered = [], 0

    def reply(self, body):
        "Status and JSON payload for one request: `n` choices (as OpenAI and vLLM give), one question each when one is asked for."
        self.requests.append(body)
        if self.statuses: return self.statuses.pop(0), {"error": {"message": "try again later", "type": "server_error"}}
        if self.fail_after is not None and self.answered >= self.fail_after:
            return self.fail_status, {"error": {"message": "invalid api key", "type": "invalid_request_error"}}
        self.answered += 1
        text = body["messages"][-1]["content"]
        words = re.findall(r"[A-Za-z_]{4,}", text.split("Document:", 1)[-1]) or ["this"]
        choices = []
        for i in range(body.get("n") or 1):
            w = words[((body.get("seed") or 0) + i) % len(words)]
            content = (f"What does the reference say about {w}?" if "Write one" in text else
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
            status, payload = stub.reply(body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try: yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
        finally: srv.shutdown()
