"""core.gguf.reader: the real SmolLM2 header, tiny written models, and every way a header can be wrong."""
from __future__ import annotations

import dataclasses
import os
import pickle
import sys
from pathlib import Path

import gguf
import pytest

from core.gguf.reader import (
    ArraySummary, GGUFError, GGUFHeaderIncomplete, StringSummary, parse_model_info, read_model_info,
)
from tests.fixtures.tiny_gguf import (
    DEFAULT_CHAT_TEMPLATE, ValueType, minimal_metadata, packed_tensors, raw_gguf_header, write_tiny_model,
)

T = gguf.GGMLQuantizationType
U32, STRING, ARRAY = ValueType.UINT32, ValueType.STRING, ValueType.ARRAY


@pytest.fixture(scope="module")
def smollm2_info(smollm2):
    return read_model_info(smollm2)


@pytest.fixture
def tiny(tmp_path) -> Path:
    return write_tiny_model(tmp_path / "tiny.gguf")


def two_layer_tensors(ggml_type=T.F32):
    return packed_tensors([("token_embd.weight", (64, 100), ggml_type), ("blk.0.attn_q.weight", (64, 64), ggml_type),
                           ("blk.1.attn_q.weight", (64, 64), ggml_type), ("output_norm.weight", (64,), T.F32)])


# --- the real model -----------------------------------------------------------------------------------

def test_smollm2_header_facts(smollm2_info, smollm2):
    info = smollm2_info
    assert info.source == str(smollm2)
    assert info.file_size == smollm2.stat().st_size
    assert info.gguf_version == 3
    assert info.architecture == "llama"
    assert info.n_layers == 30
    assert info.context_length == 8192
    assert info.embedding_length == 576
    assert info.head_count == 9 and info.head_count_kv == 3
    assert info.key_length == info.value_length == 64
    assert info.feed_forward_length == 1536
    assert info.quantization == "Q4_1" and info.file_type == gguf.LlamaFileType.MOSTLY_Q4_1
    assert 130e6 < info.parameter_count < 140e6
    assert info.vocab_size == 49152
    assert "<|im_start|>" in info.chat_template
    assert info.sliding_window is None and info.expert_count is None and info.expert_used_count is None
    assert info.arch_value("rope.freq_base") == 100000.0
    assert info.arch_value("no.such.key", "fallback") == "fallback"


def test_smollm2_weights_fill_the_file_after_the_header(smollm2_info):
    info = smollm2_info
    after_header = info.file_size - info.tensor_data_offset
    assert 0 <= after_header - info.weights_bytes() < info.alignment
    assert info.tensor_data_offset % info.alignment == 0
    assert len(info.tensors) == 272


def test_smollm2_per_layer_views(smollm2_info):
    info = smollm2_info
    per_layer = info.layer_weights_bytes()
    assert len(per_layer) == 30 and len(set(per_layer)) == 1
    outside_blocks = sum(t.n_bytes for t in info.tensors if t.layer is None)
    assert sum(per_layer) + outside_blocks == info.weights_bytes()
    assert info.head_count_kv_per_layer() == [3] * 30
    assert info.head_count_per_layer() == [9] * 30
    embedding = next(t for t in info.tensors if t.name == "token_embd.weight")
    assert embedding.shape == (576, 49152) and embedding.type_name == "Q8_0" and embedding.layer is None
    assert embedding.n_bytes == 576 * 49152 // 32 * 34
    assert next(t for t in info.tensors if t.name == "blk.7.ffn_down.weight").layer == 7


def test_smollm2_long_arrays_are_summarised_not_kept(smollm2_info):
    metadata = smollm2_info.metadata
    assert metadata["tokenizer.ggml.tokens"] == ArraySummary("string", 49152)
    assert metadata["tokenizer.ggml.merges"] == ArraySummary("string", 48900)
    assert metadata["tokenizer.ggml.token_type"] == ArraySummary("int32", 49152)
    assert all(not isinstance(value, tuple) or len(value) <= 64 for value in metadata.values())
    with pytest.raises(TypeError):
        metadata["general.name"] = "changed"  # type: ignore[index]


