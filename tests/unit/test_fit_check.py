"""core.models.fit_check: the one fit check, for hub files from their headers alone and for local files, with the
user's choice applied the way a load applies it."""
from __future__ import annotations

import pytest

from core.fit.choice import OffloadChoice
from core.machine.hardware import load_profile
from dataclasses import replace

from core.gguf.reader import read_model_info
from core.models.fit_check import FileRef, FitConditions, ProjectorRef, check_file, check_files, exact_figures
from core.models.remote_headers import HeaderCache
from tests.fixtures.fake_hub import fake_hub  # noqa: F401  (fixture)

SMOL = ("o/Smol-GGUF", "smol-Q4_1.gguf")


def remote(repo_id: str, *parts: str) -> FileRef:
    return FileRef(parts[0], repo_id, parts=parts)


def test_hub_files_are_planned_from_their_headers_and_a_missing_one_says_why(fake_hub, smollm2):  # noqa: F811
    fake_hub.add_repo(SMOL[0], {SMOL[1]: smollm2.read_bytes()})
    cache = HeaderCache()
    laptop = FitConditions(load_profile("laptop-8gb"))
    ok, missing = check_files([remote(*SMOL), remote(SMOL[0], "absent.gguf")], laptop, cache)
    assert ok.plan is not None and ok.badge == "Runs fully on GPU"
    assert ok.tokens_per_second and ok.tokens_per_second > 0
    assert missing.plan is None and "not found" in missing.error
    cpu = check_file(remote(*SMOL), FitConditions(load_profile("cpu-only-16gb")), cache, ok.entries)
    assert cpu.plan.verdict == "CPU only"


def test_a_hub_file_and_its_local_copy_get_the_same_verdict_and_figures(fake_hub, smollm2):  # noqa: F811
    fake_hub.add_repo(SMOL[0], {SMOL[1]: smollm2.read_bytes()})
    conditions = FitConditions(load_profile("laptop-8gb"), OffloadChoice(context=2048, kv_type="q8_0"))
    from_hub = check_file(remote(*SMOL), conditions)
    on_disk = check_file(FileRef(smollm2.name, local_path=smollm2), conditions)
    assert from_hub.plan == on_disk.plan
    assert (on_disk.plan.context, on_disk.plan.kv_type, on_disk.plan.flash_attn) == (2048, "q8_0", True)


def test_the_context_asked_for_is_capped_at_the_trained_one_as_a_load_caps_it(smollm2):
    fit = check_file(FileRef(smollm2.name, local_path=smollm2),
                     FitConditions(load_profile("laptop-8gb"), OffloadChoice(context=1 << 20)))
    assert fit.plan.context == fit.info.context_length == 8192
    assert fit.choice.context == 8192


