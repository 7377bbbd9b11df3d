"""Read a GGUF model's header — from a local file or the first bytes of a remote one — into a ModelInfo.

The reader is strict: every count, length and offset is checked against caps and against the bytes that
are there, so a damaged or hostile file gives a GGUFError with a sentence naming what is wrong, never a
crash, a hang or a huge allocation. It reads only the header (metadata and tensor table), never the
weights. Format: ggml/src/gguf.cpp in llama.cpp (versions 2 and 3, little-endian).
"""
from __future__ import annotations

import logging
import os
import re
import stat
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import gguf as gguf_constants

log = logging.getLogger(__name__)

__all__ = [
    "ArraySummary", "GGUFError", "GGUFHeaderIncomplete", "Metadata", "ModelInfo", "StringSummary", "TensorInfo",
    "parse_model_info", "read_model_info",
]

MiB = 1024 * 1024

# Caps far above real files (< 100 keys, < 20k tensors) that keep a hostile header's memory bounded.
MAX_KEYS = 100_000
MAX_TENSORS = 100_000
MAX_KEY_BYTES = 65_535              # the GGUF specification's limit
MAX_STRING_BYTES = 16 * MiB
MAX_TENSOR_NAME_BYTES = 63          # llama.cpp's GGML_MAX_NAME is 64 including the terminating NUL
MAX_DIMS = 4                        # GGML_MAX_DIMS
MAX_ARRAY_ITEMS = 1 << 30           # llama.cpp's GGUF_MAX_ARRAY_ELEMENTS
MAX_LAYERS = 512                    # llama.cpp's LLAMA_MAX_LAYERS
MAX_HEADER_BYTES = 32 * MiB         # far above any real header (a 262k-token vocabulary takes ~6 MiB)
INT64_MAX = (1 << 63) - 1

KEPT_ARRAY_ITEMS = 64               # longer arrays (token lists, merges, scores) are only summarised ...
KEPT_NUMERIC_ARRAY_ITEMS = 1024     # ... except short numeric ones: per-layer values (head_count_kv, ...)
DECODED_STRING_BYTES = 1 * MiB      # longer string values are summarised rather than decoded
# Totals over one header, so that many small arrays or strings cannot add up to a large allocation.
KEPT_ITEMS_BUDGET = 65_536
DECODED_BYTES_BUDGET = 4 * MiB

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
FIRST_READ_BYTES = 1 * MiB

_LAYER_NAME = re.compile(r"blk\.(\d+)\.")

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
# A tensor-table entry after its name: n_dims (u32), then per n_dims: ne[] (i64 each), type (u32), offset (u64).
_TENSOR_TAILS = [struct.Struct(f"<{n}qIQ") for n in range(5)]

_T_STRING = int(gguf_constants.GGUFValueType.STRING)
_T_ARRAY = int(gguf_constants.GGUFValueType.ARRAY)
_SCALAR_FORMATS: dict[int, str] = {
    int(gguf_constants.GGUFValueType.UINT8): "B",
    int(gguf_constants.GGUFValueType.INT8): "b",
    int(gguf_constants.GGUFValueType.UINT16): "H",
    int(gguf_constants.GGUFValueType.INT16): "h",
    int(gguf_constants.GGUFValueType.UINT32): "I",
    int(gguf_constants.GGUFValueType.INT32): "i",
    int(gguf_constants.GGUFValueType.FLOAT32): "f",
    int(gguf_constants.GGUFValueType.BOOL): "?",
    int(gguf_constants.GGUFValueType.UINT64): "Q",
    int(gguf_constants.GGUFValueType.INT64): "q",
    int(gguf_constants.GGUFValueType.FLOAT64): "d",
}
_SCALAR_STRUCTS = {code: struct.Struct("<" + fmt) for code, fmt in _SCALAR_FORMATS.items()}
_VALUE_TYPE_NAMES = {int(t): t.name.lower() for t in gguf_constants.GGUFValueType}


# --- errors ----------------------------------------------------------------------------------------

class GGUFError(ValueError):
    """A GGUF file (or header) cannot be read; str() is a sentence naming what is wrong and where."""


