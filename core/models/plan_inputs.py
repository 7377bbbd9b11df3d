"""Plan inputs: what the planner needs of a GGUF header, in a compact form a catalog can ship with each file.

A header reduced to the model's figures, its numeric architecture keys and its tensor table (each repeating block
stored once per distinct layout) gives back a ModelInfo the planner treats like the header's own, so a catalog file
gets its verdict offline, before any byte of it is read from the hub.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.gguf.reader import GGML_TYPES, Metadata, ModelInfo, TensorInfo

PLAN_INPUTS_FORMAT = 1
_INFO_FIELDS = ("file_size", "gguf_version", "alignment", "tensor_data_offset", "architecture", "name", "file_type",
                "quantization", "n_layers", "context_length", "embedding_length", "feed_forward_length", "head_count",
                "head_count_kv", "key_length", "value_length", "vocab_size", "sliding_window", "expert_count",
                "expert_used_count", "split_count")
_KEPT_GENERAL_KEYS = ("general.architecture", "general.name", "general.file_type", "split.count")


class PlanInputsError(ValueError):
    """Plan inputs that cannot be turned back into a model description; the message says what is wrong."""


@dataclass(frozen=True)
class PlanInputs:
    """A header reduced to what planning reads: the model's figures, its numeric architecture keys and its tensor
    table, each repeating block stored once per distinct layout ("layer kinds") with the sequence of kinds.

    A Qwen3-30B header (48 blocks, 579 tensors, a 151k-token vocabulary) takes about 3 KB this way, so a catalog
    can carry one per file and plan every file offline. ``model_info()`` gives back a ModelInfo with the same
    tensors (names, types, shapes, sizes) and figures; only the vocabulary, chat template and tokenizer are left out.
    """

    document: Mapping[str, object] = dataclasses.field(hash=False)

    @classmethod
    def of(cls, info: ModelInfo) -> "PlanInputs":
        kinds: list[tuple] = []
        sequence: list[int] = []
        per_layer: dict[int, list[list]] = {}
        outside: list[list] = []
        for tensor in info.tensors:
            row = [tensor.ggml_type, list(tensor.shape)]
            if tensor.layer is None:
                outside.append([tensor.name, *row])
            else:
                per_layer.setdefault(tensor.layer, []).append([tensor.name.split(".", 2)[2], *row])
        for layer in range(info.n_layers):
            layout = json.dumps(per_layer.get(layer, []))
            if layout not in kinds:
                kinds.append(layout)
            sequence.append(kinds.index(layout))
        figures = {name: _plain(getattr(info, name)) for name in _INFO_FIELDS}
        keys = {k: _plain(v) for k, v in info.metadata.items() if _is_plan_key(k, v, info.architecture)}
        return cls({"format": PLAN_INPUTS_FORMAT, "info": figures, "metadata": keys, "tensors": outside,
                    "layer_kinds": [json.loads(k) for k in kinds], "layers": sequence})

    def model_info(self, source: str) -> ModelInfo:
        try:
            return self._model_info(source)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise PlanInputsError(f"The plan inputs of {source} are damaged ({error!r}); its header is needed "
                                  "instead.") from error

    def _model_info(self, source: str) -> ModelInfo:
        data = self.document
        if data.get("format") != PLAN_INPUTS_FORMAT:
            raise PlanInputsError(f"The plan inputs of {source} are in format {data.get('format')!r}, which this "
                                  "version does not read.")
        figures = {name: _frozen(value) for name, value in dict(data["info"]).items() if name in _INFO_FIELDS}
        rows = [tuple(row) for row in data["tensors"]]
        kinds = data["layer_kinds"]
        for layer, kind in enumerate(data["layers"]):
            rows += [(f"blk.{layer}.{suffix}", code, shape) for suffix, code, shape in kinds[kind]]
        tensors = _tensors(rows, int(figures["alignment"]))
        metadata = {key: _frozen(value) for key, value in dict(data["metadata"]).items()}
        return ModelInfo(source=source, parameter_count=sum(t.n_elements for t in tensors), chat_template=None,
                         metadata=Metadata(metadata), tensors=tensors, **figures)

    def to_json(self) -> dict:
        return json.loads(json.dumps(self.document))


def _tensors(rows: Sequence[tuple], alignment: int) -> tuple[TensorInfo, ...]:
    """TensorInfo rows laid out one after another, as a GGUF writer aligns them."""
    out, offset = [], 0
    for name, code, shape in rows:
        kind = GGML_TYPES[int(code)]
        elements = 1
        for dim in shape:
            elements *= int(dim)
        n_bytes = elements // kind.block_size * kind.type_size
        out.append(TensorInfo(str(name), kind.code, kind.name, tuple(int(d) for d in shape), offset, n_bytes))
        offset += (n_bytes + alignment - 1) // alignment * alignment
    return tuple(out)


def _is_plan_key(key: str, value, architecture: str) -> bool:
    """Architecture keys with numbers (hyperparameters, per-layer lists) and the few general keys planning reads."""
    if key not in _KEPT_GENERAL_KEYS and not key.startswith(f"{architecture}."):
        return False
    if isinstance(value, tuple):
        return all(isinstance(v, (int, float)) for v in value)
    return isinstance(value, (int, float, bool)) or (isinstance(value, str) and len(value) <= 256)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value