def test_model_info_and_errors_survive_pickling(smollm2_info):
    # ModelInfo travels to worker processes; errors come back from them.
    assert pickle.loads(pickle.dumps(smollm2_info)) == smollm2_info
    assert hash(pickle.loads(pickle.dumps(smollm2_info))) == hash(smollm2_info)   # usable as a cache key
    incomplete = pickle.loads(pickle.dumps(GGUFHeaderIncomplete("need more", needed_bytes=123)))
    assert (str(incomplete), incomplete.needed_bytes) == ("need more", 123)


def test_parsing_header_bytes_matches_reading_the_file(smollm2_info, smollm2):
    with open(smollm2, "rb") as file:
        header = file.read(smollm2_info.tensor_data_offset)
    parsed = parse_model_info(header, file_size=smollm2_info.file_size, source=str(smollm2))
    assert parsed == smollm2_info


def test_a_sparse_header_only_stub_reads_like_the_model(smollm2_info, smollm2, tmp_path):
    # What a remote file's cached header looks like on disk: the header, then a hole up to the real size.
    stub = tmp_path / "stub.gguf"
    with open(smollm2, "rb") as source, open(stub, "wb") as target:
        target.write(source.read(smollm2_info.tensor_data_offset))
        target.truncate(smollm2_info.file_size)
    assert read_model_info(stub).tensors == smollm2_info.tensors


@pytest.mark.skipif(sys.platform == "win32", reason="NTFS allocates an extended file unless marked sparse")
def test_a_huge_sparse_file_is_read_by_its_header_only(tiny, tmp_path):
    huge = tmp_path / "huge.gguf"
    huge.write_bytes(tiny.read_bytes())
    with open(huge, "r+b") as file:
        file.truncate(64 * 1024 ** 3)     # 64 GiB of holes: reading them all would never finish in time
    info = read_model_info(huge)
    assert info.file_size == 64 * 1024 ** 3 and info.n_layers == 2


# --- incomplete header bytes (remote range reads) -------------------------------------------------------

def test_every_prefix_of_a_tiny_header_asks_for_more_but_never_too_much(tiny):
    data = tiny.read_bytes()
    header_size = read_model_info(tiny).tensor_data_offset
    complete_from = None
    for n in range(header_size + 1):
        try:
            parse_model_info(data[:n])
        except GGUFHeaderIncomplete as incomplete:
            assert complete_from is None and n < incomplete.needed_bytes <= header_size, n
        else:
            complete_from = n if complete_from is None else complete_from
    # Only the padding before the tensor data may be missing from a complete header.
    assert header_size - complete_from < read_model_info(tiny).alignment


def test_growing_by_needed_bytes_reaches_the_full_header(tiny):
    data = tiny.read_bytes()
    size, rounds = 0, 0
    while True:
        try:
            info = parse_model_info(data[:size], file_size=len(data))
            break
        except GGUFHeaderIncomplete as incomplete:
            assert incomplete.needed_bytes > size
            size, rounds = incomplete.needed_bytes, rounds + 1
    assert info == dataclasses.replace(read_model_info(tiny), source="<bytes>")
    assert rounds > 10   # one field at a time: a lower bound, callers grow geometrically


@pytest.mark.parametrize("n_bytes", [0, 3, 4, 8, 24, 100, 5_000, 1_000_000, 1_785_000])
def test_smollm2_prefixes_are_incomplete(smollm2, n_bytes):
    with open(smollm2, "rb") as file:
        prefix = file.read(n_bytes)
    with pytest.raises(GGUFHeaderIncomplete) as caught:
        parse_model_info(prefix, source="HuggingFaceTB/SmolLM2.gguf")
    assert caught.value.needed_bytes > n_bytes
    assert "HuggingFaceTB/SmolLM2.gguf" in str(caught.value)


