"""The URL loader against a real HTTP server on 127.0.0.1, serving saved HTML pages."""
import pytest
from embedtune.core import serve_folder
from embedtune.load import load_documents, load_url
from embedtune.chunk import chunk_documents, split_chunks


@pytest.fixture
def site(root):
    with serve_folder(root/"nbs"/"files") as url: yield url


def test_two_posts_like_the_seed(site):
    docs = load_documents([f"{site}/local-models.html", f"{site}/retrieval-year.html"])
    assert [d.metadata["source"] for d in docs] == [f"{site}/local-models.html", f"{site}/retrieval-year.html"]
    assert "Constrained decoding" in docs[0].page_content and "<p>" not in docs[0].page_content
    chunks = chunk_documents(docs, chunk_size=300, chunk_overlap=20)
    splits = split_chunks(chunks)
    assert sum(map(len, splits.values())) == len({c.page_content.lower() for c in chunks})


def test_url_errors_name_the_url(site):
    with pytest.raises(ConnectionError, match=r"missing\.html.*404"): load_url(f"{site}/missing.html")
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:9/"): load_url("http://127.0.0.1:9/", timeout=2)


def test_folder_skips_other_types(tmp_path, root):
    (tmp_path/"a.txt").write_text("Some text about retrieval that is long enough to chunk.")
    (tmp_path/"logo.png").write_bytes(b"\x89PNG")
    (tmp_path/".hidden.txt").write_text("secret")
    with pytest.warns(UserWarning, match="logo.png"): docs = load_documents(tmp_path)
    assert [d.metadata["source"] for d in docs] == [str(tmp_path/"a.txt")]