def test_an_unreadable_local_file_is_a_result_with_a_sentence_not_an_exception(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a model")
    fit = check_file(FileRef(broken.name, local_path=broken), FitConditions(load_profile("laptop-8gb")))
    assert fit.plan is None and "GGUF" in fit.error


def test_a_split_model_is_planned_from_all_its_parts(fake_hub, tmp_path):  # noqa: F811
    from core.gguf.reader import read_model_info
    from tests.fixtures.fake_hub import FakeFile, header_and_size, write_split_stub
    from tests.fixtures.model_zoo import ZOO, zoo_model

    model = ZOO["mistral-7b-v0.3"]
    parts = write_split_stub(model, tmp_path / "split", 3)
    fake_hub.add_repo("o/Split-GGUF", {p.name: FakeFile.virtual(*header_and_size(p)) for p in parts})
    names = tuple(p.name for p in parts)
    desktop = FitConditions(load_profile("desktop-24gb"), OffloadChoice(context=4096))
    fit = check_file(remote("o/Split-GGUF", *names), desktop)
    whole = read_model_info(zoo_model(model.name))
    assert fit.plan is not None, fit.error
    assert len(fit.entries) == 3
    first_only = check_file(remote("o/Split-GGUF", names[0]), desktop)
    split_weights = sum(d.weights_bytes for d in fit.plan.devices)
    assert split_weights > sum(d.weights_bytes for d in first_only.plan.devices), "later parts' weights must count"
    assert abs(split_weights - whole.weights_bytes()) <= 0.01 * whole.weights_bytes()


@pytest.mark.model
def test_exact_figures_from_the_remote_header_match_the_real_file(fake_hub, smollm2):  # noqa: F811
    fake_hub.add_repo(SMOL[0], {SMOL[1]: smollm2.read_bytes()})
    conditions = FitConditions(load_profile("cpu-only-16gb"), OffloadChoice(context=2048))
    fit = check_file(remote(*SMOL), conditions)
    from_header = exact_figures(remote(*SMOL), fit.plan, entries=fit.entries)
    from_file = exact_figures(FileRef(smollm2.name, local_path=smollm2), fit.plan)
    assert from_header.host.total_bytes == from_file.host.total_bytes
    assert from_header.n_ctx == from_file.n_ctx == 2048


def test_a_hub_file_with_plan_inputs_is_planned_without_the_network_like_from_its_header(fake_hub):  # noqa: F811
    from core.gguf.reader import read_model_info
    from core.models.plan_inputs import PlanInputs
    from tests.fixtures.fake_hub import FakeFile, header_and_size
    from tests.fixtures.model_zoo import zoo_model

    header, size = header_and_size(zoo_model("qwen3-8b"))
    fake_hub.add_repo("o/Q-GGUF", {"q.gguf": FakeFile.virtual(header, size)})
    laptop = FitConditions(load_profile("laptop-8gb"))
    from_header = check_file(remote("o/Q-GGUF", "q.gguf"), laptop, HeaderCache())
    requests = len(fake_hub.requests)
    inputs = PlanInputs.of(read_model_info(zoo_model("qwen3-8b")))
    offline = check_file(FileRef("q.gguf", "o/Q-GGUF", plan_inputs=inputs), laptop, HeaderCache())
    assert len(fake_hub.requests) == requests  # nothing was asked of the hub
    assert offline.plan == from_header.plan and offline.entries == ()


def test_a_header_that_cannot_be_fetched_says_so_in_a_sentence():
    # the tests' hub is a closed port: the same failure as a machine without a network
    fit = check_file(remote("o/Nothing-GGUF", "n.gguf"), FitConditions(load_profile("laptop-8gb")), HeaderCache())
    assert fit.plan is None
    assert fit.error == "You are offline — figures for this file need its header from Hugging Face."


def test_network_failures_read_as_sentences_never_errno_text():
    import socket
    import ssl

    import httpx2

    from core.models import hub

    def wrapped(kind, cause):
        error = kind("boom")
        error.__cause__ = cause
        return error

    dns = wrapped(httpx2.ConnectError, socket.gaierror(-2, "Name or service not known"))
    assert hub.network_sentence(dns) == "You are offline"
    proxy = httpx2.ProxyError("502 Bad Gateway")
    assert hub.network_sentence(proxy).startswith("The proxy did not let the request through")
    tls = wrapped(httpx2.ConnectError, ssl.SSLCertVerificationError(1, "certificate verify failed"))
    assert "SSL_CERT_FILE" in hub.network_sentence(tls)
    assert "did not answer in time" in hub.network_sentence(httpx2.ReadTimeout("timed out"))
    explained = str(hub.explain_hub_error(dns, "o/r"))
    assert explained == "You are offline — o/r needs Hugging Face." and "Errno" not in explained


def test_a_vision_model_is_checked_with_its_projector_counted(tmp_path):
    from core.fit.projector import read_projector_info
    from tests.fixtures.tiny_vision import write_tiny_vision_model

    vision = write_tiny_vision_model(tmp_path)
    desktop = FitConditions(load_profile("desktop-24gb"), OffloadChoice(context=512))
    alone = check_file(FileRef(vision.model.name, local_path=vision.model), desktop)
    huge = replace(read_projector_info(vision.projector), weights_bytes=desktop.hardware.gpus[0].free_bytes)
    paired = check_file(FileRef(vision.model.name, local_path=vision.model,
                                projector=ProjectorRef(vision.projector.name, info=huge)), desktop)
    assert alone.plan.n_gpu_layers > 0
    assert paired.plan.n_gpu_layers == 0, "a projector filling the GPU leaves no room for the layers"


# -- a vision model's projector, on the hub and on this computer ------------------------------------------------------
VISION_REPO = "o/Vision-GGUF"


def _vision_refs(vision, *, size: int | None = None) -> tuple[FileRef, FileRef]:
    """The same vision model as a hub file and as a local file, each with its projector."""
    name = vision.projector.name
    on_hub = FileRef(vision.model.name, VISION_REPO, parts=(vision.model.name,),
                     projector=ProjectorRef(name, VISION_REPO, size=size))
    on_disk = FileRef(vision.model.name, local_path=vision.model,
                      projector=ProjectorRef(name, local_path=vision.projector))
    return on_hub, on_disk


def _counted_on_first_gpu(fit, conditions) -> int:
    return conditions.hardware.gpus[0].free_bytes - fit.plan.devices[0].free_bytes


def test_a_hub_vision_model_counts_its_projectors_weights_and_image_buffer_before_download(fake_hub,  # noqa: F811
                                                                                          tmp_path):
    from core.fit.projector import image_compute_bytes
    from tests.fixtures.tiny_vision import write_tiny_vision_model

    vision = write_tiny_vision_model(tmp_path / "repo")
    fake_hub.add_repo(VISION_REPO, {vision.model.name: vision.model.read_bytes(),
                                    vision.projector.name: vision.projector.read_bytes()})
    desktop = FitConditions(load_profile("desktop-24gb"), OffloadChoice(context=512))
    on_hub, on_disk = _vision_refs(vision)
    before, after = check_file(on_hub, desktop, HeaderCache()), check_file(on_disk, desktop)
    assert before.plan is not None, before.error
    info = before.projector.info
    assert info.from_header and before.projector.note is None
    assert _counted_on_first_gpu(before, desktop) == info.weights_bytes + image_compute_bytes(info) > info.weights_bytes
    assert before.plan == after.plan, "the same projector figure before the download as once it is here"
    assert replace(info, source="") == replace(after.projector.info, source="")


def test_a_hub_projectors_header_is_read_by_range_requests_and_cached(fake_hub, tmp_path):  # noqa: F811
    from core.fit.projector import read_projector_info
    from tests.fixtures.fake_hub import FakeFile
    from tests.fixtures.tiny_vision import write_tiny_vision_model

    vision = write_tiny_vision_model(tmp_path / "repo")
    big = 900 << 20     # a published projector's size: its header is read, never its weights
    fake_hub.add_repo(VISION_REPO, {vision.model.name: vision.model.read_bytes(),
                                    vision.projector.name: FakeFile.virtual(vision.projector.read_bytes(), big)})
    desktop = FitConditions(load_profile("desktop-24gb"))
    on_hub, _ = _vision_refs(vision)
    fit = check_file(on_hub, desktop, HeaderCache())
    assert fit.projector.info.weights_bytes == read_projector_info(vision.projector).weights_bytes
    ranges = [r.range for r in fake_hub.requests_for(vision.projector.name)]
    assert ranges and all(r is not None and int(r.split("-")[1]) < 1 << 20 for r in ranges)
    requests = len(fake_hub.requests)
    again = check_file(on_hub, desktop, HeaderCache())
    assert len(fake_hub.requests) == requests, "the header and its figures come from the cache"
    assert again.plan == fit.plan


def test_an_unreadable_projector_header_counts_its_listed_size_and_says_the_image_buffer_is_not(tmp_path):
    from core.models.fit_check import IMAGE_BUFFER_NOT_COUNTED
    from core.models.plan_inputs import PlanInputs
    from tests.fixtures.tiny_vision import write_tiny_vision_model

    vision = write_tiny_vision_model(tmp_path / "repo")
    listed = vision.projector.stat().st_size
    # a catalog row: the model planned offline from its plan inputs, the projector's header on a closed port
    on_hub, _ = _vision_refs(vision, size=listed)
    on_hub = replace(on_hub, plan_inputs=PlanInputs.of(read_model_info(vision.model)))
    desktop = FitConditions(load_profile("desktop-24gb"), OffloadChoice(context=512))
    fit = check_file(on_hub, desktop, HeaderCache())
    assert fit.plan is not None, fit.error
    note = fit.projector.note
    assert note.startswith(f"Its projector {vision.projector.name} counts only by its listed size")
    assert IMAGE_BUFFER_NOT_COUNTED in note and "You are offline" in note
    assert fit.plan.explanation.endswith(note), "the plan says it too"
    assert _counted_on_first_gpu(fit, desktop) == listed
    whole = _counted_on_first_gpu(check_file(_vision_refs(vision)[1], desktop), desktop)
    assert whole > listed, "with its header read, the image buffer counts too"


def test_an_unreadable_local_projector_leaves_the_model_planned_alone_with_a_sentence(tmp_path):
    from tests.fixtures.tiny_vision import write_tiny_vision_model

    vision = write_tiny_vision_model(tmp_path / "repo")
    vision.projector.write_bytes(b"not a projector")
    desktop = FitConditions(load_profile("desktop-24gb"))
    fit = check_file(_vision_refs(vision)[1], desktop)
    alone = check_file(FileRef(vision.model.name, local_path=vision.model), desktop)
    assert fit.projector.info is None and fit.projector.note.startswith(
        f"Its projector {vision.projector.name} is not counted: its header could not be read")
    assert fit.plan.devices == alone.plan.devices