def test_smollm2_grows_geometrically_in_a_few_rounds(smollm2, smollm2_info):
    with open(smollm2, "rb") as file:
        data = file.read(4 * 1024 * 1024)
    size, rounds = 16 * 1024, 0
    while True:
        try:
            info = parse_model_info(data[:size], file_size=smollm2_info.file_size)
            break
        except GGUFHeaderIncomplete as incomplete:
            size, rounds = max(incomplete.needed_bytes, 2 * size), rounds + 1
    assert info.tensors == smollm2_info.tensors and rounds <= 8


# --- tiny models round-trip ------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    {},
    {"n_layers": 5, "n_embd": 128, "n_ff": 256, "n_head": 8, "n_head_kv": 2, "context_length": 2048},
    {"architecture": "qwen2", "tensor_type": "f16"},
    {"architecture": "qwen3", "tensor_type": "q8_0", "n_head_kv": 1},
    {"chat_template": None},
])
def test_tiny_models_round_trip(tmp_path, options):
    path = write_tiny_model(tmp_path / "m.gguf", **options)
    info = read_model_info(path)
    expected = {"architecture": "llama", "n_layers": 2, "n_embd": 64, "n_ff": 128, "n_head": 4, "n_head_kv": 4,
                "context_length": 512, "chat_template": DEFAULT_CHAT_TEMPLATE, "tensor_type": "f32", **options}
    assert info.architecture == expected["architecture"]
    assert info.n_layers == expected["n_layers"]
    assert info.embedding_length == expected["n_embd"]
    assert info.feed_forward_length == expected["n_ff"]
    assert info.head_count == expected["n_head"] and info.head_count_kv == expected["n_head_kv"]
    assert info.key_length == expected["n_embd"] // expected["n_head"]
    assert info.context_length == expected["context_length"]
    assert info.chat_template == expected["chat_template"]
    assert info.quantization == expected["tensor_type"].upper()
    assert info.vocab_size == len(info.metadata["tokenizer.ggml.tokens"]) == 267
    assert 0 <= info.file_size - info.tensor_data_offset - info.weights_bytes() < info.alignment * len(info.tensors)
    assert len(info.layer_weights_bytes()) == expected["n_layers"]


def test_tiny_model_agrees_with_the_gguf_package(tmp_path):
    path = write_tiny_model(tmp_path / "m.gguf", tensor_type="q8_0", n_layers=3)
    info = read_model_info(path)
    reader = gguf.GGUFReader(path)
    assert [t.name for t in info.tensors] == [t.name for t in reader.tensors]
    for ours, theirs in zip(info.tensors, reader.tensors):
        assert ours.shape == tuple(int(d) for d in theirs.shape)
        assert ours.ggml_type == theirs.tensor_type
        assert ours.n_bytes == theirs.n_bytes
        assert ours.n_elements == theirs.n_elements
        assert info.tensor_data_offset + ours.offset == theirs.data_offset
    assert info.parameter_count == sum(int(t.n_elements) for t in reader.tensors)
    for key in ("llama.block_count", "llama.context_length", "general.file_type", "tokenizer.ggml.bos_token_id"):
        assert info.metadata[key] == reader.fields[key].contents()


# --- files that are not (whole) GGUF models -------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(GGUFError, match="^No such file: .*nothing.gguf"):
        read_model_info(tmp_path / "nothing.gguf")


def test_directory(tmp_path):
    with pytest.raises(GGUFError, match="is a directory"):
        read_model_info(tmp_path)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs a character device")
def test_device_file_is_refused_without_reading_it():
    with pytest.raises(GGUFError, match="not a regular file"):
        read_model_info("/dev/zero")


def test_text_file(tmp_path):
    text = tmp_path / "notes.gguf"
    text.write_text("hello, this is not a model\n")
    with pytest.raises(GGUFError, match=r"is not a GGUF model file \(it does not begin with the GGUF signature\)"):
        read_model_info(text)


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(GGUFError, match="is empty"):
        read_model_info(empty)


