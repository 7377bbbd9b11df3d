"""core.machine.workers and `llamadesk-cli worker`: probing workers, their failures, the snapshot, the command's
guard against opening an unauthenticated server to the network."""
from __future__ import annotations

import socket
import struct
import threading
from contextlib import contextmanager

import pytest

from core.cli import fit_options
from core.cli import main as cli_main
from core.cli.worker_cmd import listen_address, memory_size, startup_line
from core.machine import hardware, rpc, workers

GiB = 2**30


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    with rpc.start_local_server(memory_limit_bytes=GiB, log_path=log_path) as server:
        yield server


# --- a real worker ----------------------------------------------------------------------------

@pytest.mark.rpc
def test_a_worker_reports_its_budget_and_the_protocol_of_this_build(worker):
    found = workers.probe_worker(worker.endpoint)
    assert found.devices == (workers.WorkerDevice(index=0, free_bytes=GiB, total_bytes=GiB),)
    assert found.version == workers.PROTOCOL_VERSION, "llama.cpp's RPC protocol changed: update PROTOCOL_VERSION"
    assert found.link.round_trip_s > 0
    assert found.link.upload_bytes_per_s > 0 and found.link.download_bytes_per_s > 0


@pytest.mark.rpc
def test_a_worker_serving_another_client_is_called_busy(worker):
    with socket.create_connection(rpc.split_endpoint(worker.endpoint)) as other_client:
        other_client.sendall(struct.pack("<BQ", 14, 24) + bytes(24))  # HELLO: the server is now serving it
        other_client.recv(64)
        with pytest.raises(workers.WorkerBusy, match="serves one computer at a time"):
            workers.probe_worker(worker.endpoint, timeout=0.5)
    assert workers.probe_worker(worker.endpoint, measure_link=False).devices  # free again


@pytest.mark.rpc
def test_the_cli_machine_gains_a_workers_device(worker):
    snapshot = fit_options.machine("cpu-only-16gb", [worker.endpoint])
    (device,) = snapshot.gpus
    assert (device.kind, device.address, device.vendor, device.free_bytes) == ("worker", worker.endpoint, "rpc", GiB)
    assert "RPC" in snapshot.backends


# --- workers that cannot be used ------------------------------------------------------------------

def test_nothing_listening_is_a_sentence_naming_the_address():
    address = f"127.0.0.1:{rpc.free_port()}"
    with pytest.raises(workers.WorkerUnreachable) as error:
        workers.probe_worker(address)
    assert str(error.value) == (f"{address} could not be reached (connection refused): is `llamadesk-cli worker` "
                                "running there?")
    assert error.value.address == address


