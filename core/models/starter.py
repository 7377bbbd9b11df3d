"""The starter model: a new user chats within minutes, before choosing a model of their own.

`python -m core.models.starter SOURCE.gguf` places SOURCE in the app's model folder when that folder has no
model yet (the README's run command does this with SmolLM2-135M-Instruct).
"""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from core.platform import locations

log = logging.getLogger(__name__)


def installed_models() -> list[Path]:
    folder = locations.models_dir()
    return sorted(folder.glob("*.gguf")) if folder.is_dir() else []


def install_starter_model(source: Path) -> Path | None:
    """Copy `source` into the model folder unless a model is already there; returns the new path."""
    if installed_models():
        return None
    target = locations.models_dir() / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    shutil.copyfile(source, partial)
    partial.replace(target)
    log.info("starter model installed at %s", target)
    return target


def model_to_open_at_start(recent_models: tuple[str, ...]) -> Path | None:
    """The most recent model that still exists, else the first model in the app's folder."""
    for path in recent_models:
        if Path(path).is_file():
            return Path(path)
    models = installed_models()
    return models[0] if models else None


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print("usage: python -m core.models.starter SOURCE.gguf (an existing file)", file=sys.stderr)
        return 2
    placed = install_starter_model(Path(argv[0]))
    if placed:
        print(f"Starter model placed in {placed}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
