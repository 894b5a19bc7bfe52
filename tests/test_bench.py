"""The dev-suite benchmarks' own machinery: a long corpus encoding that was stopped resumes where it was."""
import sys
import numpy as np
import pytest


@pytest.fixture
def retrievers(root):
    sys.path.insert(0, str(root/"bench"))
    import retrievers
    yield retrievers
    sys.path.remove(str(root/"bench"))


def test_a_stopped_encoding_resumes_from_its_saved_parts(retrievers, tmp_path):
    from embedtune.train import load_model
    model, texts = load_model(), [f"passage {i} about {w}" for i, w in enumerate("wings flaps lift drag thrust".split())]
    whole = model.encode_document(texts, normalize_embeddings=True)
    calls, encode = [], model.encode_document
    def stop_after_one(batch, **kw):
        if calls: raise KeyboardInterrupt
        calls.append(len(batch)); return encode(batch, **kw)
    model.encode_document = stop_after_one
    with pytest.raises(KeyboardInterrupt): retrievers.encode_corpus(model, texts, tmp_path, part=2)
    kept = [f.name for f in tmp_path.rglob("*.npy")]
    assert kept == ["0000000.npy"]  # the first part was kept, nothing half-written
    calls[:] = []
    model.encode_document = lambda batch, **kw: (calls.append(len(batch)), encode(batch, **kw))[1]
    again = retrievers.encode_corpus(model, texts, tmp_path, part=2)
    assert calls == [2, 1]  # only the parts not yet encoded
    np.testing.assert_allclose(again, whole, atol=1e-5)
    assert not list(tmp_path.rglob("*.npy"))  # done: the parts are gone
    other = retrievers.fingerprint(model, texts[:-1])
    assert other != retrievers.fingerprint(model, texts)  # other texts, other key
