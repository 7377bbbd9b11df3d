"""llama.cpp's own dry run in a subprocess: its figures, sparse stubs, per-device splits, and failures."""
from __future__ import annotations

import pytest

from core.fit.dry_run import DryRunError, dry_run, parse_log
from core.gguf.reader import read_model_info
from core.fit.estimate import GpuDevice, MemorySettings, estimate
from core.machine.rpc import buffer_name
from tests.fixtures.model_zoo import zoo_model

MiB = 1024 * 1024


def tolerance(total: int) -> float:
    return max(0.02 * total, 32 * MiB)


def sparse_stub(source, target):
    """The header of `source` followed by a hole as long as its tensor data (ARCHITECTURE §4)."""
    info = read_model_info(source)
    with open(source, "rb") as handle, open(target, "wb") as out:
        out.write(handle.read(info.tensor_data_offset))
        out.truncate(info.file_size)
    return target


def test_smollm2_figures_from_the_log(smollm2):
    info = read_model_info(smollm2)
    result = dry_run(smollm2, MemorySettings(n_ctx=8192), model=info)
    host = result.host
    assert host.kv_bytes == 180 * MiB
    assert host.weights_bytes == info.weights_bytes()
    assert 90 * MiB < host.compute_bytes < 110 * MiB
    assert 0 < host.other_bytes < 1 * MiB  # the output buffer: one row of logits
    assert result.n_ctx == 8192 and len(result.layer_devices) == info.n_layers + 1


def test_a_sparse_stub_gives_the_same_figures(smollm2, tmp_path):
    stub = sparse_stub(smollm2, tmp_path / "stub.gguf")
    settings = MemorySettings(n_ctx=4096)
    assert dry_run(stub, settings).devices == dry_run(smollm2, settings).devices


def test_quantized_kv_is_smaller(smollm2):
    f16 = dry_run(smollm2, MemorySettings(n_ctx=4096)).host.kv_bytes
    q8 = dry_run(smollm2, MemorySettings(n_ctx=4096, kv_type="q8_0")).host.kv_bytes
    assert q8 < f16 * 0.6


