"""`make lab`: JupyterLab serves the notebooks, and a kernel it starts is the project's .venv Python.

The page itself was checked by hand in headless Chromium (the tutorial opens, the kernel turns idle); here the server
is started through the Makefile target and asked over HTTP, as the browser would."""
import http.cookiejar, json, os, signal, subprocess, sys, time, urllib.request
from pathlib import Path
import psutil, pytest
from stubs import free_port

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent


@pytest.fixture
def lab():
    "`make lab` on a free port, no token; yields (base URL, the make process); stops the whole group afterwards."
    if not (VENV/"bin"/"jupyter-lab").exists(): pytest.skip("jupyterlab is not installed: `make install` installs it")
    port = free_port()
    args = f"--no-browser --port {port} --ServerApp.port_retries=0 --IdentityProvider.token= --ServerApp.password="
    proc = subprocess.Popen(["make", "-s", "lab", f"VENV={VENV}", f"LAB_ARGS={args}"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if proc.poll() is not None: pytest.fail(f"make lab exited {proc.returncode}:\n{proc.stdout.read()}")
                time.sleep(0.5)
        else: pytest.fail("make lab did not answer within 60 s")
        yield url, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL)


def test_make_lab_serves_the_notebooks_with_the_venv_kernel(lab):
    url, proc = lab
    jar = http.cookiejar.CookieJar()
    web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = web.open(f"{url}/lab/tree/pipelines/finetune.ipynb").read().decode()
    assert "JupyterLab" in page
    nb = json.load(web.open(f"{url}/api/contents/pipelines/finetune.ipynb"))
    assert nb["type"] == "notebook" and nb["content"]["cells"], nb.get("message")
    # start a kernel as the page does (POST needs the XSRF cookie the page set)
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    req = urllib.request.Request(f"{url}/api/kernels", data=json.dumps({"name": "python3"}).encode(), method="POST",
                                 headers={"X-XSRFToken": xsrf, "Content-Type": "application/json"})
    kernel = json.load(web.open(req))
    def cmdline(p):  # a helper process that has just exited (a zombie until reaped) has none
        try: return p.cmdline()
        except psutil.NoSuchProcess: return []
    launched = []
    for _ in range(60):
        launched = [c for c in map(cmdline, psutil.Process(proc.pid).children(recursive=True)) if "ipykernel_launcher" in " ".join(c)]
        if launched: break
        time.sleep(0.5)
    assert launched, f"no kernel process for {kernel['id']}"
    assert Path(launched[0][0]).parent == VENV/"bin", launched[0]
