"""Output ids and file names that cannot collide with the source's, for combining datasets.

SM+ keeps each image's id and file name while its content changes (a new
background, often a new size). Mixing the output with the original set in one
folder or JSON would then overwrite images and duplicate ids. An id offset and
a file-name prefix (a folder such as "smplus/" or a plain prefix such as
"smplus_") make the two disjoint. The defaults keep the source's names.
Provenance (`background_image_id`, `source_ann_id`) keeps the source's ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from .coco import check_file_name
from .errors import SmplusError, UsageError


@dataclass(frozen=True)
class OutputNames:
    id_offset: int = 0     # added to every image id and annotation id
    file_prefix: str = ""  # put before every file_name (in the JSON and under OUT/images)

    def __post_init__(self):
        if isinstance(self.id_offset, bool) or not isinstance(self.id_offset, int) or self.id_offset < 0:
            raise UsageError(f"--id-offset must be an integer >= 0, got {self.id_offset!r}")
        if not isinstance(self.file_prefix, str):
            raise UsageError(f"--file-prefix must be a string, got {self.file_prefix!r}")
        if self.file_prefix:
            try:
                check_file_name(self.file_prefix + "x", "--file-prefix")
            except SmplusError:
                raise UsageError(f"--file-prefix must be a relative name or folder without '..', "
                                 f"e.g. smplus_ or smplus/, got {self.file_prefix!r}") from None

    def file_name(self, file_name: str) -> str:
        return self.file_prefix + file_name
