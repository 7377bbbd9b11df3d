"""Fuzzing core.gguf.reader: mutated, truncated and absurd headers only ever raise GGUFError, quickly and in little memory.

Seeds: a tiny written model's header, a compact copy of SmolLM2's header (its real metadata and tensor
table, vocabulary arrays cut to 100 items so that a parse takes well under a millisecond), hand-built
headers with absurd counts, lengths, types and nesting, and a few hundred cuts of SmolLM2's real first 2 MB.
"""
from __future__ import annotations

import random
import struct
import time
import tracemalloc
from dataclasses import dataclass, field

import pytest

from core.gguf.reader import (
    MAX_TENSORS, ArraySummary, GGUFError, GGUFHeaderIncomplete, ModelInfo, StringSummary, parse_model_info,
    read_model_info,
)
from tests.fixtures.tiny_gguf import (
    ValueType, encode_string, encode_value, minimal_metadata, packed_tensors, raw_gguf_header, write_tiny_model,
)

SEED = 20261122
SLOW_PARSE_SECONDS = 2.0          # a hang guard, not a benchmark
MEMORY_LIMIT_BYTES = 64 * 1000 * 1000

ABSURD_U64 = [2**64 - 1, 2**63 - 1, 2**63, 2**62, 2**40, 2**32, 2**32 - 1, 2**31, 16 * 2**20 + 1, 32 * 2**20, 0, 1]
ABSURD_U32 = [2**32 - 1, 2**31, int(ValueType.ARRAY), int(ValueType.STRING), 13, 99, 5, 0, 64]


@dataclass
class FuzzReport:
    cases: int = 0
    parsed: int = 0
    incomplete: int = 0
    refused: int = 0
    slowest: float = 0.0
    peak_bytes: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, label: str, data: bytes, file_size: int | None, measure_memory: bool = False) -> None:
        self.cases += 1
        if measure_memory:
            tracemalloc.reset_peak()
        started = time.perf_counter()
        try:
            info = parse_model_info(data, file_size=file_size, source="fuzz.gguf")
            _exercise(info)
            self.parsed += 1
        except GGUFHeaderIncomplete as incomplete:
            self.incomplete += 1
            if incomplete.needed_bytes <= len(data) or (file_size is not None and incomplete.needed_bytes > file_size):
                self.failures.append(f"{label}: bad needed_bytes {incomplete.needed_bytes} for {len(data)} bytes")
        except GGUFError as error:
            self.refused += 1
            if not str(error).startswith("fuzz.gguf"):
                self.failures.append(f"{label}: message without its source: {error}")
        except Exception as error:  # noqa: BLE001 - the point of the test is that nothing else escapes
            self.failures.append(f"{label}: {type(error).__name__}: {error}"[:300])
        elapsed = time.perf_counter() - started
        self.slowest = max(self.slowest, elapsed)
        if elapsed > SLOW_PARSE_SECONDS:
            self.failures.append(f"{label}: took {elapsed:.2f} s")
        if measure_memory:
            peak = tracemalloc.get_traced_memory()[1]
            self.peak_bytes = max(self.peak_bytes, peak)
            if peak > MEMORY_LIMIT_BYTES:
                self.failures.append(f"{label}: allocated {peak / 1e6:.0f} MB")


def _exercise(info: ModelInfo) -> None:
    """Everything a successful parse offers must work too."""
    assert isinstance(info, ModelInfo)
    assert sum(info.layer_weights_bytes()) <= info.weights_bytes()
    assert len(info.head_count_per_layer()) == len(info.head_count_kv_per_layer()) == info.n_layers
    assert info.parameter_count == sum(t.n_elements for t in info.tensors)


# --- mutations --------------------------------------------------------------------------------------------

def _flip(rng: random.Random, data: bytearray) -> str:
    spots = [rng.randrange(len(data)) for _ in range(rng.randint(1, 8))]
    for spot in spots:
        data[spot] ^= rng.randint(1, 255)
    return f"flip{spots}"


def _cut(rng: random.Random, data: bytearray) -> str:
    keep = rng.randrange(len(data))
    del data[keep:]
    return f"cut@{keep}"