def test_a_file_llama_cpp_refuses_gives_a_dry_run_error_with_its_log(tmp_path):
    path = zoo_model("llama3.2-1b")
    info = read_model_info(path)
    broken = tmp_path / "short.gguf"
    with open(path, "rb") as handle, open(broken, "wb") as out:
        out.write(handle.read(info.tensor_data_offset))
        out.truncate(info.file_size // 2)  # the tensor table points past the end
    with pytest.raises(DryRunError) as caught:
        dry_run(broken, MemorySettings(n_ctx=2048), model=info)
    assert "llama.cpp" in str(caught.value) and "\n" in str(caught.value)


def test_parse_log_reads_split_kv_and_compute():
    info = read_model_info(zoo_model("llama3.2-1b"))
    lines = [(2, "llama_prepare_model_devices: using device RPC0 (127.0.0.1:5) (unknown id) - 2048 MiB free\n")]
    lines += [(1, f"load_tensors: layer {i:3d} assigned to device {'CPU' if i < 12 else 'RPC0'}, is_swa = 0\n")
              for i in range(17)]
    lines += [(1, f"llama_kv_cache: layer {i:3d}: dev = {'CPU' if i < 12 else 'RPC0'}\n") for i in range(16)]
    lines += [(2, "llama_kv_cache: size =  256.00 MiB (  8192 cells,  16 layers,  1/1 seqs), K (f16): 128.00 MiB\n"),
              (2, "sched_reserve: RPC0[127.0.0.1:5] compute buffer size =   254.50 MiB\n"),
              (2, "sched_reserve:        CPU compute buffer size =    72.01 MiB\n"),
              (2, "llama_context:        CPU  output buffer size =     0.49 MiB\n")]
    result = parse_log(lines, info, MemorySettings(n_ctx=8192, n_gpu_layers=5))
    gpu, host = result.device("RPC0[127.0.0.1:5]"), result.host
    assert (gpu.kv_bytes, host.kv_bytes) == (64 * MiB, 192 * MiB)
    assert gpu.compute_bytes == round(254.5 * MiB) and host.compute_bytes == round(72.01 * MiB)
    assert gpu.other_bytes == 0 and host.other_bytes > 0


def test_two_workers_devices_stay_apart_though_both_log_rpc0():
    """llama.cpp numbers a server's devices from 0 in buffer names ('RPC0[address]') and across the process in
    layer lines ('RPC1'): each worker keeps its own figures, under the planner's name for it."""
    info = read_model_info(zoo_model("llama3.2-1b"))
    lines = [(2, "llama_prepare_model_devices: using device RPC0 (10.0.0.5:50052) (unknown id) - 2048 MiB free\n"),
             (2, "llama_prepare_model_devices: using device RPC1 (10.0.0.6:50052) (unknown id) - 3072 MiB free\n")]
    lines += [(1, f"load_tensors: layer {i:3d} assigned to device {'RPC0' if i < 8 else 'RPC1'}, is_swa = 0\n")
              for i in range(17)]
    lines += [(1, f"llama_kv_cache: layer {i:3d}: dev = {'RPC0' if i < 8 else 'RPC1'}\n") for i in range(16)]
    lines += [(2, "llama_kv_cache: size =  256.00 MiB (  8192 cells,  16 layers,  1/1 seqs), K (f16): 128.00 MiB\n"),
              (2, "sched_reserve: RPC0[10.0.0.5:50052] compute buffer size =    13.25 MiB\n"),
              (2, "sched_reserve: RPC0[10.0.0.6:50052] compute buffer size =    97.00 MiB\n")]
    result = parse_log(lines, info, MemorySettings(n_ctx=8192, n_gpu_layers=-1))
    first, second = (buffer_name(address) for address in ("10.0.0.5:50052", "10.0.0.6:50052"))
    assert [d.name for d in result.devices] == [first, second, "CPU"]
    assert result.layer_devices == (first,) * 8 + (second,) * 9
    assert result.device(first).kv_bytes == result.device(second).kv_bytes == 128 * MiB
    assert (result.device(first).compute_bytes, result.device(second).compute_bytes) == (round(13.25 * MiB), 97 * MiB)


def test_parse_log_counts_a_re_reserved_compute_buffer_once_and_recurrent_state_as_cache():
    """The dry run reads llama.cpp's buffer lines as a real load's allocations are read (core.engine.native_log)."""
    info = read_model_info(zoo_model("llama3.2-1b"))
    lines = [(1, f"load_tensors: layer {i:3d} assigned to device CPU, is_swa = 0\n") for i in range(17)]
    lines += [(2, "sched_reserve:        CPU compute buffer size =    72.00 MiB\n"),
              (2, "llama_memory_recurrent:        CPU RS buffer size =     3.00 MiB\n"),
              (2, "sched_reserve:        CPU compute buffer size =    80.00 MiB\n")]
    host = parse_log(lines, info, MemorySettings(n_ctx=4096)).host
    assert host.compute_bytes == 80 * MiB
    assert host.kv_bytes == 3 * MiB and host.other_bytes == 0


@pytest.mark.parametrize("layers", [1, 12, 31])
def test_split_across_an_rpc_device_matches_the_estimate(smollm2, rpc_server, layers):  # noqa: F811
    info = read_model_info(smollm2)
    settings = MemorySettings(n_gpu_layers=layers, n_ctx=8192)
    exact = dry_run(smollm2, settings, model=info, rpc_endpoints=(rpc_server.endpoint,))
    device = buffer_name(rpc_server.endpoint)
    guess = estimate(info, settings, [GpuDevice(device, 1)])
    assert [d.name for d in exact.devices] == [device, "CPU"]
    assert exact.layer_devices == guess.layer_devices
    for device in exact.devices:
        mine = guess.device(device.name)
        assert mine.weights_bytes == device.weights_bytes
        assert abs(mine.kv_bytes - device.kv_bytes) < MiB
        assert abs(mine.total_bytes - device.total_bytes) <= tolerance(device.total_bytes)


def test_parse_log_moves_overridden_expert_tensors_to_the_host():
    info = read_model_info(zoo_model("qwen3-30b-a3b"))
    lines = [(1, f"load_tensors: layer {i:3d} assigned to device RPC0, is_swa = 0\n") for i in range(49)]
    lines += [(1, f"tensor blk.0.ffn_{kind}_exps.weight (99 MiB q4_K) buffer type overridden to CPU_REPACK\n")
              for kind in ("gate", "up", "down")]
    result = parse_log(lines, info, MemorySettings(n_ctx=8192, n_gpu_layers=-1))
    experts = sum(t.n_bytes for t in info.tensors if t.layer == 0 and "_exps." in t.name)
    whole = estimate(info, MemorySettings(n_ctx=8192, n_gpu_layers=-1), [GpuDevice("RPC0", 1)])
    assert result.host.weights_bytes == whole.host.weights_bytes + experts
    assert result.device("RPC0").weights_bytes == whole.device("RPC0").weights_bytes - experts


@pytest.mark.parametrize("layers, experts", [(-1, 4), (-1, 20), (-1, 48), (30, 10)])
def test_experts_kept_on_the_host_match_the_estimate(rpc_server, layers, experts):  # noqa: F811
    path = zoo_model("qwen3-30b-a3b")
    info = read_model_info(path)
    settings = MemorySettings(n_gpu_layers=layers, n_ctx=8192, cpu_expert_layers=experts)
    exact = dry_run(path, settings, model=info, rpc_endpoints=(rpc_server.endpoint,))
    guess = estimate(info, settings, [GpuDevice(buffer_name(rpc_server.endpoint), 1)])
    for device in exact.devices:
        mine = guess.device(device.name)
        assert mine.weights_bytes == device.weights_bytes  # llama.cpp's own override lines say where they went
        assert abs(mine.total_bytes - device.total_bytes) <= tolerance(device.total_bytes)
