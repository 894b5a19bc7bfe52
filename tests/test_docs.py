"""The docs site as a reader sees it: built offline by `tools/build_docs.sh`, served on 127.0.0.1, opened in headless
Debian Chromium driven over the DevTools protocol on a pipe (no extra Python package, no browser download).

Needs `/usr/bin/chromium` (`apt-get install chromium`; set `CHROMIUM` to use another binary). Without it these tests
skip with that advice, except under `CI=true`, where `.ci/run` installs it and a missing browser fails."""
import base64, json, os, re, select, shutil, subprocess, tempfile, time, urllib.error, urllib.parse, urllib.request
from html import unescape
from pathlib import Path
import pytest
from embedtune.core import serve_folder
from stubs import in_ci

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/"nbs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
INSTALL = "apt-get install -y chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars", "--no-proxy-server",
         # nothing leaves the machine: every host but the local server fails at once (the site links to GitHub)
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
WIDTH, HEIGHT = 1280, 1600


def notebooks() -> list[Path]:
    "Every notebook that becomes a page: nbs/*.ipynb and nbs/<folder>/*.ipynb, not in _ or . folders."
    return sorted(p for p in NBS.rglob("*.ipynb")
                  if not any(part.startswith(("_", ".")) for part in p.relative_to(NBS).parts))


def page_path(nb: Path) -> str:
    "The page of a notebook, as nbdev and Quarto name it: `00_core.ipynb` -> `core.html`."
    from nbdev.config import nbpath2html
    return nbpath2html(nb.relative_to(NBS)).as_posix()


def norm(s: str) -> str:
    "Heading text as a reader sees it: no Markdown marks, single spaces."
    s = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", s)  # links and images: their text
    s = re.sub(r"[`*_]", "", unescape(s))
    s = s.translate(str.maketrans("\u2018\u2019\u201c\u201d", "''\"\""))  # typographic quotes, as rendered
    return " ".join(s.split()).strip()


def md_headings(nb: Path) -> list[str]:
    "The Markdown headings of a notebook's (shown) markdown cells, outside code fences."
    out = []
    for c in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        if c["cell_type"] != "markdown" or re.match(r"#\|\s*hide", src): continue
        fence = None
        for line in src.splitlines():
            m = re.match(r"^ {0,3}(`{3,}|~{3,})", line)
            if m and (fence is None or m.group(1)[0] == fence[0]):
                fence = None if fence else m.group(1)
                continue
            h = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
            if h and not fence: out.append(norm(h.group(1)))
    return out


def title_of(nb: Path) -> str:
    "The page title: the first `# ` heading of the notebook."
    return md_headings(nb)[0]


