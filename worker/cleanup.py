"""After every job, what it left in ComfyUI's folders goes: its output folder (one per
attempt, named by the worker), the input images staged for it, and ComfyUI's temp files
(previews of the one prompt this ComfyUI ran). Only where the worker knows ComfyUI's
folders: a ComfyUI it starts from a folder or workspace, or STILLHOUSE_WORKER__COMFY_BASE_DIR.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from stillhouse.config import WorkerSettings

log = logging.getLogger(__name__)


class Cleaner:
    """Removes one job's files from ComfyUI's output, input and temp folders."""

    def __init__(self, base: Path | None) -> None:
        self.base = base.resolve() if base is not None else None

    @classmethod
    def for_settings(cls, settings: WorkerSettings) -> Cleaner:
        """ComfyUI's base folder as configured (explicitly, or where we start it)."""
        return cls(settings.comfy_base_dir or settings.comfy_dir or settings.comfy_workspace)

    def clean_inputs(self, inputs: list[str]) -> int:
        """Once the prompt ended: the input images staged for it (another job may stage
        the same name next, so this happens before the next prompt's turn)."""
        if self.base is None:
            return 0
        return sum(self._remove(self.base / "input" / name) for name in inputs)

    def clean_outputs(self, folder: str) -> int:
        """Once the images are uploaded: the attempt's output folder and ComfyUI's temp
        files (our outputs are never temp files: previews are saved as outputs)."""
        if self.base is None:
            return 0
        targets = [self.base / "output" / folder]
        temp = self.base / "temp"
        if temp.is_dir():
            targets += list(temp.iterdir())
        return sum(self._remove(path) for path in targets)

    def _remove(self, path: Path) -> int:
        try:
            resolved = path.resolve()
            if self.base is None or not resolved.is_relative_to(self.base):
                return 0  # a name that points outside ComfyUI's folders: never ours
            if resolved.is_dir():
                shutil.rmtree(resolved)
            elif resolved.exists():
                resolved.unlink()
            else:
                return 0
        except OSError as exc:
            log.warning("clean-up failed: %s", exc, extra={"action": "worker.cleanup"})
            return 0
        return 1