def _absurd_u64(rng: random.Random, data: bytearray) -> str:
    spot, value = rng.randrange(max(1, len(data) - 8)), rng.choice(ABSURD_U64)
    data[spot:spot + 8] = struct.pack("<Q", value)
    return f"u64 {value}@{spot}"


def _absurd_u32(rng: random.Random, data: bytearray) -> str:
    spot, value = rng.randrange(max(1, len(data) - 4)), rng.choice(ABSURD_U32)
    data[spot:spot + 4] = struct.pack("<I", value)
    return f"u32 {value}@{spot}"


def _insert(rng: random.Random, data: bytearray) -> str:
    spot = rng.randrange(len(data))
    data[spot:spot] = rng.randbytes(rng.randint(1, 16))
    return f"insert@{spot}"


def _delete(rng: random.Random, data: bytearray) -> str:
    spot = rng.randrange(len(data))
    del data[spot:spot + rng.randint(1, 64)]
    return f"delete@{spot}"


def _splice(rng: random.Random, data: bytearray) -> str:
    start, to = rng.randrange(len(data)), rng.randrange(len(data))
    data[to:to] = data[start:start + rng.randint(1, 256)]
    return f"splice {start}->{to}"


MUTATIONS = [_flip, _flip, _cut, _absurd_u64, _absurd_u64, _absurd_u32, _absurd_u32, _insert, _delete, _splice]


def mutated(rng: random.Random, seed: bytes) -> tuple[bytes, str]:
    data = bytearray(seed)
    steps = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        if not data:
            break
        steps.append(rng.choice(MUTATIONS)(rng, data))
    return bytes(data), "+".join(steps)


