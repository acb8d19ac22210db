"""smplus: SM+ (Refined Scale Match) for tiny-object detection pre-training.

The public API (loaded on first use, so `import smplus` stays cheap):

- transform, merge, RunOptions, TransformResult: the offline run (`smplus transform` / `merge`)
- SMPlus, Sample: SM+ per sample; SMPlusDataset, collate_fn: a map-style dataset for a DataLoader
- load_target, SizeHistogram: the target size histogram
- TransformOptions: the options of a run; SmplusError, UsageError: what bad input raises
"""

__version__ = "0.1.0"

_EXPORTS = {
    "transform": "pipeline", "merge": "pipeline", "RunOptions": "pipeline", "TransformResult": "pipeline",
    "SMPlus": "online", "Sample": "online", "SMPlusDataset": "online", "collate_fn": "online",
    "load_target": "histogram", "SizeHistogram": "histogram",
    "TransformOptions": "options",
    "SmplusError": "errors", "UsageError": "errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'smplus' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