@contextmanager
def one_shot_server(reply: bytes | None):
    """A TCP listener that reads one HELLO and sends reply (None: closes without a word): another
    llama.cpp version's server, which cannot run here."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        connection, _ = listener.accept()
        with connection:
            connection.recv(1 + 8 + 24)
            if reply is not None:
                connection.sendall(struct.pack("<Q", len(reply)) + reply)
                connection.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(5)


def test_another_protocol_version_is_refused_naming_both():
    with one_shot_server(bytes([6, 1, 0, 0]) + bytes(24)) as address:
        with pytest.raises(workers.WorkerVersionMismatch) as error:
            workers.probe_worker(address)
    assert f"{address} speaks RPC protocol 6.1.0, but this LlamaDesk's llama.cpp speaks 7.0.0" in str(error.value)


def test_a_newer_minor_version_is_refused_an_older_one_accepted():
    with one_shot_server(bytes([7, 1, 0, 0]) + bytes(24)) as address:
        with pytest.raises(workers.WorkerVersionMismatch, match="7.1.0"):
            workers.probe_worker(address)


def test_a_server_hanging_up_at_the_handshake_is_a_version_question():
    with one_shot_server(None) as address:
        with pytest.raises(workers.WorkerVersionMismatch, match="closed the connection at the handshake"):
            workers.probe_worker(address)


def test_a_malformed_address_is_named():
    with pytest.raises(workers.WorkerError, match="host:port"):
        workers.probe_worker("192.168.1.20")


def test_the_cli_turns_an_unusable_worker_into_a_hardware_error():
    address = f"127.0.0.1:{rpc.free_port()}"
    with pytest.raises(hardware.HardwareError, match=f"{address} could not be reached"):
        fit_options.machine("cpu-only-16gb", [address])


def test_a_lost_worker_is_named():
    gone = f"127.0.0.1:{rpc.free_port()}"
    assert workers.lost_workers_sentence([gone]) == f"The worker at {gone} stopped answering."


@pytest.mark.rpc
def test_a_listening_worker_is_not_lost(worker):
    assert workers.lost_workers_sentence([worker.endpoint]) == ""


# --- the snapshot ---------------------------------------------------------------------------------

def a_worker(address: str, *sizes: int) -> workers.Worker:
    devices = tuple(workers.WorkerDevice(i, size, size) for i, size in enumerate(sizes))
    return workers.Worker(address, workers.PROTOCOL_VERSION, devices, workers.WorkerLink(0.0004, 1.1e8, 0.9e8))


def test_workers_devices_follow_the_local_gpus_in_llama_cpp_order():
    snapshot = workers.with_workers(hardware.load_profile("dual-24gb"),
                                    [a_worker("10.0.0.5:50052", 8 * GiB, 4 * GiB), a_worker("10.0.0.6:50052", GiB)])
    assert [(g.index, g.name, g.kind) for g in snapshot.gpus[2:]] == [
        (2, "RPC0[10.0.0.5:50052]", "worker"), (3, "RPC1[10.0.0.5:50052]", "worker"),
        (4, "RPC0[10.0.0.6:50052]", "worker")]
    assert snapshot.gpus[2].link_bandwidth_bytes_per_s == 0.9e8, "the slower direction"
    assert snapshot.gpus[2].link_round_trip_s == 0.0004
    assert workers.addresses_of(snapshot) == ("10.0.0.5:50052", "10.0.0.6:50052")
    assert hardware.HardwareSnapshot.from_json(snapshot.to_json()) == snapshot


def test_a_build_without_rpc_warns_that_the_workers_go_unused():
    probed = hardware.load_profile("cpu-only-16gb")
    probed = probed.__class__(probed.host, probed.gpus, ("CPU",), (), source="probe")
    snapshot = workers.with_workers(probed, [a_worker("10.0.0.5:50052", GiB)])
    assert snapshot.backends == ("CPU",)
    assert any("GPU NOT USED" in warning and "RPC0[10.0.0.5:50052]" in warning for warning in snapshot.warnings)


def test_no_workers_leave_the_snapshot_as_it_was():
    snapshot = hardware.load_profile("laptop-8gb")
    assert workers.with_workers(snapshot, []) is snapshot


# --- `llamadesk-cli worker` -----------------------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20"])
def test_the_worker_refuses_a_network_address_without_allow_lan(host, capsys):
    assert cli_main(["worker", "--host", host]) == 1
    error = capsys.readouterr().err
    assert f"--host {host} is reachable from" in error and "--allow-lan" in error and "no password" in error


def test_allow_lan_opens_it_and_the_start_up_line_says_so():
    assert listen_address("192.168.1.20", allow_lan=True) == "192.168.1.20"
    assert listen_address("localhost", allow_lan=False) == "127.0.0.1"
    line = startup_line("0.0.0.0:50052", open_to_network=True, memory_limit=None)
    assert line.startswith("worker listening on 0.0.0.0:50052 (open to the network: ")
    assert "no password" in line
    assert startup_line("127.0.0.1:50052", open_to_network=False, memory_limit=None) == \
        "worker listening on 127.0.0.1:50052"


def test_a_host_name_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="IPv4 only"):
        listen_address("worker.local", allow_lan=True)


@pytest.mark.parametrize("text, size", [("8G", 8 * GiB), ("512MiB", 512 * 2**20), ("1024", 1024),
                                        ("1.5g", 3 * GiB // 2)])
def test_memory_sizes(text, size):
    assert memory_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "8X"])
def test_a_bad_memory_size_is_refused(text):
    with pytest.raises(Exception, match="not a memory size"):
        memory_size(text)


def test_an_unknown_device_is_named_with_the_ones_there_are(capsys):
    assert cli_main(["worker", "--device", "NOPE0", "--port", str(rpc.free_port())]) == 1
    assert "This computer has no device named NOPE0: choose from" in capsys.readouterr().err


# --- serve --worker ---------------------------------------------------------------------------------

def test_serve_with_an_unreachable_worker_stops_with_its_sentence(capsys):
    address = f"127.0.0.1:{rpc.free_port()}"
    assert cli_main(["serve", "--port", "0", "--worker", address]) == 1
    assert f"{address} could not be reached (connection refused)" in capsys.readouterr().err


@pytest.mark.rpc
def test_serve_plans_with_a_worker_the_engine_holds(worker, capsys):
    """The server probes its workers once: later fit checks must not ask a worker the loaded engine is using
    (it serves one client at a time and would read as busy)."""
    from core.cli.serve_cmd import _machine_with_workers

    machine = _machine_with_workers([worker.endpoint])
    assert f"using worker {worker.endpoint}: 1.0 GiB free" in capsys.readouterr().err
    with socket.create_connection(rpc.split_endpoint(worker.endpoint)) as engine:
        engine.sendall(struct.pack("<BQ", 14, 24) + bytes(24))  # another client holds the worker now
        engine.recv(64)
        (lent,) = [gpu for gpu in machine().gpus if gpu.is_worker]
    assert (lent.address, lent.free_bytes) == (worker.endpoint, GiB)