class GGUFHeaderIncomplete(GGUFError):
    """parse_model_info was given fewer bytes than the header needs; read at least needed_bytes next."""

    def __init__(self, message: str, needed_bytes: int):
        super().__init__(message)
        self.needed_bytes = needed_bytes

    def __reduce__(self):
        return type(self), (str(self), self.needed_bytes)


# --- values ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ArraySummary:
    """Stands in for a long metadata array (a vocabulary, merges, scores) so it does not fill memory."""
    type_name: str      # element type: "string", "float32", ...
    length: int

    def __len__(self) -> int:
        return self.length


@dataclass(frozen=True, slots=True)
class StringSummary:
    """Stands in for a metadata string longer than DECODED_STRING_BYTES."""
    n_bytes: int


class Metadata(Mapping[str, Any]):
    """A header's key/values, read-only (and, unlike a mappingproxy, picklable)."""
    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Metadata({self._values!r})"

    def __eq__(self, other: object) -> bool:
        return dict(self.items()) == dict(other.items()) if isinstance(other, Mapping) else NotImplemented

    def __hash__(self) -> int:  # every value is a str, number, tuple or summary: ModelInfo can be a cache key
        return hash(frozenset(self._values.items()))


@dataclass(frozen=True, slots=True)
class GGMLType:
    code: int
    name: str           # "Q4_K", "F16", ...
    block_size: int     # elements per block
    type_size: int      # bytes per block


def _known_ggml_types() -> dict[int, GGMLType]:
    known = {
        int(t): GGMLType(int(t), t.name, block, size)
        for t, (block, size) in gguf_constants.GGML_QUANT_SIZES.items()
    }
    # Types the vendored llama.cpp reads that the gguf package does not list yet (ggml/src/ggml-common.h).
    known.setdefault(42, GGMLType(42, "Q2_0", 64, 18))
    return known


GGML_TYPES: Mapping[int, GGMLType] = MappingProxyType(_known_ggml_types())


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    ggml_type: int          # GGMLQuantizationType value
    type_name: str          # "Q4_K", "F16", ...
    shape: tuple[int, ...]  # ggml order: ne[0], ne[1], ...
    offset: int             # relative to the start of the tensor data
    n_bytes: int            # exact bytes of the data
    n_elements: int = field(init=False)
    layer: int | None = field(init=False)   # N for tensors named "blk.N.*" (a repeating block), else None

    def __post_init__(self) -> None:
        count = 1
        for dim in self.shape:
            count *= dim
        match = _LAYER_NAME.match(self.name)
        object.__setattr__(self, "n_elements", count)
        object.__setattr__(self, "layer", int(match.group(1)) if match else None)


@dataclass(frozen=True)
class ModelInfo:
    source: str                     # path or label ("repo/file.gguf")
    file_size: int | None           # real file size, None if unknown
    gguf_version: int
    alignment: int
    tensor_data_offset: int         # absolute offset of the tensor data (header size incl. padding)
    architecture: str
    name: str | None
    file_type: int | None
    quantization: str               # "Q4_1", "Q4_K_M", ... (from file_type, else the dominant tensor type)
    parameter_count: int
    n_layers: int
    context_length: int             # trained context
    embedding_length: int
    feed_forward_length: int | tuple[int, ...] | None
    head_count: int | tuple[int, ...]
    head_count_kv: int | tuple[int, ...]
    key_length: int
    value_length: int
    vocab_size: int
    chat_template: str | None
    sliding_window: int | None
    expert_count: int | None
    expert_used_count: int | None   # the largest per-layer value when stored per layer
    metadata: Mapping[str, object]  # every key; long arrays as ArraySummary, huge strings as StringSummary
    tensors: tuple[TensorInfo, ...]
    split_count: int = 1            # files the model is split into; tensors then lists only this first file's

    def arch_value(self, suffix: str, default=None):
        """metadata["{architecture}.{suffix}"], e.g. arch_value("rope.freq_base")."""
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    def weights_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    def layer_weights_bytes(self) -> list[int]:
        """Weight bytes of each block ("blk.N.*"); tensors outside the blocks are not counted."""
        per_layer = [0] * self.n_layers
        for tensor in self.tensors:
            if tensor.layer is not None:
                per_layer[tensor.layer] += tensor.n_bytes
        return per_layer

    def head_count_per_layer(self) -> list[int]:
        return _per_layer(self.head_count, self.n_layers)

    def head_count_kv_per_layer(self) -> list[int]:
        return _per_layer(self.head_count_kv, self.n_layers)


