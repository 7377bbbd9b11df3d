"""Fill the shipped catalog's plan inputs (resources/catalog.json) from real GGUF headers.

Each catalog file may carry ``plan_inputs``: what the planner needs of its header (core.models.remote_headers.
PlanInputs, ~2 KB), so the picker badges it at once with no network. This tool reads the headers and writes them in:

    .venv/bin/python tools/catalog_plan_inputs.py                       # every file, headers from the hub (online)
    .venv/bin/python tools/catalog_plan_inputs.py --only REPO/FILE ...  # some files
    .venv/bin/python tools/catalog_plan_inputs.py --file REPO/FILE=PATH  # a header on disk (a download or a stub)
    .venv/bin/python tools/catalog_plan_inputs.py --zoo REPO/FILE=NAME   # tests/fixtures/model_zoo.py's stub NAME

A vision model's projector (its ``"projector"`` entry, named REPO/MMPROJ-FILE like any file) gets its ``info``
(core.fit.projector.ProjectorInfo's figures: weights and the encoder's shape, for the image buffer) the same way, from
the hub's header or ``--file REPO/MMPROJ-FILE=PATH``.

The hub honours HF_ENDPOINT (the tests point it at their fake hub). Every file written says where its figures came
from (``plan_inputs_source``, a projector's ``info_source``); a file whose header cannot be read keeps what it had and
is reported. Figures are never made up: a file is filled only from a header.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.fit.projector import ProjectorInfo, read_projector_info  # noqa: E402
from core.gguf.reader import ModelInfo, read_model_info  # noqa: E402
from core.models import fit_check  # noqa: E402
from core.models.plan_inputs import PlanInputs  # noqa: E402
from core.models.remote_headers import HeaderCache  # noqa: E402

CATALOG = ROOT / "resources" / "catalog.json"
ZOO_SOURCE = ("tests/fixtures/model_zoo.py stub '{name}': the published hyperparameters of the real model with a "
              "Q4_K_M-style tensor mix, not the file's own header; the first hub refresh replaces it with the real one")


@dataclass(frozen=True)
class Header:
    """Where one file's header comes from: a function that reads it, and the sentence stored beside the figures."""

    read: Callable[[], ModelInfo | ProjectorInfo]
    source: str


def catalog_files(document: dict) -> Iterable[tuple[str, dict, dict]]:
    """(repo/file, the model's entry, the file's entry) for every file of a catalog document."""
    for model in document["models"]:
        for entry in model["files"]:
            yield f"{model['repo']}/{entry['file']}", model, entry


def catalog_projectors(document: dict) -> Iterable[tuple[str, dict, dict]]:
    """(repo/file, the model's entry, the projector's entry) for every vision model of a catalog document."""
    for model in document["models"]:
        if isinstance(model.get("projector"), dict):
            yield f"{model['repo']}/{model['projector']['file']}", model, model["projector"]


def hub_projector_header(model: dict, entry: dict, cache: HeaderCache) -> Header:
    ref = fit_check.ProjectorRef(entry["file"], model["repo"], model.get("revision", "main"), entry.get("sha256"))

    def read() -> ProjectorInfo:
        return cache.projector_info(cache.get(ref.repo_id, ref.filename, ref.revision, sha256=ref.sha256))
    return Header(read, f"hub header of {model['repo']}/{entry['file']}")


def file_projector_header(path: Path) -> Header:
    return Header(lambda: read_projector_info(path), f"the header of a local copy ({path.name})")


def hub_header(model: dict, entry: dict, cache: HeaderCache) -> Header:
    parts = tuple(entry.get("parts") or (entry["file"],))
    ref = fit_check.FileRef(entry["file"], model["repo"], model.get("revision", "main"), parts)

    def read() -> ModelInfo:
        return fit_check.model_info(ref, cache)[0]
    return Header(read, f"hub header of {model['repo']}/{entry['file']}")


def file_header(path: Path) -> Header:
    return Header(lambda: read_model_info(path), f"the header of a local copy ({path.name})")


def zoo_header(name: str) -> Header:
    def read() -> ModelInfo:
        from tests.fixtures.model_zoo import zoo_model

        return read_model_info(zoo_model(name))
    return Header(read, ZOO_SOURCE.format(name=name))


