import importlib.util


def test_readme_is_generated_from_index(root):
    spec = importlib.util.spec_from_file_location("make_readme", root/"tools"/"make_readme.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    assert (root/"README.md").read_text() == mod.render(), "README.md is stale: run `python tools/make_readme.py`"