def _per_layer(value: int | tuple[int, ...], n_layers: int) -> list[int]:
    return list(value) if isinstance(value, tuple) else [value] * n_layers


# --- public entry points ---------------------------------------------------------------------------

def read_model_info(path: str | os.PathLike) -> ModelInfo:
    """Read a local GGUF file's header, in growing chunks (never the whole file)."""
    path_text = os.fspath(path)
    file_size = _regular_file_size(path_text)
    try:
        with open(path_text, "rb") as file:
            reader = _GrowingRead(file, file_size, path_text)
            return _parse(reader.buffer, file_size, path_text, read_more=reader.read_to)
    except OSError as error:
        raise GGUFError(f"Cannot read {path_text}: {error.strerror or error}") from error


def parse_model_info(header: bytes, *, file_size: int | None = None, source: str = "<bytes>") -> ModelInfo:
    """Parse the first bytes of a GGUF file (all of it or a prefix, e.g. from an HTTP range read).

    Raises GGUFHeaderIncomplete when the header goes on past the bytes given; its needed_bytes is a lower
    bound for the next read (grow the range geometrically: the bound is often just the next field).
    """
    if file_size is not None and len(header) > file_size:
        raise GGUFError(f"{source}: {len(header)} header bytes were given for a file of only {file_size} bytes")
    return _parse(header, file_size, source)


def _parse(data, file_size: int | None, source: str, read_more=None) -> ModelInfo:
    started = time.perf_counter()
    parsed = _HeaderParser(data, file_size, source, read_more).parse()
    info = _model_info(parsed, file_size, source)
    log.debug("parsed GGUF header of %s (%d bytes, %d tensors) in %.1f ms", source,
              parsed.tensor_data_offset, len(parsed.tensors), (time.perf_counter() - started) * 1000)
    return info


def _regular_file_size(path: str) -> int:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise GGUFError(f"No such file: {path}") from None
    except OSError as error:
        raise GGUFError(f"Cannot read {path}: {error.strerror or error}") from error
    if stat.S_ISDIR(status.st_mode):
        raise GGUFError(f"{path} is a directory, not a GGUF file")
    if not stat.S_ISREG(status.st_mode):
        raise GGUFError(f"{path} is not a regular file, so it cannot be a GGUF model")
    return status.st_size


class _GrowingRead:
    """The start of a local file, read on demand in doubling chunks while the parser asks for more."""

    def __init__(self, file, file_size: int, source: str):
        self.buffer = bytearray()
        self._file = file
        self._file_size = file_size
        self._source = source

    def read_to(self, end: int) -> bytearray:
        """Grow the buffer to at least `end` bytes (the parser has checked that the file is that long)."""
        want = min(self._file_size, max(end, 2 * len(self.buffer), FIRST_READ_BYTES))
        while len(self.buffer) < want:
            chunk = self._file.read(want - len(self.buffer))
            if not chunk:
                raise GGUFError(f"{self._source} is truncated: it ended at byte {len(self.buffer)} while its "
                                "header was being read (is it being written or shrunk?)")
            self.buffer += chunk
        return self.buffer


# --- the byte-level parser ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _ParsedHeader:
    version: int
    alignment: int
    tensor_data_offset: int
    metadata: dict[str, object]
    tensors: tuple[TensorInfo, ...]