def fill(document: dict, headers: dict[str, Header]) -> tuple[list[str], dict[str, str]]:
    """Write plan inputs into ``document`` for the files named in ``headers``, and each named projector's figures
    (``info``); (filled, {file: why not})."""
    def plan_inputs(entry: dict, info, source: str) -> None:
        entry.update(plan_inputs=PlanInputs.of(info).to_json(), plan_inputs_source=source)

    def projector_figures(entry: dict, info, source: str) -> None:
        entry.update(info=info.to_json(), info_source=source)

    filled, failed = fill_entries(catalog_files(document), headers, plan_inputs)
    projectors_filled, projectors_failed = fill_entries(catalog_projectors(document), headers, projector_figures)
    return filled + projectors_filled, {**failed, **projectors_failed}


def fill_entries(entries, headers: dict[str, Header], write) -> tuple[list[str], dict[str, str]]:
    """write(entry, what its header reads as, the header's source) for each entry whose header is given."""
    filled, failed = [], {}
    for key, _model, entry in entries:
        header = headers.get(key)
        if header is None:
            continue
        try:
            info = header.read()
        except Exception as error:  # noqa: BLE001 - one unreadable header must not stop the others
            failed[key] = str(error)
            continue
        write(entry, info, header.source)
        filled.append(key)
    return filled, failed


def dump_catalog(document: dict) -> str:
    """The catalog as JSON for people to read (indented), each file's plan inputs on one line (they are data)."""
    compact: dict[str, str] = {}
    for index, (_key, _model, entry) in enumerate(catalog_files(document)):
        if "plan_inputs" in entry:
            marker = f"@plan-inputs-{index}@"
            compact[f'"{marker}"'] = json.dumps(entry["plan_inputs"], separators=(",", ":"))
            entry["plan_inputs"] = marker
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    for marker, inputs in compact.items():
        text = text.replace(marker, inputs)
    return text


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, target = value.partition("=")
        if not sep or not key or not target:
            raise SystemExit(f"{option} takes REPO/FILE=VALUE, not {value!r}")
        out[key] = target
    return out


def headers_from_arguments(document: dict, args: argparse.Namespace) -> dict[str, Header]:
    projectors = {key for key, _, _ in catalog_projectors(document)}
    known = {key for key, _, _ in catalog_files(document)} | projectors
    files, zoo = _pairs(args.file, "--file"), _pairs(args.zoo, "--zoo")
    unknown = sorted((set(files) | set(zoo) | set(args.only)) - known)
    if unknown:
        raise SystemExit(f"not in the catalog: {', '.join(unknown)}")
    headers: dict[str, Header] = {}
    if not files and not zoo:
        cache = HeaderCache()
        wanted = set(args.only) or known
        headers = {key: hub_header(model, entry, cache) for key, model, entry in catalog_files(document)
                   if key in wanted}
        headers.update({key: hub_projector_header(model, entry, cache)
                        for key, model, entry in catalog_projectors(document) if key in wanted})
    headers.update({key: file_projector_header(Path(path)) if key in projectors else file_header(Path(path))
                    for key, path in files.items()})
    headers.update({key: zoo_header(name) for key, name in zoo.items()})
    return headers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=CATALOG)
    parser.add_argument("--only", action="append", default=[], metavar="REPO/FILE", help="hub: only these files")
    parser.add_argument("--file", action="append", default=[], metavar="REPO/FILE=PATH")
    parser.add_argument("--zoo", action="append", default=[], metavar="REPO/FILE=NAME")
    args = parser.parse_args(argv)
    document = json.loads(args.catalog.read_text(encoding="utf-8"))
    filled, failed = fill(document, headers_from_arguments(document, args))
    args.catalog.write_text(dump_catalog(document), encoding="utf-8")
    for key in filled:
        print(f"filled  {key}")
    for key, why in failed.items():
        print(f"skipped {key}: {why}", file=sys.stderr)
    print(f"{len(filled)} filled, {len(failed)} without a readable header")
    return 1 if failed and not filled else 0


if __name__ == "__main__":
    sys.exit(main())
