"""ComfyUI's three file folders (output, input, temp), each on disk where a flag says so
(`--base-directory`, `--output-directory`, `--input-directory`, `--temp-directory`, with
ComfyUI's meanings) and in memory otherwise, plus ComfyUI's rules for naming what it saves.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

FOLDER_TYPES = ("output", "input", "temp")


@dataclass
class Folder:
    """One folder: files under `root` on disk, or (root None) in a dict by relative path.

    Paths are relative and normalised (`sub/name.png`); `relative` refuses any that would
    leave the folder, as ComfyUI's `os.path.commonpath` checks do."""

    root: Path | None = None
    files: dict[str, bytes] = field(default_factory=dict)

    def read(self, relative: str) -> bytes | None:
        if self.root is None:
            return self.files.get(relative)
        path = self.root / relative
        return path.read_bytes() if path.is_file() else None

    def exists(self, relative: str) -> bool:
        if self.root is None:
            return relative in self.files
        return (self.root / relative).is_file()

    def write(self, relative: str, data: bytes) -> None:
        if self.root is None:
            self.files[relative] = data
            return
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def names(self, subfolder: str) -> list[str]:
        """The file names directly in `subfolder` (`""`: the folder itself)."""
        if self.root is None:
            return [
                posixpath.basename(p)
                for p in self.files
                if posixpath.dirname(p) == subfolder.strip("/")
            ]
        directory = self.root / subfolder
        return [p.name for p in directory.iterdir()] if directory.is_dir() else []

    def empty(self, recreate: bool = True) -> None:
        """Remove everything, as main.py's `cleanup_temp` does to the temp folder."""
        self.files.clear()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            if recreate:
                self.root.mkdir(parents=True, exist_ok=True)


@dataclass
class Folders:
    """output, input and temp, each on disk or in memory."""

    output: Folder
    input: Folder
    temp: Folder

    @classmethod
    def from_flags(
        cls,
        base: str | None = None,
        output: str | None = None,
        input: str | None = None,
        temp: str | None = None,
    ) -> Folders:
        """ComfyUI's layout: base/output, base/input, base/temp; `--output-directory` and
        `--input-directory` replace theirs; `--temp-directory X` means X/temp (main.py
        appends "temp"). A folder with neither its flag nor a base stays in memory."""
        base_path = Path(os.path.abspath(base)) if base else None

        def place(flag: str | None, name: str) -> Folder:
            if flag:
                path = Path(os.path.abspath(flag))
                return Folder(path / "temp" if name == "temp" else path)
            return Folder(base_path / name if base_path is not None else None)

        return cls(place(output, "output"), place(input, "input"), place(temp, "temp"))

    def by_type(self, kind: str) -> Folder | None:
        """`folder_paths.get_directory_by_type`: None for an unknown type."""
        return {"output": self.output, "input": self.input, "temp": self.temp}.get(kind)

    def start(self) -> None:
        """What ComfyUI's main.py does on start: empty temp, then make it exist."""
        self.temp.empty()

    def stop(self) -> None:
        """And on a clean exit: remove temp."""
        self.temp.empty(recreate=False)


def relative(*parts: str) -> str | None:
    """`parts` joined and normalised inside a folder; None when it would leave it."""
    kept = [p for p in parts if p]
    if any(posixpath.isabs(p) for p in kept):
        return None
    path = posixpath.normpath(posixpath.join(*kept)) if kept else "."
    if path == ".." or path.startswith("../"):
        return None
    return "" if path == "." else path


def expand_prefix(prefix: str, width: int, height: int) -> str:
    """The `%width%`, `%height%` and date variables of a `filename_prefix`."""
    now = time.localtime()
    values = {
        "width": str(width),
        "height": str(height),
        "year": str(now.tm_year),
        "month": f"{now.tm_mon:02}",
        "day": f"{now.tm_mday:02}",
        "hour": f"{now.tm_hour:02}",
        "minute": f"{now.tm_min:02}",
        "second": f"{now.tm_sec:02}",
    }
    for name, value in values.items():
        prefix = prefix.replace(f"%{name}%", value)
    return prefix


def next_counter(names: list[str], base: str) -> int:
    """One more than the highest `{base}_{NNNNN}...` counter among `names` (else 1), as
    ComfyUI's `get_save_image_path` numbers files per prefix and folder."""
    highest = 0
    for name in names:
        if not name.startswith(base + "_"):
            continue
        try:
            number = int(name[len(base) + 1 :].split("_")[0])
        except ValueError:
            number = 0
        highest = max(highest, number)
    return highest + 1