class _HeaderParser:
    """Walks the header bytes once; every read is bounds-checked before anything is allocated."""

    def __init__(self, data: bytes | bytearray, file_size: int | None, source: str, read_more=None):
        self._data = data
        self._available = len(data)
        self._file_size = file_size
        self._source = source
        self._read_more = read_more     # (end) -> the data grown to at least `end` bytes; None for fixed bytes
        self._pos = 0
        self._kept_items_left = KEPT_ITEMS_BUDGET
        self._decoded_bytes_left = DECODED_BYTES_BUDGET

    def parse(self) -> _ParsedHeader:
        self._read_magic()
        version = self._read_version()
        n_tensors = self._read_count("tensor count", MAX_TENSORS)
        n_keys = self._read_count("metadata key count", MAX_KEYS)
        metadata = self._read_metadata(n_keys)
        alignment = self._alignment(metadata)
        tensors = [self._read_tensor_info(i) for i in range(n_tensors)]
        data_offset = _aligned(self._pos, alignment) if tensors else self._pos
        self._check_tensor_layout(tensors, data_offset, alignment)
        return _ParsedHeader(version, alignment, data_offset, metadata, tuple(tensors))

    # -- errors

    def _invalid(self, detail: str) -> GGUFError:
        return GGUFError(f"{self._source} is not a valid GGUF file: {detail}")

    def _require(self, n_bytes: int, what: str | Callable[[], str]) -> None:
        """Make sure n_bytes from the current position are present (or say why they cannot be).

        `what` names the field for the error; it may be a function, so hot loops format nothing.
        """
        end = self._pos + n_bytes
        if end <= self._available:
            return
        what = what() if callable(what) else what
        if self._file_size is not None and end > self._file_size:
            raise GGUFError(f"{self._source} is truncated: {what} at byte {self._pos} needs {n_bytes} bytes "
                            f"but the file has only {self._file_size} bytes")
        if end > MAX_HEADER_BYTES:
            raise self._invalid(f"{what} at byte {self._pos} would need {n_bytes} bytes, which takes the "
                                f"header past the {MAX_HEADER_BYTES // MiB} MiB limit")
        if self._read_more is not None:
            self._data = self._read_more(end)
            self._available = len(self._data)
            return
        raise GGUFHeaderIncomplete(
            f"{self._source}: the GGUF header goes on past the {self._available} bytes given "
            f"({what} at byte {self._pos} needs {n_bytes} bytes)", needed_bytes=end)

    # -- primitives

    def _u32(self, what: str | Callable[[], str]) -> int:
        self._require(4, what)
        (value,) = _U32.unpack_from(self._data, self._pos)
        self._pos += 4
        return value

    def _u64(self, what: str) -> int:
        self._require(8, what)
        (value,) = _U64.unpack_from(self._data, self._pos)
        self._pos += 8
        return value

    def _i64(self, what: str) -> int:
        self._require(8, what)
        (value,) = _I64.unpack_from(self._data, self._pos)
        self._pos += 8
        return value

    def _string_span(self, what: str, limit: int = MAX_STRING_BYTES) -> tuple[int, int]:
        """Step over a length-prefixed string; returns where its bytes start and how many there are."""
        length_at = self._pos
        length = self._u64(f"length of {what}")
        if length > limit:
            raise self._invalid(f"{what} at byte {length_at} claims {length} bytes, more than the limit of {limit}")
        self._require(length, what)
        start = self._pos
        self._pos += length
        return start, length

    def _decode(self, start: int, length: int) -> str:
        return bytes(self._data[start:start + length]).decode("utf-8", errors="replace")

    def _string(self, what: str, limit: int) -> str:
        return self._decode(*self._string_span(what, limit))

    def _keep(self, n_items: int, n_bytes: int = 0) -> bool:
        """Whether a value this large may still be kept whole, charging it to the header's budgets."""
        if n_items > self._kept_items_left or n_bytes > self._decoded_bytes_left:
            return False
        self._kept_items_left -= n_items
        self._decoded_bytes_left -= n_bytes
        return True

    # -- header fields

    def _read_magic(self) -> None:
        if self._file_size == 0:
            raise GGUFError(f"{self._source} is empty, not a GGUF file")
        self._check_magic()       # even a prefix shorter than the magic can be refused at once
        self._require(4, "the GGUF magic")
        self._check_magic()
        self._pos = 4

    def _check_magic(self) -> None:
        head = bytes(self._data[:4])
        if head != GGUF_MAGIC[:len(head)]:
            log.info("%s starts with %r, not the GGUF signature", self._source, bytes(self._data[:8]))
            raise GGUFError(f"{self._source} is not a GGUF model file (it does not begin with the GGUF signature)")

    def _read_version(self) -> int:
        version = self._u32("the format version")
        if version in SUPPORTED_VERSIONS:
            return version
        if version != 0 and version & 0xFFFF == 0:
            raise GGUFError(f"{self._source} looks like a big-endian GGUF file (version field {version:#010x}); "
                            "only little-endian files are supported")
        if version == 1:
            raise GGUFError(f"{self._source} is a GGUF version 1 file, which llama.cpp no longer reads; "
                            "convert it again with a current llama.cpp")
        raise GGUFError(f"{self._source} has GGUF version {version}; this reader supports versions 2 and 3")

    def _read_count(self, what: str, limit: int) -> int:
        start = self._pos
        count = self._i64(what)
        if not 0 <= count <= limit:
            raise self._invalid(f"the {what} at byte {start} is {count}, outside 0..{limit}")
        return count

    # -- metadata

    def _read_metadata(self, n_keys: int) -> dict[str, object]:
        metadata: dict[str, object] = {}
        for index in range(n_keys):
            start = self._pos
            key = self._string(f"metadata key #{index}", MAX_KEY_BYTES)
            if not key:
                raise self._invalid(f"metadata key #{index} at byte {start} is empty")
            if key in metadata:
                raise self._invalid(f"metadata key '{key}' at byte {start} appears twice")
            metadata[key] = self._read_value(key)
        return metadata

    def _read_value(self, key: str) -> object:
        type_at = self._pos
        value_type = self._u32(f"value type of key '{key}'")
        if value_type == _T_ARRAY:
            return self._read_array(key)
        if value_type == _T_STRING:
            return self._read_string_value(key)
        scalar = _SCALAR_STRUCTS.get(value_type)
        if scalar is None:
            raise self._invalid(f"key '{key}' has unknown value type {value_type} at byte {type_at}")
        self._require(scalar.size, f"value of key '{key}'")
        (value,) = scalar.unpack_from(self._data, self._pos)
        self._pos += scalar.size
        return value

    def _read_string_value(self, key: str) -> str | StringSummary:
        start, length = self._string_span(f"string value of key '{key}'")
        if length > DECODED_STRING_BYTES or not self._keep(1, length):
            return StringSummary(length)
        return self._decode(start, length)

    def _read_array(self, key: str) -> tuple | ArraySummary:
        type_at = self._pos
        item_type = self._u32(f"element type of array '{key}'")
        length = self._u64(f"length of array '{key}'")
        if length > MAX_ARRAY_ITEMS:
            raise self._invalid(f"array '{key}' at byte {type_at} claims {length} items, "
                                f"more than the limit of {MAX_ARRAY_ITEMS}")
        if item_type == _T_ARRAY:
            raise self._invalid(f"key '{key}' at byte {type_at} is an array of arrays, which llama.cpp cannot read")
        if item_type == _T_STRING:
            return self._read_string_array(key, length)
        scalar = _SCALAR_STRUCTS.get(item_type)
        if scalar is None:
            raise self._invalid(f"array '{key}' has unknown element type {item_type} at byte {type_at}")
        self._require(length * scalar.size, f"the {length} items of array '{key}'")
        start = self._pos
        self._pos += length * scalar.size
        if length > KEPT_NUMERIC_ARRAY_ITEMS or not self._keep(length):
            return ArraySummary(_VALUE_TYPE_NAMES[item_type], length)
        return struct.unpack_from(f"<{length}{_SCALAR_FORMATS[item_type]}", self._data, start)

    def _read_string_array(self, key: str, length: int) -> tuple[str, ...] | ArraySummary:
        self._require(length * 8, f"the {length} string lengths of array '{key}'")  # each item has a u64 length
        if length > KEPT_ARRAY_ITEMS:
            self._skip_strings(key, length)
            return ArraySummary("string", length)
        spans = [self._string_span(f"item {i} of array '{key}'") for i in range(length)]
        if not self._keep(length, sum(n_bytes for _, n_bytes in spans)):
            return ArraySummary("string", length)
        return tuple(self._decode(start, n_bytes) for start, n_bytes in spans)

    def _skip_strings(self, key: str, length: int) -> None:
        # Vocabularies hold ~50k-260k strings: walk their lengths without building any objects.
        data, pos, available, unpack = self._data, self._pos, self._available, _U64.unpack_from
        for index in range(length):
            if pos + 8 > available:
                self._pos = pos
                self._require(8, f"length of item {index} of array '{key}'")
                data, available = self._data, self._available
            (n_bytes,) = unpack(data, pos)
            if n_bytes > MAX_STRING_BYTES:
                raise self._invalid(f"item {index} of array '{key}' at byte {pos} claims {n_bytes} bytes, "
                                    f"more than the limit of {MAX_STRING_BYTES}")
            if pos + 8 + n_bytes > available:
                self._pos = pos + 8
                self._require(n_bytes, f"item {index} of array '{key}'")
                data, available = self._data, self._available
            pos += 8 + n_bytes
        self._pos = pos

    def _alignment(self, metadata: Mapping[str, object]) -> int:
        key = gguf_constants.Keys.General.ALIGNMENT
        alignment = metadata.get(key, DEFAULT_ALIGNMENT)
        if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
            raise self._invalid(f"'{key}' is {alignment!r}; it must be a power of two")
        return alignment

    # -- tensor table

    def _read_tensor_info(self, index: int) -> TensorInfo:
        start = self._pos
        name = self._tensor_name(index)

        def label() -> str:  # built only for an error: the table can hold many thousands of entries
            return f"tensor '{name}' (#{index}, at byte {start})"

        n_dims = self._u32(lambda: f"dimension count of {label()}")
        if n_dims > MAX_DIMS:
            raise self._invalid(f"{label()} has {n_dims} dimensions; ggml allows at most {MAX_DIMS}")
        tail = _TENSOR_TAILS[n_dims]
        self._require(tail.size, lambda: f"shape, type and data offset of {label()}")
        *shape, ggml_type, offset = tail.unpack_from(self._data, self._pos)
        self._pos += tail.size
        return self._tensor_info(name, tuple(shape), ggml_type, offset, label)

    def _tensor_name(self, index: int) -> str:
        data, pos = self._data, self._pos
        if pos + 8 <= self._available:
            (length,) = _U64.unpack_from(data, pos)
            if length <= MAX_TENSOR_NAME_BYTES and pos + 8 + length <= self._available:
                self._pos = pos + 8 + length
                return self._decode(pos + 8, length)
        return self._string(f"name of tensor #{index}", MAX_TENSOR_NAME_BYTES)  # says what is wrong

    def _tensor_info(self, name: str, shape: tuple[int, ...], ggml_type: int, offset: int, label) -> TensorInfo:
        known = GGML_TYPES.get(ggml_type)
        if known is None:
            raise self._invalid(f"{label()} has unknown ggml type {ggml_type}")
        n_elements = 1
        for axis, dim in enumerate(shape):
            if dim < 0:
                raise self._invalid(f"{label()} has a negative size {dim} in dimension {axis}")
            n_elements *= dim
        if n_elements > INT64_MAX:
            raise self._invalid(f"{label()} has shape {shape}, more than 2^63 elements")
        row = shape[0] if shape else 1
        if row % known.block_size:
            raise self._invalid(f"{label()} of type {known.name} has rows of {row} elements, not a multiple "
                                f"of its block size {known.block_size}")
        n_bytes = n_elements // known.block_size * known.type_size
        return TensorInfo(name, ggml_type, known.name, shape, offset, n_bytes)

    def _check_tensor_layout(self, tensors: list[TensorInfo], data_offset: int, alignment: int) -> None:
        names: set[str] = set()
        expected = 0
        for tensor in tensors:
            if tensor.name in names:
                raise self._invalid(f"tensor name '{tensor.name}' appears twice")
            names.add(tensor.name)
            if tensor.offset != expected:
                # llama.cpp requires the data packed in table order, each tensor padded to the alignment.
                raise self._invalid(f"tensor '{tensor.name}' has data offset {tensor.offset}, but it must be "
                                    f"{expected} (tensors are stored in order, aligned to {alignment} bytes)")
            expected = _aligned(tensor.offset + tensor.n_bytes, alignment)
        if self._file_size is None or not tensors:
            return
        last = tensors[-1]
        data_end = data_offset + last.offset + last.n_bytes
        if data_end > self._file_size:
            raise GGUFError(f"{self._source} is truncated: tensor '{last.name}' ends at byte {data_end} "
                            f"but the file has only {self._file_size} bytes")


