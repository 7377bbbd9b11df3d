"""Workers: two llama.cpp RPC servers on 127.0.0.1 stand for two other computers lending memory.

Each advertises its own budget (the worker's --mem), as a real worker computer would; LlamaDesk probes
them, plans with them and loads SmolLM2 across this computer and both.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main as cli_main
from core.engine.client import EngineClient
from core.engine.errors import EngineCrashed
from core.engine.protocol import AnswerFinished, LoadSettings, SamplingSettings, TokenText
from core.fit import planner
from core.fit.dry_run import dry_run
from core.fit.estimate import MemorySettings
from core.gguf.reader import read_model_info
from core.machine import hardware, rpc, workers
from tests.fixtures.rpc_server import RPC_WORKER_BUDGETS

pytestmark = [pytest.mark.rpc]

GiB = 2**30
MiB = 2**20
PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60


def test_probing_rpc_workers_gives_their_devices_and_budgets(rpc_workers):
    found = workers.probe_workers([server.endpoint for server in rpc_workers])
    assert [worker.address for worker in found] == [server.endpoint for server in rpc_workers]
    for worker, budget in zip(found, RPC_WORKER_BUDGETS):
        (device,) = worker.devices
        assert (device.index, device.total_bytes, device.free_bytes) == (0, budget, budget)
        assert worker.version == workers.PROTOCOL_VERSION
        assert worker.link.round_trip_s > 0 and worker.link.bandwidth_bytes_per_s > 0


def test_the_machine_snapshot_lists_both_workers_devices(rpc_workers):
    addresses = [server.endpoint for server in rpc_workers]
    snapshot = workers.with_workers(hardware.probe(), workers.probe_workers(addresses))
    devices = [gpu for gpu in snapshot.gpus if gpu.is_worker]
    assert [(d.name, d.address, d.free_bytes) for d in devices] == [
        (rpc.buffer_name(address), address, budget) for address, budget in zip(addresses, RPC_WORKER_BUDGETS)]
    assert all(d.link_round_trip_s and d.link_bandwidth_bytes_per_s for d in devices)
    assert workers.addresses_of(snapshot) == tuple(addresses)
    assert hardware.HardwareSnapshot.from_json(snapshot.to_json()) == snapshot


def _fit_json(smollm2, addresses, capsys) -> dict:
    argv = ["fit", str(smollm2), "--json", "--gpu-layers", "-1"]
    for address in addresses:
        argv += ["--worker", address]
    assert cli_main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.mark.model
def test_fit_plans_layers_onto_the_workers(rpc_workers, smollm2, capsys):
    addresses = [server.endpoint for server in rpc_workers]
    devices = _fit_json(smollm2, addresses, capsys)["devices"]
    on_workers = devices[:2]
    assert [(d["name"], d["free_bytes"]) for d in on_workers] == [
        (rpc.buffer_name(address), budget) for address, budget in zip(addresses, RPC_WORKER_BUDGETS)]
    assert all(d["weights_bytes"] > 0 for d in on_workers), "all layers asked for: both workers hold some"


@pytest.mark.model
def test_fit_json_names_worker_devices_with_kind_and_address(rpc_workers, smollm2, capsys):
    addresses = [server.endpoint for server in rpc_workers]
    devices = _fit_json(smollm2, addresses, capsys)["devices"]
    assert [(d["kind"], d.get("address")) for d in devices[:2]] == [("worker", a) for a in addresses]


def _three_way_plan(smollm2, addresses, layers: int):
    machine = workers.with_workers(hardware.probe(), workers.probe_workers(addresses))
    if any(not gpu.is_worker for gpu in machine.gpus):
        pytest.skip("this computer has a GPU of its own: the three-way split here is CPU + two workers")
    return planner.plan(read_model_info(smollm2), machine, planner.PlanRequest(context=2048, n_gpu_layers=layers))


@pytest.mark.model
@pytest.mark.parametrize("layers", [8, 20, 31])
def test_the_three_way_split_matches_llama_cpps_dry_run_per_device(rpc_workers, smollm2, layers):
    addresses = tuple(server.endpoint for server in rpc_workers)
    chosen = _three_way_plan(smollm2, addresses, layers)
    exact = dry_run(smollm2, MemorySettings(n_gpu_layers=layers, n_ctx=2048), rpc_endpoints=addresses)
    assert [d.name for d in chosen.devices] == [d.name for d in exact.devices] == [
        rpc.buffer_name(addresses[0]), rpc.buffer_name(addresses[1]), "CPU"]
    for mine, theirs in zip(chosen.devices, exact.devices):
        assert mine.weights_bytes == theirs.weights_bytes, f"{mine.name}: layers placed differently"
        assert abs(mine.total_bytes - theirs.total_bytes) <= max(0.02 * theirs.total_bytes, 32 * MiB), mine.name


@pytest.mark.model
def test_the_plan_says_how_many_layers_each_computer_holds(rpc_workers, smollm2):
    addresses = tuple(server.endpoint for server in rpc_workers)
    chosen = _three_way_plan(smollm2, addresses, 20)
    exact = dry_run(smollm2, MemorySettings(n_gpu_layers=20, n_ctx=2048), rpc_endpoints=addresses)
    held = [exact.layer_devices.count(rpc.buffer_name(address)) for address in addresses]
    here = len(exact.layer_devices) - sum(held)
    sentence = f"{here} layers here, {held[0]} on {addresses[0]}, {held[1]} on {addresses[1]}"
    assert f"Across computers: {sentence}." in chosen.explanation
    assert chosen.placement.startswith(sentence[0].upper() + sentence[1:])


def test_worker_command_prints_its_line_and_stops_on_sigterm():
    port = rpc.free_port()
    command = [sys.executable, "-m", "core.cli", "worker", "--port", str(port), "--mem", "1G", "--threads", "1"]
    worker = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([worker.stdout], [], [], START_TIMEOUT_S)
        assert ready, f"no start-up line within {START_TIMEOUT_S} s"
        line = worker.stdout.readline().strip()
        assert line == f"worker listening on 127.0.0.1:{port}, offering at most 1.0 GiB per device"
        (device,) = workers.probe_worker(f"127.0.0.1:{port}").devices
        assert device.total_bytes == GiB
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, worker.stderr.read()
        assert "worker stopped" in worker.stderr.read()
        assert not rpc.is_listening(f"127.0.0.1:{port}", timeout=0.5), "the RPC server outlived the worker"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.mark.model
def test_smollm2_answers_across_this_computer_and_both_workers(rpc_workers, smollm2):
    addresses = tuple(server.endpoint for server in rpc_workers)
    with EngineClient() as engine:
        loaded = engine.load(LoadSettings(str(smollm2), n_gpu_layers=20, n_ctx=2048, rpc_servers=addresses))
        assert (loaded.backend, loaded.n_gpu_layers, loaded.steps) == ("RPC", 20, ())
        finished = [event for event in engine.chat([{"role": "user", "content": "Say hello."}],
                                                   SamplingSettings(temperature=0.0, max_tokens=12))
                    if isinstance(event, AnswerFinished)][0]
        assert finished.text.strip()
    for server in rpc_workers:
        assert "Accepted client connection" in server.log_tail(10_000), f"{server.endpoint} was never used"


def _answer_until_the_worker_dies(smollm2, server) -> EngineCrashed:
    with EngineClient() as engine:
        engine.load(LoadSettings(str(smollm2), n_gpu_layers=-1, n_ctx=2048, rpc_servers=(server.endpoint,)))
        text = ""
        with pytest.raises(EngineCrashed) as crash:
            for event in engine.chat([{"role": "user", "content": "Write a long story about a cat."}],
                                     SamplingSettings(temperature=0.0, max_tokens=400)):
                if isinstance(event, TokenText):
                    text += event.text
                    if server.process.is_alive() and len(text) > 20:
                        os.kill(server.process.pid, signal.SIGKILL)
                        server.process.join(10)
        assert text.startswith(crash.value.partial_text) and len(crash.value.partial_text) > 20
        return crash.value


@pytest.fixture
def doomed_worker(tmp_path):
    with rpc.start_local_server(memory_limit_bytes=GiB, log_path=tmp_path / "doomed.log") as server:
        yield server


@pytest.mark.model
def test_a_worker_lost_mid_answer_ends_it_with_the_partial_answer_kept(smollm2, doomed_worker):
    crash = _answer_until_the_worker_dies(smollm2, doomed_worker)
    assert "partial answer is kept" in str(crash)
    assert "Remote RPC server crashed" in crash.stderr_tail or "Aborted" in crash.stderr_tail


@pytest.mark.model
def test_a_worker_lost_mid_answer_is_named(smollm2, doomed_worker):
    crash = _answer_until_the_worker_dies(smollm2, doomed_worker)
    assert f"The worker at {doomed_worker.endpoint} stopped answering." in str(crash)


def test_a_probe_leaves_the_worker_free_for_the_next_client(rpc_workers):
    """A worker serves one client at a time: a probe that kept its connection would lock the engine out."""
    address = rpc_workers[0].endpoint
    first = workers.probe_worker(address)
    again = workers.probe_worker(address, timeout=1.0)  # WorkerBusy if the first were still connected
    assert first.devices == again.devices