def test_big_endian_file_is_refused_clearly(tmp_path):
    path = tmp_path / "big.gguf"
    writer = gguf.GGUFWriter(path, "llama", endianess=gguf.GGUFEndian.BIG)
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    with pytest.raises(GGUFError, match="big-endian"):
        read_model_info(path)


@pytest.mark.parametrize("where", ["magic", "mid-metadata", "mid-tensor-table", "end-of-header", "mid-data",
                                   "last-byte"])
def test_truncated_file(smollm2, smollm2_info, tmp_path, where):
    offset = smollm2_info.tensor_data_offset
    cut = {"magic": 2, "mid-metadata": 900, "mid-tensor-table": offset - 5_000, "end-of-header": offset,
           "mid-data": offset + 40_000_000, "last-byte": smollm2_info.file_size - 1}[where]
    truncated = tmp_path / "cut.gguf"
    with open(smollm2, "rb") as source:
        truncated.write_bytes(source.read(cut))
    with pytest.raises(GGUFError, match="truncated") as caught:
        read_model_info(truncated)
    message = str(caught.value)
    assert str(truncated) in message and f"only {cut} bytes" in message
    if where in ("end-of-header", "mid-data", "last-byte"):
        assert "tensor 'output_norm.weight' ends at byte" in message


# --- malformed headers ----------------------------------------------------------------------------------

def header(metadata=None, tensors=None, **options) -> bytes:
    return raw_gguf_header(minimal_metadata() if metadata is None else metadata,
                           two_layer_tensors() if tensors is None else tensors, **options)


def replaced(key: str, value_type: int, value) -> list:
    return [(k, value_type, value) if k == key else (k, t, v) for k, t, v in minimal_metadata()]


def without(key: str) -> list:
    return [entry for entry in minimal_metadata() if entry[0] != key]


METADATA_END = len(raw_gguf_header(minimal_metadata(), alignment=1))