def _aligned(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment


# --- from raw metadata to ModelInfo ------------------------------------------------------------------

class _Metadata:
    """Typed, checked access to the metadata values the rest of LlamaDesk relies on."""

    def __init__(self, values: Mapping[str, object], source: str):
        self.values = values
        self._source = source

    def _invalid(self, detail: str) -> GGUFError:
        return GGUFError(f"{self._source} has invalid model metadata: {detail}")

    def required_string(self, key: str) -> str:
        value = self.values.get(key)
        if value is None:
            raise self._invalid(f"the key '{key}' is missing")
        if not isinstance(value, str) or not value:
            raise self._invalid(f"'{key}' must be a non-empty string, not {value!r}")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, StringSummary):
            log.warning("%s: '%s' is %d bytes long; it is ignored", self._source, key, value.n_bytes)
            return None
        if not isinstance(value, str):
            raise self._invalid(f"'{key}' must be a string, not {_describe(value)}")
        return value

    def required_int(self, key: str, minimum: int = 0, maximum: int | None = None) -> int:
        if key not in self.values:
            raise self._invalid(f"the key '{key}' is missing")
        return self._int(key, self.values[key], minimum, maximum)

    def optional_int(self, key: str, default: int | None = None) -> int | None:
        return self._int(key, self.values[key]) if key in self.values else default

    def int_or_per_layer(self, key: str, n_layers: int, default):
        """A scalar, or one value per layer (llama.cpp accepts either for head counts, ff length, ...)."""
        if key not in self.values:
            return default
        value = self.values[key]
        if not isinstance(value, (tuple, ArraySummary)):
            return self._int(key, value)
        if len(value) != n_layers:
            raise self._invalid(f"'{key}' has {len(value)} per-layer values but the model has {n_layers} layers")
        if isinstance(value, ArraySummary):
            raise self._invalid(f"'{key}' holds {value.length} values, too many to be per-layer values")
        return tuple(self._int(key, item) for item in value)

    def _int(self, key: str, value: object, minimum: int = 0, maximum: int | None = None) -> int:
        if type(value) is not int:
            raise self._invalid(f"'{key}' must be an integer, not {_describe(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            upper = "" if maximum is None else f"..{maximum}"
            raise self._invalid(f"'{key}' is {value}, outside {minimum}{upper}")
        return value


def _describe(value: object) -> str:
    if isinstance(value, ArraySummary):
        return f"an array of {value.length} {value.type_name} values"
    if isinstance(value, tuple):
        return f"an array of {len(value)} values"
    return f"{type(value).__name__} {value!r}"[:80]


def _model_info(parsed: _ParsedHeader, file_size: int | None, source: str) -> ModelInfo:
    keys, llm, attention = gguf_constants.Keys.General, gguf_constants.Keys.LLM, gguf_constants.Keys.Attention
    meta = _Metadata(parsed.metadata, source)
    split = gguf_constants.Keys.Split
    split_count = meta.optional_int(split.LLM_KV_SPLIT_COUNT, default=1)
    split_index = meta.optional_int(split.LLM_KV_SPLIT_NO, default=0)
    if split_index > 0:
        raise GGUFError(f"{source} is part {split_index + 1} of {split_count} of a split model; open its first "
                        "part, which holds the model's description")
    arch = meta.required_string(keys.ARCHITECTURE)

    def key(template: str) -> str:
        return template.format(arch=arch)

    n_layers = meta.required_int(key(llm.BLOCK_COUNT), minimum=1, maximum=MAX_LAYERS)
    _check_tensor_layers(parsed.tensors, n_layers, source)
    embedding_length = meta.required_int(key(llm.EMBEDDING_LENGTH))
    head_count = meta.int_or_per_layer(key(attention.HEAD_COUNT), n_layers, default=0)
    first_head_count = head_count[0] if isinstance(head_count, tuple) else head_count
    head_dim = embedding_length // first_head_count if first_head_count else 0
    expert_used = meta.int_or_per_layer(key(llm.EXPERT_USED_COUNT), n_layers, default=None)
    file_type = meta.optional_int(keys.FILE_TYPE)
    return ModelInfo(
        source=source,
        file_size=file_size,
        gguf_version=parsed.version,
        alignment=parsed.alignment,
        tensor_data_offset=parsed.tensor_data_offset,
        architecture=arch,
        name=meta.optional_string(keys.NAME),
        file_type=file_type,
        quantization=_quantization_name(file_type, parsed.tensors),
        parameter_count=sum(t.n_elements for t in parsed.tensors),
        n_layers=n_layers,
        context_length=meta.required_int(key(llm.CONTEXT_LENGTH)),
        embedding_length=embedding_length,
        feed_forward_length=meta.int_or_per_layer(key(llm.FEED_FORWARD_LENGTH), n_layers, default=None),
        head_count=head_count,
        head_count_kv=meta.int_or_per_layer(key(attention.HEAD_COUNT_KV), n_layers, default=head_count),
        key_length=meta.optional_int(key(attention.KEY_LENGTH), default=head_dim),
        value_length=meta.optional_int(key(attention.VALUE_LENGTH), default=head_dim),
        vocab_size=_vocab_size(meta, key(llm.VOCAB_SIZE), parsed.tensors),
        chat_template=meta.optional_string(gguf_constants.Keys.Tokenizer.CHAT_TEMPLATE),
        sliding_window=meta.optional_int(key(attention.SLIDING_WINDOW)),
        expert_count=meta.optional_int(key(llm.EXPERT_COUNT)),
        expert_used_count=max(expert_used) if isinstance(expert_used, tuple) else expert_used,
        metadata=Metadata(parsed.metadata),
        tensors=parsed.tensors,
        split_count=split_count,
    )


def _check_tensor_layers(tensors: tuple[TensorInfo, ...], n_layers: int, source: str) -> None:
    for tensor in tensors:
        if tensor.layer is not None and tensor.layer >= n_layers:
            raise GGUFError(f"{source} has invalid model metadata: tensor '{tensor.name}' belongs to block "
                            f"{tensor.layer} but the model declares only {n_layers} blocks")


def _quantization_name(file_type: int | None, tensors: tuple[TensorInfo, ...]) -> str:
    if file_type is not None:
        try:
            name = gguf_constants.LlamaFileType(file_type).name
        except ValueError:
            name = None
        if name and name != "GUESSED":
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    bytes_by_type: dict[str, int] = {}
    for tensor in tensors:
        bytes_by_type[tensor.type_name] = bytes_by_type.get(tensor.type_name, 0) + tensor.n_bytes
    return max(bytes_by_type, key=bytes_by_type.__getitem__) if bytes_by_type else "unknown"


def _vocab_size(meta: _Metadata, vocab_size_key: str, tensors: tuple[TensorInfo, ...]) -> int:
    tokens = meta.values.get(gguf_constants.Keys.Tokenizer.LIST)
    if isinstance(tokens, (tuple, ArraySummary)):
        return len(tokens)
    declared = meta.optional_int(vocab_size_key)
    if declared is not None:
        return declared
    by_name = {t.name: t for t in tensors}
    for name in ("token_embd.weight", "output.weight"):
        tensor = by_name.get(name)
        if tensor is not None and len(tensor.shape) >= 2:
            return tensor.shape[1]
    return 0