def _file_size_for(rng: random.Random, data: bytes, real_size: int) -> int | None:
    return rng.choice([None, len(data), real_size, real_size // 2, 2**40])


# --- seeds ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_seed(tmp_path_factory) -> tuple[bytes, int]:
    path = write_tiny_model(tmp_path_factory.mktemp("fuzz") / "tiny.gguf", n_layers=3, tensor_type="q8_0")
    data = path.read_bytes()
    return data[:read_model_info(path).tensor_data_offset], len(data)


@pytest.fixture(scope="module")
def smollm2_compact_seed(smollm2) -> tuple[bytes, int]:
    info = read_model_info(smollm2)
    metadata = [(key, *_typed(value)) for key, value in info.metadata.items() if not isinstance(value, StringSummary)]
    tensors = [(t.name, t.shape, t.ggml_type, t.offset) for t in info.tensors]
    header = raw_gguf_header(metadata, tensors)
    last = info.tensors[-1]
    return header, len(header) + last.offset + last.n_bytes


def _typed(value) -> tuple[int, object]:
    """A GGUF value type for a parsed value (widths guessed); long arrays come back with 100 stand-in items."""
    if isinstance(value, ArraySummary):
        item_type = ValueType[value.type_name.upper()]
        items = [f"t{i}" if item_type == ValueType.STRING else 0 for i in range(min(value.length, 100))]
        return ValueType.ARRAY, (item_type, items)
    if isinstance(value, tuple):
        item_type = _typed(value[0])[0] if value else ValueType.UINT32
        return ValueType.ARRAY, (item_type, list(value))
    if isinstance(value, bool):
        return ValueType.BOOL, value
    if isinstance(value, int):
        return (ValueType.UINT32 if 0 <= value < 2**32 else ValueType.INT64), value
    if isinstance(value, float):
        return ValueType.FLOAT32, value
    return ValueType.STRING, value


# --- hand-built absurd headers ------------------------------------------------------------------------------

def absurd_header(rng: random.Random) -> tuple[bytes, str]:
    builder = rng.choice([_absurd_string, _absurd_array, _nested_arrays, _lying_counts, _absurd_tensor])
    return builder(rng)


def _prefix(n_tensors: int, n_kv: int) -> bytes:
    return b"GGUF" + struct.pack("<Iqq", 3, n_tensors, n_kv)


def _required_kvs() -> bytes:
    return b"".join(encode_string(key) + encode_value(t, v) for key, t, v in minimal_metadata())


def _absurd_string(rng: random.Random) -> tuple[bytes, str]:
    declared = rng.choice(ABSURD_U64)
    where = rng.choice(["key", "value", "tensor name", "array item"])
    if where == "key":
        body = encode_string("x", declared_length=declared) + encode_value(ValueType.UINT32, 1)
    elif where == "value":
        body = encode_string("k") + struct.pack("<I", ValueType.STRING) + encode_string("abc", declared)
    elif where == "array item":
        body = (encode_string("k") + struct.pack("<IIQ", ValueType.ARRAY, ValueType.STRING, rng.choice([1, 100]))
                + encode_string("abc", declared))
    else:
        return _prefix(1, 6) + _required_kvs() + encode_string("t", declared) + b"\0" * 64, f"tensor name {declared}"
    return _prefix(0, 7) + _required_kvs() + body + rng.randbytes(rng.randint(0, 64)), f"{where} length {declared}"


def _absurd_array(rng: random.Random) -> tuple[bytes, str]:
    item_type, count = rng.choice([*range(13), 2**32 - 1, 77]), rng.choice(ABSURD_U64)
    body = encode_string("k") + struct.pack("<IIQ", ValueType.ARRAY, item_type, count) + rng.randbytes(64)
    return _prefix(0, 7) + _required_kvs() + body, f"array of {count} type {item_type}"


def _nested_arrays(rng: random.Random) -> tuple[bytes, str]:
    depth = rng.randint(1, 200)
    body = encode_string("k") + struct.pack("<I", ValueType.ARRAY)
    body += struct.pack("<IQ", ValueType.ARRAY, rng.choice([1, 2**20, 2**62])) * depth
    body += struct.pack("<IQ", ValueType.UINT8, 1) + b"\1"
    return _prefix(0, 7) + _required_kvs() + body, f"arrays nested {depth} deep"


def _lying_counts(rng: random.Random) -> tuple[bytes, str]:
    n_tensors, n_kv = rng.choice([-1, 0, 3, 2**31, 2**62, 2**63 - 1]), rng.choice([-(2**63), 6, 7, 1000, 2**40])
    tensors = packed_tensors([("blk.0.a", (64, 4), 0), ("blk.1.a", (64,), 8)])
    body = raw_gguf_header(minimal_metadata(), tensors)[24:]
    return _prefix(n_tensors, n_kv) + body, f"{n_tensors} tensors, {n_kv} keys"


def _absurd_tensor(rng: random.Random) -> tuple[bytes, str]:
    n_dims = rng.choice([0, 1, 2, 4, 5, 2**31, 2**32 - 1])
    dims = [rng.choice([0, 1, 32, -1, 2**31, 2**62, 2**63 - 1]) for _ in range(min(n_dims, 4))]
    ggml_type = rng.choice([0, 1, 2, 8, 12, 30, 41, 42, 43, 99, 2**32 - 1])
    offset = rng.choice([0, 1, 31, 32, 2**40, 2**63, 2**64 - 1])
    tensor = encode_string("blk.0.w") + struct.pack(f"<I{len(dims)}qIQ", n_dims, *dims, ggml_type, offset)
    return _prefix(1, 6) + _required_kvs() + tensor, f"tensor dims {n_dims} {dims} type {ggml_type} @ {offset}"


# --- the tests ----------------------------------------------------------------------------------------------

def test_fuzz_mutated_headers_only_raise_gguf_error(tiny_seed, smollm2_compact_seed):
    rng, report = random.Random(SEED), FuzzReport()
    for name, (seed, real_size) in {"tiny": tiny_seed, "smollm2-compact": smollm2_compact_seed}.items():
        report.check(f"{name} unmutated", seed, real_size)
        for case in range(4_500):
            data, steps = mutated(rng, seed)
            report.check(f"{name} #{case} {steps}", data, _file_size_for(rng, data, real_size))
    assert not report.failures, "\n".join(report.failures[:20])
    assert report.cases >= 9_000 and report.parsed > 0 and report.refused > 1000 and report.incomplete > 100
    print(f"\nfuzz mutated: {report}")


def test_fuzz_absurd_headers_stay_small_and_quick():
    rng, report = random.Random(SEED + 1), FuzzReport()
    tracemalloc.start()
    try:
        for case in range(1_500):
            data, label = absurd_header(rng)
            report.check(f"absurd #{case} {label}", data, rng.choice([None, len(data), 2**40]), measure_memory=True)
    finally:
        tracemalloc.stop()
    assert not report.failures, "\n".join(report.failures[:20])
    assert report.refused > 1000
    print(f"\nfuzz absurd: {report}")


def test_fuzz_real_smollm2_prefix(smollm2):
    with open(smollm2, "rb") as file:
        real = file.read(2_000_000)
    real_size = smollm2.stat().st_size
    header_end = read_model_info(smollm2).tensor_data_offset
    rng, report = random.Random(SEED + 2), FuzzReport()
    for case in range(150):
        data = bytearray(real)
        # Mutate where the structure is dense: the leading metadata and the tensor table, not the token text.
        spot = rng.choice([rng.randrange(4096), rng.randrange(header_end - 12_000, header_end)])
        size = rng.choice([4, 8])
        data[spot:spot + size] = struct.pack("<Q", rng.choice(ABSURD_U64))[:size]
        cut = rng.choice([len(data), rng.randrange(len(data))])
        report.check(f"smollm2 #{case} @{spot} cut {cut}", bytes(data[:cut]), rng.choice([None, real_size]))
    assert not report.failures, "\n".join(report.failures[:20])
    print(f"\nfuzz real prefix: {report}")


def test_fuzz_mutated_files_through_read_model_info(tiny_seed, tmp_path):
    seed, _ = tiny_seed
    rng = random.Random(SEED + 3)
    for case in range(100):
        data, steps = mutated(rng, seed)
        path = tmp_path / f"m{case}.gguf"
        path.write_bytes(data)
        try:
            read_model_info(path)
        except GGUFHeaderIncomplete as incomplete:  # a file's size is known: it is truncated, never "incomplete"
            pytest.fail(f"#{case} {steps}: {incomplete}")
        except GGUFError:
            pass


# --- the largest headers the caps allow ----------------------------------------------------------------------

def _peak_parse_bytes(data: bytes) -> tuple[int, object]:
    tracemalloc.start()
    try:
        try:
            outcome = parse_model_info(data)
        except GGUFError as error:
            outcome = error
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


def test_many_kept_values_are_bounded_by_the_budgets():
    rng = random.Random(SEED + 4)
    arrays = [(f"x.ints{i}", ValueType.ARRAY, (ValueType.INT16, [rng.randint(-30000, 30000) for _ in range(1000)]))
              for i in range(200)]
    # One astral character makes Python store every character of a string in 4 bytes.
    strings = [(f"x.text{i}", ValueType.STRING, "🦙" + "a" * (1024 * 1024 - 4)) for i in range(24)]
    peak, info = _peak_parse_bytes(raw_gguf_header(minimal_metadata() + arrays + strings))
    assert isinstance(info, ModelInfo)
    assert peak < MEMORY_LIMIT_BYTES, peak
    assert isinstance(info.metadata["x.ints199"], ArraySummary) and isinstance(info.metadata["x.text23"], StringSummary)
    assert isinstance(info.metadata["x.ints0"], tuple) and isinstance(info.metadata["x.text0"], str)


def test_the_most_tensors_allowed_stay_small():
    # Tracing 100,000 tensors is slow; 10,000 measure the cost per tensor, which grows linearly.
    tensors = [(f"blk.{i % 2}.t{i}", (32,), 0, i * 128) for i in range(10_000)]
    peak, info = _peak_parse_bytes(raw_gguf_header(minimal_metadata(), tensors))
    assert isinstance(info, ModelInfo) and len(info.tensors) == 10_000
    assert peak * (MAX_TENSORS // 10_000) < MEMORY_LIMIT_BYTES, peak
    _, refused = _peak_parse_bytes(raw_gguf_header(minimal_metadata(), tensors, n_tensors=MAX_TENSORS + 1))
    assert isinstance(refused, GGUFError) and f"outside 0..{MAX_TENSORS}" in str(refused)