class Browser:
    "Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: fd 3 in, fd 4 out)."

    def __init__(self, exe: str, timeout: float = 60):
        self.timeout, self.n, self.events, self.buf = timeout, 0, [], b""
        self.profile = tempfile.mkdtemp(prefix="embedtune-chromium-")
        self.log = Path(self.profile + ".log")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # the shell puts the two pipe ends on fds 3 and 4, where Chromium expects them
        cmd = f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-'
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                ["bash", "-c", cmd, exe, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"],
                pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        os.close(to_chrome_r); os.close(from_chrome_w)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for m in ("Page.enable", "Runtime.enable", "Network.enable"): self.call(m, session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH, height=HEIGHT,
                  deviceScaleFactor=1, mobile=False)

    def _recv(self, deadline: float) -> dict:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_chrome], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.from_chrome, 1 << 16)
            if not chunk:
                time.sleep(0.5)
                raise RuntimeError(f"Chromium stopped (exit code {self.proc.poll()}): "
                                   + self.log.read_text(errors="replace")[-2000:])
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: bool = False, **params):
        "Send one command and return its result; events that arrive meanwhile are kept in `self.events`."
        self.n += 1
        msg = {"id": self.n, "method": method, "params": params}
        if session: msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            r = self._recv(deadline)
            if r.get("id") == self.n:
                if "error" in r: raise RuntimeError(f"{method}: {r['error']}")
                return r.get("result", {})
            self.events.append(r)

    def wait_for(self, method: str):
        "Wait for the page's next event `method`."
        deadline = time.monotonic() + self.timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == method and e.get("sessionId") == self.session: return self.events.pop(i)
            self.events.append(self._recv(deadline))

    def open(self, url: str) -> list[dict]:
        "Load `url` and wait for its load event; return the events seen while loading."
        self.events = []
        r = self.call("Page.navigate", session=True, url=url)
        if r.get("errorText"): raise AssertionError(f"{url}: {r['errorText']}")
        self.wait_for("Page.loadEventFired")
        self.eval("new Promise(r => setTimeout(r, 100))")  # deferred scripts and late events
        return list(self.events)

    def eval(self, js: str):
        r = self.call("Runtime.evaluate", session=True, expression=js, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r: raise AssertionError(f"JavaScript failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self):
        try: self.call("Browser.close")
        except Exception: pass
        try: self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        for fd in (self.to_chrome, self.from_chrome): os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)
        self.log.unlink(missing_ok=True)


# What the browser reads off each page, after the load event; local images get up to 5 s to finish.
PAGE_JS = r"""
(async () => {
  const here = location.origin;
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = "eager"; });
  await Promise.all(imgs.filter(i => !i.complete).map(i => new Promise(r => {
    i.addEventListener("load", r); i.addEventListener("error", r); setTimeout(r, 5000); })));
  const main = document.querySelector("main") || document.body;
  return {
    title: document.title,
    h1: [...document.querySelectorAll("h1")].map(h => h.textContent.trim()),
    headings: [...main.querySelectorAll("h1,h2,h3,h4,h5,h6")].map(h => h.textContent),
    text_length: main.innerText.length,
    text: main.innerText,
    tables: [...main.querySelectorAll("table")].map(t => t.rows.length),
    images: imgs.map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0,
                            local: new URL(i.currentSrc || i.src, location.href).origin === here,
                            shown: i.getBoundingClientRect().width > 0})),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
  };
})()
"""


@pytest.fixture(scope="session")
def site():
    "Build the site once per test run with tools/build_docs.sh (xdist workers take turns under a lock: one builds, the others reuse it); the _site/ folder."
    import fcntl
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))  # the same in every worker of one run
    built, lock = ROOT/"_site"/".test-run", ROOT/".pytest_cache"/"docs-build.lock"
    lock.parent.mkdir(exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        if not (built.is_file() and built.read_text() == run):
            r = subprocess.run(["bash", "tools/build_docs.sh"], cwd=ROOT, capture_output=True, text=True, timeout=900)
            assert r.returncode == 0, f"tools/build_docs.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
            built.write_text(run)
    assert (ROOT/"_site"/"index.html").exists()
    return ROOT/"_site"


@pytest.fixture(scope="session")
def base_url(site):
    with serve_folder(site) as url: yield url


def find_chromium(exe: str = CHROMIUM, ci: bool | None = None) -> str:
    "`exe` if it can run; else skip the browser tests with the way to install it, or fail under CI, which installs it."
    if os.path.isfile(exe) and os.access(exe, os.X_OK): return exe
    msg = f"{exe} not found: install chromium to run the docs browser test ({INSTALL}, or set CHROMIUM)"
    if in_ci() if ci is None else ci: pytest.fail(f"{msg}; under CI the browser tests must run: .ci/run installs it")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def chromium(): return find_chromium()


@pytest.fixture(scope="session")
def pages(chromium, base_url, tmp_path_factory):
    "The page of every notebook, as Chromium shows it (and a screenshot of the home page)."
    browser = Browser(chromium)
    try:
        out = {}
        for url in [f"{base_url}/{page_path(nb)}" for nb in notebooks()]:
            events = browser.open(url)
            info = browser.eval(PAGE_JS)
            info["errors"] = [e["params"]["exceptionDetails"].get("exception", {}).get("description")
                              or e["params"]["exceptionDetails"].get("text") for e in events
                              if e.get("method") == "Runtime.exceptionThrown"]
            reqs = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in events
                    if e.get("method") == "Network.requestWillBeSent"}
            info["failed"] = sorted(
                [f"{e['params']['response']['status']} {e['params']['response']['url']}" for e in events
                 if e.get("method") == "Network.responseReceived" and e["params"]["response"]["status"] >= 400] +
                [f"{e['params'].get('errorText')} {reqs.get(e['params']['requestId'], '?')}" for e in events
                 if e.get("method") == "Network.loadingFailed"
                 and reqs.get(e["params"]["requestId"], "").startswith(base_url)])
            if url == f"{base_url}/index.html":
                info["screenshot"] = browser.screenshot(tmp_path_factory.mktemp("docs")/"docs-home.png")
            out[url] = info
        return out
    finally: browser.close()


