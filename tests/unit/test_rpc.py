"""core.machine.rpc: a local llama.cpp RPC server seen by llama.cpp as a GPU-like device."""
from __future__ import annotations

import multiprocessing
import queue
import socket

import pytest

from core.machine import rpc

CLIENT_TIMEOUT_S = 240

_log_lines: list[str] = []
_log_callback = None  # kept alive for the whole child process: llama.cpp holds the pointer


def _capture_llama_log() -> None:
    global _log_callback
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback
    def collect(level, text, user_data):
        _log_lines.append(text.decode(errors="replace"))

    _log_callback = collect
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p())


def _load_through_rpc(endpoint: str, model_path: str, results) -> None:
    """Child process: attach the server, load SmolLM2 with 12 layers on RPC0, complete a prompt."""
    try:
        import llama_cpp

        _capture_llama_log()
        names = rpc.attach_servers([endpoint])
        again = rpc.attach_servers([endpoint])
        llm = llama_cpp.Llama(model_path=model_path, n_gpu_layers=12, n_ctx=2048, verbose=True, seed=1)
        out = llm("The capital of France is", max_tokens=8, temperature=0.0)
        llm.close()
        results.put({"names": names, "again": again, "text": out["choices"][0]["text"], "log": "".join(_log_lines)})
    except BaseException as error:  # report anything to the parent instead of dying silently
        results.put({"error": f"{type(error).__name__}: {error}", "log": "".join(_log_lines)})


@pytest.fixture(scope="module")
def rpc_load(rpc_server, smollm2):  # noqa: F811
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_load_through_rpc, args=(rpc_server.endpoint, str(smollm2), results))
    child.start()
    try:
        outcome = results.get(timeout=CLIENT_TIMEOUT_S)
    except queue.Empty:
        child.kill()
        pytest.fail(f"loading through RPC took over {CLIENT_TIMEOUT_S} s; server log:\n{rpc_server.log_tail()}")
    child.join(30)
    assert "error" not in outcome, f"{outcome['error']}\n{outcome['log'][-3000:]}"
    return rpc_server.endpoint, outcome


@pytest.mark.rpc
@pytest.mark.model
def test_llama_cpp_puts_layers_on_the_rpc_device(rpc_load):
    endpoint, outcome = rpc_load
    assert outcome["names"] == ["RPC0"]
    assert outcome["again"] == ["RPC0"], "attaching twice must not add a second device"
    log = outcome["log"]
    assert f"{rpc.buffer_name(endpoint)} model buffer size" in log
    assert f"{rpc.buffer_name(endpoint)} KV buffer size" in log
    assert "using device RPC0" in log


@pytest.mark.rpc
@pytest.mark.model
def test_completion_works_with_layers_on_rpc(rpc_load):
    _, outcome = rpc_load
    assert outcome["text"].strip(), "the model answered nothing"


@pytest.mark.rpc
def test_server_accepts_connections(rpc_server):  # noqa: F811
    assert rpc_server.process.is_alive()
    assert rpc.is_listening(rpc_server.endpoint)


def test_attaching_an_unreachable_server_raises_instead_of_aborting():
    port = rpc.free_port()  # nothing listens there
    with pytest.raises(rpc.RpcError, match="No RPC server answers"):
        rpc.attach_servers([f"127.0.0.1:{port}"])


@pytest.mark.parametrize("endpoint", ["localhost", "127.0.0.1:", ":50052", "127.0.0.1:99999", "host:port"])
def test_malformed_endpoints_are_named(endpoint):
    with pytest.raises(rpc.RpcError, match="host:port"):
        rpc.attach_servers([endpoint])


def test_start_refuses_a_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(rpc.RpcError, match="already listens"):
            rpc.start_local_server(busy.getsockname()[1])


@pytest.mark.rpc
def test_a_server_advertises_the_memory_it_is_given(tmp_path):
    from core.machine.workers import probe_worker

    with rpc.start_local_server(memory_limit_bytes=3 * 2**30, log_path=tmp_path / "server.log") as server:
        (device,) = probe_worker(server.endpoint, measure_link=False).devices
        assert (device.free_bytes, device.total_bytes) == (3 * 2**30, 3 * 2**30)
        assert "CPU: " in server.log_tail() and "(3072 MiB, 3072 MiB free)" in server.log_tail()


@pytest.mark.rpc
def test_server_stops(tmp_path):
    with rpc.start_local_server(log_path=tmp_path / "server.log") as server:
        assert rpc.is_listening(server.endpoint)
    assert not server.process.is_alive()
    assert not rpc.is_listening(server.endpoint, timeout=0.5)


def test_snapshot_gains_rpc_devices():
    from core.machine.hardware import load_profile

    snapshot = rpc.with_rpc_devices(load_profile("cpu-only-16gb"), ["127.0.0.1:50052"], budget_bytes=2**30)
    (device,) = snapshot.gpus
    assert (device.name, device.vendor, device.free_bytes) == ("RPC0[127.0.0.1:50052]", "rpc", 2**30)
    assert (device.kind, device.address) == ("worker", "127.0.0.1:50052")
    assert "RPC" in snapshot.backends
