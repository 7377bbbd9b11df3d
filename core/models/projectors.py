"""Which projector (mmproj file) goes with which vision model: the one pairing rule, for the hub and the library.

A GGUF vision model ships as two files in one repository: the text model (often in several quantisations) and
its projector, `mmproj-*.gguf` (often in F16 and sometimes in other precisions too). The text model alone
chats; with the projector it can also look at images. A model pairs with a projector that lies in the same
place (the same hub repository, the same folder on disk). When several do, the one whose name shares the
longest stem with the model's wins (a folder may hold projectors of several models), then the best precision
(F16 is what the publishers mean by default; quantised projectors lose accuracy for little memory).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from core.fit.projector import ProjectorInfo

PROJECTOR_MARK = "mmproj"
# The precisions a projector is published in, best first; anything else comes after these.
PRECISION_ORDER = ("f16", "bf16", "q8_0", "f32")
_NAME_NOISE = re.compile(r"(mmproj|model|gguf|[-_.]?(i?q\d\w*|bf16|f16|f32))", re.IGNORECASE)


def is_projector_name(filename: str) -> bool:
    """A projector, not a chat model on its own ("mmproj" in its name, as llama.cpp's converter writes it)."""
    return PROJECTOR_MARK in PurePosixPath(filename).name.lower()


def pick_projector(model_filename: str, candidates: Iterable[str]) -> str | None:
    """The projector, of the candidates lying beside model_filename, that goes with it; None when none does."""
    projectors = [name for name in candidates if is_projector_name(name)]
    if is_projector_name(model_filename) or not projectors:
        return None
    stem = _stem(model_filename)
    return min(projectors, key=lambda name: (-_shared_prefix(stem, _stem(name)), _precision_rank(name), name))


def _stem(filename: str) -> str:
    """The words of a file name that name the model: no 'mmproj', no quantisation, no extension."""
    name = PurePosixPath(filename).name.lower()
    return re.sub(r"[-_.]+", "-", _NAME_NOISE.sub("", name)).strip("-")


def _shared_prefix(first: str, second: str) -> int:
    count = 0
    for a, b in zip(first, second):
        if a != b:
            break
        count += 1
    return count


def _precision_rank(filename: str) -> int:
    name = PurePosixPath(filename).name.lower()
    for rank, precision in enumerate(PRECISION_ORDER):
        if re.search(rf"(^|[-_.]){precision}([-_.]|$)", name):
            return rank
    return len(PRECISION_ORDER)


def projector_beside(model_path: str | Path) -> Path | None:
    """The projector in the model file's own folder that pairs with it, None when there is none."""
    model = Path(model_path)
    try:
        names = [entry.name for entry in model.parent.iterdir() if entry.name.lower().endswith(".gguf")]
    except OSError:
        return None
    picked = pick_projector(model.name, names)
    return model.parent / picked if picked is not None else None


def projector_path_for_load(model_path: str | Path) -> str | None:
    """What a load's projector_path should be for the model at model_path: its paired projector beside it, so a
    vision model opened from any folder can see images without the user naming the mmproj file.

    Only where the pairing is sure: the projector is named after the model, or the folder holds one model (a
    repository's quantisations). In a folder of many models a lone mmproj belongs to one of them, and loading it
    with another would fail the load."""
    model = Path(model_path)
    found = projector_beside(model)
    if found is None:
        return None
    stem = _stem(model.name)
    named_after = len(stem) >= MIN_SHARED_STEM and _shared_prefix(stem, _stem(found.name)) >= MIN_SHARED_STEM
    return str(found) if named_after or _one_model_in(model.parent) else None


MIN_SHARED_STEM = 4   # "phi-" or more: shorter shared beginnings are chance


def _one_model_in(folder: Path) -> bool:
    try:
        names = [entry.name for entry in folder.iterdir() if entry.name.lower().endswith(".gguf")]
    except OSError:
        return False
    return len({_stem(name) for name in names if not is_projector_name(name)}) == 1


def listed_projector_info(filename: str, listed_size: int) -> ProjectorInfo:
    """A hub projector whose header could not be read: its weights counted as the file's listed size (the header is
    a few kilobytes of it), its image-encoding buffer not counted (the encoder's shape is in the header). The fit
    check (core.models.fit_check.resolve_projector) falls back to this and says so."""
    return ProjectorInfo(filename, "", True, 0, 0, 0, 0, 0, 0, 0, listed_size, from_header=False)