def test_chromium_is_installed():
    find_chromium()


def test_browser_tests_cannot_skip_in_ci(tmp_path):
    "Without a browser the docs tests skip on a laptop, but fail under CI: a skip there would hide a broken site."
    missing = str(tmp_path/"no-chromium")
    with pytest.raises(pytest.skip.Exception, match="install chromium"): find_chromium(missing, ci=False)
    with pytest.raises(pytest.fail.Exception, match="under CI"): find_chromium(missing, ci=True)
    if in_ci(): assert find_chromium() == CHROMIUM  # what .ci/run has installed


def nbdev_yml() -> dict:
    import yaml
    return yaml.safe_load((NBS/"nbdev.yml").read_text(encoding="utf-8"))


def test_every_notebook_page_renders_with_its_title_and_headings(pages, base_url):
    site_title = nbdev_yml()["website"]["title"]
    for nb in notebooks():
        url = f"{base_url}/{page_path(nb)}"
        p = pages[url]
        title = title_of(nb)
        assert title in p["h1"], f"{url}: no <h1> {title!r} (has {p['h1']})"
        assert p["title"].startswith(title) and site_title in p["title"], f"{url}: <title> is {p['title']!r}"
        shown = {norm(h) for h in p["headings"]}
        missing = [h for h in md_headings(nb) if h not in shown]
        assert not missing, f"{url}: headings of {nb.relative_to(ROOT)} missing from the page: {missing}"
        assert not p["errors"], f"{url}: JavaScript errors: {p['errors']}"
        assert not p["failed"], f"{url}: requests to the site failed: {p['failed']}"