MALFORMED = {
    "version 1": (header(version=1), "version 1"),
    "version 4": (header(version=4), "version 4; this reader supports versions 2 and 3"),
    "version 0": (header(version=0), "version 0"),
    "big-endian": (header(version=3 << 24), "big-endian"),
    "negative tensor count": (header(n_tensors=-1), "tensor count at byte 8 is -1"),
    "absurd tensor count": (header(n_tensors=1 << 40), "tensor count at byte 8 is 1099511627776, outside"),
    "absurd key count": (header(n_kv=1 << 62), "metadata key count at byte 16"),
    "more keys than written": (header(n_kv=7), "name of tensor #0 at byte"),
    "empty key": (header(minimal_metadata() + [("", U32, 1)]), f"metadata key #6 at byte {METADATA_END} is empty"),
    "duplicate key": (header(minimal_metadata() + [("llama.block_count", U32, 3)]), "'llama.block_count' at byte"),
    "nested array": (header(minimal_metadata() + [("x", ARRAY, (ARRAY, [(U32, [1])]))]), "array of arrays"),
    "unknown array type": (header(minimal_metadata() + [("x", ARRAY, (77, []))]), "unknown element type 77"),
    "bad alignment": (header(minimal_metadata() + [("general.alignment", U32, 48)]), "power of two"),
    "zero alignment": (header(minimal_metadata() + [("general.alignment", U32, 0)]), "power of two"),
    "no architecture": (header(without("general.architecture")), "'general.architecture' is missing"),
    "architecture not a string": (header(replaced("general.architecture", U32, 5)), "non-empty string"),
    "no block count": (header(without("llama.block_count")), "'llama.block_count' is missing"),
    "string block count": (header(replaced("llama.block_count", STRING, "2")), "must be an integer, not str"),
    "zero blocks": (header(replaced("llama.block_count", U32, 0)), "'llama.block_count' is 0, outside 1..512"),
    "too many blocks": (header(replaced("llama.block_count", U32, 100_000)), "outside 1..512"),
    "no context length": (header(without("llama.context_length")), "'llama.context_length' is missing"),
    "per-layer array too short": (header(replaced("llama.attention.head_count_kv", ARRAY, (U32, [1, 2, 3]))),
                                  "has 3 per-layer values but the model has 2 layers"),
    "per-layer float": (header(replaced("llama.attention.head_count", ARRAY, (ValueType.FLOAT32, [1.0, 2.0]))),
                        "must be an integer, not float"),
    "unknown ggml type": (header(tensors=[("blk.0.weird", (64,), 99, 0)]),
                          f"tensor 'blk.0.weird' (#0, at byte {METADATA_END}) has unknown ggml type 99"),
    "too many dimensions": (header(tensors=[("t", (1, 1, 1, 1, 1), 0, 0)]), "5 dimensions; ggml allows at most 4"),
    "negative dimension": (header(tensors=[("t", (64, -3), 0, 0)]), "negative size -3 in dimension 1"),
    "overflowing shape": (header(tensors=[("t", (1 << 40, 1 << 40), 0, 0)]), "more than 2^63 elements"),
    "row not whole blocks": (header(tensors=[("t", (33, 2), int(T.Q4_0), 0)]), "not a multiple of its block size 32"),
    "long tensor name": (header(tensors=[("x" * 64, (4,), 0, 0)]), "claims 64 bytes, more than the limit of 63"),
    "duplicate tensor": (header(tensors=[("t", (8,), 0, 0), ("t", (8,), 0, 32)]), "tensor name 't' appears twice"),
    "misaligned offset": (header(tensors=[("a", (4,), 0, 0), ("b", (4,), 0, 16)]),
                          "tensor 'b' has data offset 16, but it must be 32"),
    "offset past the others": (header(tensors=[("a", (4,), 0, 1 << 60)]), "has data offset 1152921504606846976"),
    "tensor in a missing block": (header(tensors=[("blk.2.attn_q.weight", (4,), 0, 0)]),
                                  "'blk.2.attn_q.weight' belongs to block 2 but the model declares only 2 blocks"),
    "absurd string length": (header([("general.architecture", STRING, "llama"), ("x" * 3, STRING, "y")])
                             .replace(b"\x01\x00\x00\x00\x00\x00\x00\x00y", b"\xff" * 8 + b"y"), "claims"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_header_is_named(case):
    data, expected = MALFORMED[case]
    with pytest.raises(GGUFError) as caught:
        parse_model_info(data, source="bad.gguf")
    assert not isinstance(caught.value, GGUFHeaderIncomplete), str(caught.value)
    assert expected in str(caught.value)
    assert str(caught.value).startswith("bad.gguf")


def test_unknown_value_type_is_named():
    data = header(minimal_metadata() + [("x", U32, 1)])
    tag_at = data.index(b"\x01\x00\x00\x00\x00\x00\x00\x00x") + 9
    broken = data[:tag_at] + (13).to_bytes(4, "little") + data[tag_at + 4:]
    with pytest.raises(GGUFError, match=f"key 'x' has unknown value type 13 at byte {tag_at}"):
        parse_model_info(broken)


def test_absurd_array_length_without_a_file_size_is_refused_not_awaited():
    data = header(minimal_metadata() + [("x", ARRAY, (U32, [1]))])
    length_at = data.index(b"\x01\x00\x00\x00\x00\x00\x00\x00x") + 9 + 8
    broken = data[:length_at] + (1 << 29).to_bytes(8, "little") + data[length_at + 8:]
    with pytest.raises(GGUFError, match="past the 32 MiB limit") as caught:
        parse_model_info(broken)
    assert not isinstance(caught.value, GGUFHeaderIncomplete)


def test_tensor_past_the_end_of_a_known_file_size():
    data = header()
    with pytest.raises(GGUFError, match=r"truncated: tensor 'output_norm.weight' ends at byte \d+ but the file "
                                        r"has only 5000 bytes"):
        parse_model_info(data, file_size=5000)
    with pytest.raises(GGUFError, match="given for a file of only"):
        parse_model_info(data, file_size=10)


# --- metadata details -----------------------------------------------------------------------------------

def test_split_models_are_read_from_their_first_part():
    first = minimal_metadata() + [("split.no", ValueType.UINT16, 0), ("split.count", ValueType.UINT16, 3)]
    assert parse_model_info(header(first)).split_count == 3
    assert parse_model_info(header()).split_count == 1
    second = [("split.no", ValueType.UINT16, 1), ("split.count", ValueType.UINT16, 3)]
    with pytest.raises(GGUFError, match="is part 2 of 3 of a split model; open its first part"):
        parse_model_info(header(second))


def test_version_2_headers_are_read():
    assert parse_model_info(header(version=2)).gguf_version == 2


def test_per_layer_head_counts_are_kept():
    metadata = replaced("llama.attention.head_count_kv", ARRAY, (ValueType.INT32, [4, 0]))
    info = parse_model_info(header(metadata))
    assert info.head_count_kv == (4, 0)
    assert info.head_count_kv_per_layer() == [4, 0] and info.head_count_per_layer() == [4, 4]


def test_head_count_kv_defaults_to_head_count():
    info = parse_model_info(header(without("llama.attention.head_count_kv")))
    assert info.head_count_kv == 4


def test_explicit_key_and_value_lengths_win():
    metadata = minimal_metadata() + [("llama.attention.key_length", U32, 128),
                                     ("llama.attention.value_length", U32, 96)]
    info = parse_model_info(header(metadata))
    assert (info.key_length, info.value_length) == (128, 96)
    assert parse_model_info(header()).key_length == 16


def test_quantization_falls_back_to_the_dominant_tensor_type():
    assert parse_model_info(header(tensors=two_layer_tensors(T.Q8_0))).quantization == "Q8_0"
    unknown_file_type = minimal_metadata() + [("general.file_type", U32, 999)]
    assert parse_model_info(header(unknown_file_type)).quantization == "F32"
    medium = minimal_metadata() + [("general.file_type", U32, int(gguf.LlamaFileType.MOSTLY_Q4_K_M))]
    assert parse_model_info(header(medium)).quantization == "Q4_K_M"


def test_vocab_size_falls_back_to_the_embedding_tensor():
    assert parse_model_info(header()).vocab_size == 100
    declared = minimal_metadata() + [("llama.vocab_size", U32, 123)]
    assert parse_model_info(header(declared)).vocab_size == 123


def test_moe_and_sliding_window_fields():
    metadata = minimal_metadata() + [("llama.expert_count", U32, 8), ("llama.expert_used_count", ARRAY, (U32, [2, 4])),
                                     ("llama.attention.sliding_window", U32, 4096)]
    info = parse_model_info(header(metadata))
    assert (info.expert_count, info.expert_used_count, info.sliding_window) == (8, 4, 4096)


def test_a_huge_string_value_is_summarised_and_the_template_ignored():
    template = "x" * (2 * 1024 * 1024)
    info = parse_model_info(header(minimal_metadata() + [("tokenizer.chat_template", STRING, template)]))
    assert info.metadata["tokenizer.chat_template"] == StringSummary(len(template))
    assert info.chat_template is None


def test_short_arrays_are_kept_as_tuples():
    metadata = minimal_metadata() + [("general.tags", ARRAY, (STRING, ["a", "b"])),
                                     ("x.floats", ARRAY, (ValueType.FLOAT32, [0.5, 1.5]))]
    info = parse_model_info(header(metadata))
    assert info.metadata["general.tags"] == ("a", "b") and info.metadata["x.floats"] == (0.5, 1.5)


def test_invalid_utf8_is_replaced_not_fatal():
    metadata = minimal_metadata() + [("general.name", STRING, b"caf\xe9")]
    assert parse_model_info(header(metadata)).name == "caf\ufffd"
