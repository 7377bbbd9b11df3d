"""A vision projector's memory and its image size in tokens, from its GGUF header alone.

The projector (an mmproj file, read by llama.cpp's clip.cpp) holds a vision encoder and the layers that map its
output into the text model's embeddings. Loaded beside the model it takes:

- its weights, exactly the bytes of its tensor table;
- a compute buffer that clip.cpp reserves at load for one image of the projector's own size (its warm-up graph):
  estimated here from the encoder's shape, an upper bound for the ViT-style graphs. The real figure is what
  llama.cpp logs at load; the engine reports it (LoadedModel.projector), so the plan's figure can be compared.

It goes on the device the engine puts it on (core.engine.vision.projector_uses_gpu: the first GPU when the
model's layers go to a GPU, else host memory), and the planner counts it there (plan_with_projector).

An image's token count is fixed by the header for the projector families that resize every image to one size;
others (Qwen2-VL and the like, tiled ones like InternVL) count by the image's own size, known once mtmd reads it.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace

from core.engine.projector_placement import projector_uses_gpu
from core.fit.choice import OffloadChoice, capped_to_trained_context, normalized
from core.fit.planner import DEFAULT_GPU_MARGIN, Plan, PlanRequest, plan
from core.gguf.reader import ModelInfo
from core.machine.hardware import HardwareSnapshot

FLOAT_BYTES = 4
# Families whose every image becomes image_size²/patch_size² patches, divided by this factor (clip.cpp's
# clip_n_output_tokens); the merge factor of gemma3 and its like comes from the header.
_FIXED_PATCH_DIVISOR = {"mlp": 1, "mlp_norm": 1, "ldp": 4, "ldpv2": 4, "janus_pro": 1, "phi4": 1}
_MERGED_FAMILIES = {"gemma3", "llama4"}
GEMMA3_DEFAULT_MERGE = 4        # clip.cpp's default when the header gives no scale factor


class ProjectorError(ValueError):
    """The file is not a projector llama.cpp can use; the message is a sentence for the user."""


@dataclass(frozen=True)
class ProjectorInfo:
    source: str
    projector_type: str          # clip.projector_type: "mlp", "gemma3", "qwen2vl_merger" ...
    has_vision: bool
    image_size: int
    patch_size: int
    n_embd: int                  # the vision encoder's width
    n_ff: int
    n_head: int
    n_layers: int
    merge: int                   # clip.vision.projector.scale_factor (0: not given)
    weights_bytes: int
    from_header: bool = True     # False: only the file's listed size is known, its image buffer is not counted

    @property
    def patches(self) -> int:
        side = self.image_size // self.patch_size if self.patch_size else 0
        return side * side

    def to_json(self) -> dict:
        """The figures as a catalog ships them (core.models.catalog), without the source."""
        data = asdict(self)
        del data["source"], data["from_header"]
        return data

    @classmethod
    def from_json(cls, data: object, source: str) -> "ProjectorInfo":
        """Figures written by to_json (a catalog's precomputed ones); ProjectorError when they are damaged."""
        wanted = [f for f in fields(cls) if f.name not in ("source", "from_header")]
        if not isinstance(data, dict) or set(data) != {f.name for f in wanted}:
            raise ProjectorError(f"The projector figures of {source} are damaged: they must name exactly "
                                 f"{', '.join(f.name for f in wanted)}.")
        for f in wanted:
            kind = {"str": str, "bool": bool}.get(f.type, int)
            if not isinstance(data[f.name], kind) or (kind is int and (isinstance(data[f.name], bool)
                                                                       or data[f.name] < 0)):
                raise ProjectorError(f"The projector figures of {source} are damaged: {f.name} is "
                                     f"{data[f.name]!r}.")
        return cls(source=source, **data)


@dataclass(frozen=True)
class ProjectorMemory:
    on_gpu: bool
    weights_bytes: int
    compute_bytes: int           # estimated (see module docstring); the load reports llama.cpp's own figure

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.compute_bytes


def read_projector_info(path: str | os.PathLike, source: str | None = None) -> ProjectorInfo:
    """The projector's facts from its header (gguf's reader maps the file; nothing is loaded). The file may be a
    sparse stub of a hub file (core.models.remote_headers): its header, then zeros; ``source`` then names the
    hub file."""
    import gguf
    source = source or os.fspath(path)
    try:
        reader = gguf.GGUFReader(os.fspath(path))
    except (OSError, ValueError, IndexError, KeyError) as error:
        raise ProjectorError(f"{source} cannot be read as a GGUF projector: {error}") from None
    metadata = {name: _field_value(field) for name, field in reader.fields.items()}
    weights = sum(int(tensor.n_bytes) for tensor in reader.tensors)
    del reader  # let go of the file's memory map before a stub's folder is removed
    return projector_info(metadata, weights, source)


def projector_info(metadata: dict, weights_bytes: int, source: str) -> ProjectorInfo:
    if metadata.get("general.architecture") != "clip":
        raise ProjectorError(f"{source} is not a projector: its architecture is "
                             f"{metadata.get('general.architecture')!r}, not 'clip'.")
    kind = metadata.get("clip.projector_type") or metadata.get("clip.vision.projector_type") or ""

    def number(key: str) -> int:
        return int(metadata.get(f"clip.vision.{key}") or 0)
    return ProjectorInfo(source, str(kind), bool(metadata.get("clip.has_vision_encoder")), number("image_size"),
                         number("patch_size"), number("embedding_length"), number("feed_forward_length"),
                         number("attention.head_count"), number("block_count"), number("projector.scale_factor"),
                         weights_bytes)


def _field_value(field):
    """A gguf ReaderField as a plain value: a string, a number, or a list of numbers."""
    import gguf
    if not field.types:
        return None
    if field.types[0] == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    if field.types[0] == gguf.GGUFValueType.ARRAY:
        return [field.parts[index].tolist()[0] for index in field.data] if field.types[-1] != \
            gguf.GGUFValueType.STRING else None
    return field.parts[field.data[0]].tolist()[0]


def fixed_image_tokens(info: ProjectorInfo) -> int | None:
    """The tokens every image takes, for the families that resize each image to one size; None for the rest."""
    if info.projector_type in _FIXED_PATCH_DIVISOR:
        return info.patches // _FIXED_PATCH_DIVISOR[info.projector_type]
    if info.projector_type in _MERGED_FAMILIES:
        merge = info.merge or (GEMMA3_DEFAULT_MERGE if info.projector_type == "gemma3" else 1)
        return info.patches // (merge * merge)
    return None


def image_compute_bytes(info: ProjectorInfo, *, flash_attn: bool = True) -> int:
    """An upper estimate of clip.cpp's compute buffer for one image of the projector's size: the raw image and
    its patch columns, the widest activations of one encoder block alive at once (residual, normed input, Q, K, V,
    the FFN's up and activated halves) and, without flash attention, the attention scores and their softmax."""
    positions = info.patches + 1                 # a class token where the family has one
    image = 3 * info.image_size * info.image_size
    columns = positions * 3 * info.patch_size * info.patch_size
    block = positions * (5 * info.n_embd + 2 * info.n_ff)
    scores = 0 if flash_attn else 2 * info.n_head * positions * positions
    return FLOAT_BYTES * (image + columns + block + scores)


def projector_memory(info: ProjectorInfo, n_gpu_layers: int, *, flash_attn: bool = True) -> ProjectorMemory:
    return ProjectorMemory(projector_uses_gpu(n_gpu_layers), info.weights_bytes,
                           image_compute_bytes(info, flash_attn=flash_attn))


def plan_with_projector(model: ModelInfo, projector: ProjectorInfo, hardware: HardwareSnapshot,
                        choice: OffloadChoice, margin_bytes: int = DEFAULT_GPU_MARGIN, *,
                        request: PlanRequest | None = None) -> tuple[Plan, ProjectorMemory]:
    """The load's plan with the projector counted where the engine will put it: on the first GPU (its free memory
    less the projector's) when layers go to a GPU; when no layer can go there beside it, everything stays in host
    memory, the projector too. `request` is the planner request for `choice` when the caller has one (several
    slots); by default the one a load of `choice` makes."""
    request = request or normalized(capped_to_trained_context(choice, model)).plan_request(margin_bytes)
    if hardware.gpus and choice.gpu_layers != 0:
        on_gpu = projector_memory(projector, -1)
        chosen = plan(model, _less_on_first_gpu(hardware, on_gpu.total_bytes), request)
        if chosen.n_gpu_layers != 0 or choice.gpu_layers is not None:
            return chosen, on_gpu
    on_host = projector_memory(projector, 0)
    host_only = replace(request, n_gpu_layers=0)
    return plan(model, _less_on_host(hardware, on_host.total_bytes), host_only), on_host


def _less_on_first_gpu(hardware: HardwareSnapshot, size: int) -> HardwareSnapshot:
    first, *rest = hardware.gpus
    return replace(hardware, gpus=(replace(first, free_bytes=max(first.free_bytes - size, 0)), *rest))


def _less_on_host(hardware: HardwareSnapshot, size: int) -> HardwareSnapshot:
    host = hardware.host
    return replace(hardware, host=replace(host, ram_available_bytes=max(host.ram_available_bytes - size, 0)))