def test_title_cells_hold_only_title_and_description():
    "nbdev turns a notebook's first markdown cell into the page's title and description and drops the rest of it."
    bad = {}
    for nb in notebooks():
        cell = next(c for c in json.loads(nb.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "markdown")
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        extra = [l for l in src.splitlines() if l.strip() and not re.match(r"^(# |> )", l)]
        if extra: bad[str(nb.relative_to(ROOT))] = extra[0][:60] + " ..."
    assert not bad, ("the first markdown cell must hold only '# title' and '> description' (nbdev drops the rest "
                     f"from the docs): move the rest into a new markdown cell: {bad}")


def test_sidebar_lists_every_notebook():
    "nbs/sidebar.yml is written by hand: every notebook must be in it (checked without a browser, so make test sees it)."
    import yaml
    listed = set()
    def walk(items):
        for it in items:
            if isinstance(it, str): listed.add(it)
            elif isinstance(it, dict): walk(it.get("contents", []))
    walk(yaml.safe_load((NBS/"sidebar.yml").read_text(encoding="utf-8"))["website"]["sidebar"]["contents"])
    missing = [nb.relative_to(NBS).as_posix() for nb in notebooks() if nb.relative_to(NBS).as_posix() not in listed]
    assert not missing, f"add {missing} to nbs/sidebar.yml"


def test_home_page_lists_every_page_and_shows_a_table(pages, base_url):
    home = pages[f"{base_url}/index.html"]
    links = {urllib.parse.urldefrag(l)[0] for l in home["links"]}
    missing = [page_path(nb) for nb in notebooks() if f"{base_url}/{page_path(nb)}" not in links]
    assert not missing, f"the home page's navigation does not link to {missing}: add them to nbs/sidebar.yml"
    assert any(rows >= 2 for rows in home["tables"]), f"no table with rows on the home page: {home['tables']}"


def test_images_render(pages, base_url, capsys):
    home = pages[f"{base_url}/index.html"]
    local = [i for i in home["images"] if i["local"]]
    assert local and all(i["ok"] and i["shown"] for i in local), f"the home page shows no local image: {home['images']}"
    broken = [(url, i["src"]) for url, p in pages.items() for i in p["images"] if i["local"] and not i["ok"]]
    assert not broken, f"images that do not render: {broken}"
    shot = home["screenshot"]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with capsys.disabled(): print(f"\ndocs: screenshot of the home page: {shot}")


def test_home_and_tutorial_open_in_colab(pages, base_url):
    "An Open in Colab badge on the home page and the tutorial, opening a notebook that exists on the main branch."
    import tomllib
    repo = tomllib.loads((ROOT/"pyproject.toml").read_text())["project"]["urls"]["Repository"].rstrip("/")
    prefix = "https://colab.research.google.com/github/" + repo.removeprefix("https://github.com/") + "/blob/main/"
    for page in ["index.html", page_path(NBS/"pipelines"/"finetune.ipynb")]:
        colab = [l for l in pages[f"{base_url}/{page}"]["links"] if l.startswith(prefix)]
        assert colab, f"{page}: no link to {prefix}...: add the Open in Colab badge"
        for l in colab: assert (ROOT/l[len(prefix):]).is_file(), f"{page}: the Colab link {l} names no notebook in the repo"


# What a reader of the tutorial must see from a real run, by the id of the cell that shows it
RUN_OUTPUTS = {"49a6af2a": "sample questions", "3956e893": "the retrieval table and plots"}


def test_tutorial_shows_a_real_run(pages, base_url):
    "The tutorial page carries the outputs of a default run kept in nbs/_run/ (small): sample questions, metrics table, plots."
    kept = NBS/"_run"/"finetune.ipynb"
    assert kept.exists(), "no kept run: `make tutorial`, then commit nbs/_run/finetune.ipynb"
    assert kept.stat().st_size < 500_000, f"{kept} is {kept.stat().st_size:,} bytes: keep it under 500 KB"
    cells = lambda nb: {c.get("id"): c for c in json.loads(nb.read_text(encoding="utf-8"))["cells"]}
    ran, now = cells(kept), cells(NBS/"pipelines"/"finetune.ipynb")
    for cid, what in RUN_OUTPUTS.items():
        assert ran[cid]["outputs"], f"the kept run shows no {what} (cell {cid})"
        assert "".join(ran[cid]["source"]).strip() == "".join(now[cid]["source"]).strip(), \
            f"the cell showing {what} ({cid}) changed since the kept run: `make tutorial` refreshes it"
    page = pages[f"{base_url}/{page_path(NBS/'pipelines'/'finetune.ipynb')}"]
    sample = re.search(r"<td>(.+?)</td>", "".join(ran["49a6af2a"]["outputs"][0]["data"]["text/html"])).group(1)
    assert unescape(sample) in page["text"], f"the page does not show the sample question {sample!r}"
    assert sum(rows >= 3 for rows in page["tables"]) >= 2, f"too few tables with rows on the tutorial: {page['tables']}"
    plots = [i for i in page["images"] if i["src"].startswith("data:image/png") or i["src"].endswith(".png")]
    assert len(plots) >= 2 and all(i["ok"] and i["shown"] for i in plots), f"the run's plots do not render: {[(i['src'][:40], i['ok'], i['shown']) for i in plots]}"


def test_internal_links_resolve(pages, base_url, capsys):
    "Every link to the site itself, and every doc link to the published site (site-url), answers 200; anchors exist."
    site_url = nbdev_yml()["website"]["site-url"].rstrip("/") + "/"
    fetch = urllib.request.build_opener(urllib.request.ProxyHandler({})).open  # straight to 127.0.0.1, whatever *_proxy says
    targets = {}
    for url, p in pages.items():
        for link in p["links"]:
            local = base_url + "/" + link[len(site_url):] if link.startswith(site_url) else link
            if not local.startswith(base_url + "/") and local != base_url: continue
            targets.setdefault(local, set()).add(url)
    assert len(targets) > len(pages), "suspiciously few internal links"
    bad, html = [], {}
    for link in sorted(targets):
        page, frag = urllib.parse.urldefrag(link)
        if page not in html:
            try:
                with fetch(page, timeout=30) as r: html[page] = (r.status, r.read().decode("utf-8", "replace"))
            except urllib.error.HTTPError as e: html[page] = (e.code, "")
        status, text = html[page]
        if status != 200: bad.append(f"{link}: HTTP {status} (linked from {sorted(targets[link])[0]})")
        elif frag and not re.search(rf'\b(?:id|name)="{re.escape(urllib.parse.unquote(frag))}"', text):
            bad.append(f"{link}: no anchor #{frag} (linked from {sorted(targets[link])[0]})")
    assert not bad, "broken internal links:\n" + "\n".join(bad)
    with capsys.disabled(): print(f"\ndocs: {len(targets)} internal links on {len(pages)} pages answer 200, with their anchors")
