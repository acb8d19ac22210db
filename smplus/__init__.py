"""smplus: SM+ (Refined Scale Match) for tiny-object detection pre-training."""

__version__ = "0.1.0"
