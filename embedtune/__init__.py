__version__ = "0.0.1"


def __getattr__(name):
    "`embedtune.load_retriever`, imported only when first asked for (the package itself stays quick to import)."
    if name == "load_retriever":
        from .retriever import load_retriever
        return load_retriever
    raise AttributeError(f"module 'embedtune' has no attribute {name!r}")
