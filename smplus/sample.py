"""The sample data bundled with the package: real COCO val2017 images with persons."""

import os

_HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sample")
SAMPLE_ANNOTATIONS = os.path.join(_HERE, "annotations.json")
SAMPLE_IMAGES = os.path.join(_HERE, "images")
