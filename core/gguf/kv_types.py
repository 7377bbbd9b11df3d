"""The KV cache types: the ggml tensor types llama.cpp accepts for its K and V caches (by the names its
`--cache-type-k` takes), the ones the app offers, and llama.cpp's rule that a quantized cache needs flash
attention (it quantizes the V cache only inside the flash-attention kernels). Every room asks here."""
from __future__ import annotations

from gguf import GGMLQuantizationType

KV_TYPES: dict[str, GGMLQuantizationType] = {
    "f32": GGMLQuantizationType.F32, "f16": GGMLQuantizationType.F16, "bf16": GGMLQuantizationType.BF16,
    "q8_0": GGMLQuantizationType.Q8_0, "q4_0": GGMLQuantizationType.Q4_0, "q4_1": GGMLQuantizationType.Q4_1,
    "q5_0": GGMLQuantizationType.Q5_0, "q5_1": GGMLQuantizationType.Q5_1,
    "iq4_nl": GGMLQuantizationType.IQ4_NL,
}
OFFERED_KV_TYPES = ("f16", "q8_0", "q4_0")      # what the settings, the offload panel and the CLI offer
FULL_PRECISION_KV_TYPES = frozenset({"f32", "f16", "bf16"})
DEFAULT_KV_TYPE = "f16"
SMALLER_KV_TYPE = "q8_0"                        # the step-down ladder's choice: half the memory, little loss


class UnknownKvType(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown KV cache type {name!r}; choose one of {', '.join(KV_TYPES)}.")


def is_quantized(kv_type: str) -> bool:
    return kv_type not in FULL_PRECISION_KV_TYPES


def needs_flash_attention(kv_type: str) -> bool:
    return is_quantized(kv_type)


def kv_type_id(name: str) -> int:
    """The ggml type id llama.cpp's context parameters take (UnknownKvType for a name it does not know)."""
    try:
        return int(KV_TYPES[name])
    except KeyError:
        raise UnknownKvType(name) from None
