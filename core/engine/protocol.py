"""The typed, picklable messages that pass between the engine client and its worker process.

Public values (what callers of EngineClient see): LoadSettings, SamplingSettings, ThinkingChoice, LoadedModel
(with ThinkingSupport and DeviceAllocation), AnswerStats, ToolCall and the chat events TokenText, ReasoningText,
ToolCallMade, ContextTrimmed, AnswerFinished.

Messages sent to the engine are dicts as chat templates take them: "role", "content", and for an assistant turn
optionally "reasoning_content" (its thinking) and "tool_calls" (a list of {"id", "type": "function",
"function": {"name", "arguments"}}); a "tool" turn carries "tool_call_id". A user turn may carry "images": a
list of image files (paths) or their bytes (PNG, JPEG, GIF, BMP), for a model loaded with its vision projector
(LoadSettings.projector_path); each image is read and checked in the worker and goes before the turn's text
(core/engine/vision.py). Images sent to a model without a projector fail the request with a sentence.

Private envelopes (client <-> worker only): the requests the client sends (LoadRequest,
ChatRequest, StopRequest, ShutdownRequest) and the replies the worker sends back (LoadProgress,
LoadSucceeded, LoadFailed, and each answer's chat events or ChatFailed inside a ChatReply that names
its request, since up to n_parallel answers stream at once).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Union

# --------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class LoadSettings:
    """How to load one model: where its layers go, how big its context is, how its KV cache is stored."""

    model_path: str
    n_gpu_layers: int = 0            # -1 = all layers
    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int = 512
    n_threads: int | None = None     # None = the machine's physical cores
    flash_attn: bool = False         # forced on when the V cache is quantized (llama.cpp requires it)
    kv_type: str = "f16"             # "f16" | "q8_0" | "q4_0" ... applied to K and V
    seed: int = -1                   # -1 = random; SamplingSettings.seed overrides it per answer
    rpc_servers: tuple[str, ...] = ()
    cpu_expert_layers: int = 0       # MoE: the expert tensors of this many layers stay in host memory
    predicted_host_bytes: int | None = None   # from the planner, echoed back beside the measurement
    predicted_gpu_bytes: int | None = None
    predicted_projector_bytes: int | None = None   # a vision projector's weights and image buffer, where it goes
    projector_path: str | None = None  # a vision model's mmproj file: images can then go in messages
    n_parallel: int = 1              # slots: conversations answered at once, each with its own n_ctx of KV cache
    parked_kv_bytes: int = 1 << 30   # host memory for the KV states of conversations moved out of their slot
    embeddings: bool = False         # an embedding model: vectors (pooled as its header says) instead of text


@dataclass(frozen=True)
class SamplingSettings:
    """How to pick each next token, and when to stop."""

    temperature: float = 0.7         # 0 = greedy
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None          # None = the load seed
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    grammar: str | None = None       # a GBNF grammar the answer must follow (JSON modes, tests)
    ignore_eos: bool = False         # generate past end-of-generation tokens (benchmarks only)


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class ThinkingChoice:
    """How much the model should think, where its template lets us say (None: the template's default)."""

    enabled: bool | None = None
    effort: str | None = None        # "low" | "medium" | "high" (gpt-oss's reasoning_effort)


@dataclass(frozen=True)
class ThinkingSupport:
    """What the model's template lets a user choose about its thinking, found from the template text."""

    reasoning_format: str = "none"   # the output family: "none" | "think" | "harmony" | "think-bracket" ...
    can_toggle: bool = False         # thinking can be switched on and off
    efforts: tuple[str, ...] = ()    # the effort levels the template reads, if any


@dataclass(frozen=True)
class DeviceAllocation:
    """What llama.cpp allocated on one device at load, from its own load log (bytes)."""

    device: str                      # as llama.cpp names it: "CPU", "CUDA0", "RPC0[127.0.0.1:50052]" ...
    model_bytes: int = 0
    kv_bytes: int = 0
    compute_bytes: int = 0
    other_bytes: int = 0             # output buffer, recurrent state ...

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.kv_bytes + self.compute_bytes + self.other_bytes


@dataclass(frozen=True)
class ProjectorLoaded:
    """A vision projector loaded beside the model, with what llama.cpp's multimodal library reported (its log)."""

    path: str
    device: str                      # "CPU", "CUDA0" ...
    weights_bytes: int
    compute_bytes: int               # the image-encoding buffer reserved for one image of the projector's size


@dataclass(frozen=True)
class LoadedModel:
    """A model that the worker has loaded, with what it measured next to what the planner predicted."""

    model_path: str
    n_ctx: int
    n_gpu_layers: int
    n_layers: int
    backend: str                     # "CPU", "CUDA", "Metal", "RPC" ...
    load_seconds: float
    resident_bytes: int              # the worker's resident memory once loaded
    resident_growth_bytes: int       # ... minus what it held before the load
    gpu_bytes: int | None            # the worker's VRAM (NVML), None where unknown
    chat_template_source: str        # "model" | "fallback (ChatML)"
    settings: LoadSettings           # the settings that worked (after any step-down)
    steps: tuple[str, ...] = ()      # the step-down ladder's reports, first to last
    n_ctx_train: int = 0
    description: str = ""            # llama.cpp's one-line model description
    n_threads: int = 0               # the CPU threads actually used
    thinking: ThinkingSupport = ThinkingSupport()
    allocations: tuple[DeviceAllocation, ...] = ()   # llama.cpp's own figures, per device
    projector: ProjectorLoaded | None = None          # the vision projector, when one was loaded


@dataclass(frozen=True)
class AnswerStats:
    prompt_tokens: int               # the whole rendered prompt
    completion_tokens: int
    ttft_seconds: float              # request received -> first token sampled (worker clock)
    prompt_tokens_per_second: float  # over the tokens actually evaluated (the new suffix)
    tokens_per_second: float         # decode rate after the first token
    context_used: int                # tokens held in the context after the answer
    context_size: int
    stop_reason: str                 # "stop" | "length" | "cancelled"
    reused_prefix_tokens: int        # prompt tokens found in the KV cache from earlier turns
    dropped_messages: int            # messages left out to fit the context
    prompt_eval_seconds: float = 0.0
    generation_seconds: float = 0.0
    prompt: str = ""                 # the prompt as rendered by the chat template
    reasoning_tokens: int = 0        # of completion_tokens, those spent thinking
    reasoning_seconds: float = 0.0
    system_prompt_merged: bool = False   # the template takes no system role: it went into the first user turn
    image_tokens: tuple[int, ...] = ()   # the prompt's images, in order: the tokens each took (in prompt_tokens)


# --------------------------------------------------------------------------------------------
# chat events (yielded by EngineClient.chat)


@dataclass(frozen=True)
class TokenText:
    """New answer text: whole characters only (a character split across tokens arrives whole)."""

    text: str


@dataclass(frozen=True)
class ReasoningText:
    """New thinking text (shown apart from the answer), whole characters only."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str                   # JSON text, as the OpenAI API carries it


@dataclass(frozen=True)
class ToolCallMade:
    """The model called a tool (parsed from its own call syntax; the markup never reaches the answer)."""

    call: ToolCall


@dataclass(frozen=True)
class ContextTrimmed:
    """The conversation did not fit: the oldest messages after the system prompt were left out."""

    dropped_messages: int
    kept_messages: int


@dataclass(frozen=True)
class AnswerFinished:
    text: str
    stats: AnswerStats
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


ChatEvent = Union[TokenText, ReasoningText, ToolCallMade, ContextTrimmed, AnswerFinished]


# --------------------------------------------------------------------------------------------
# client -> worker


@dataclass(frozen=True)
class LoadRequest:
    settings: LoadSettings


@dataclass(frozen=True)
class ChatRequest:
    request_id: int                  # Stop names this id in the shared stop value
    messages: tuple[dict, ...]
    sampling: SamplingSettings
    thinking: ThinkingChoice = ThinkingChoice()
    tools: tuple[dict, ...] = ()     # OpenAI-style tool definitions the template may show the model
    prompt: str | None = None        # raw text to continue, instead of the conversation through the template


@dataclass(frozen=True)
class PrepareRequest:
    """A hint, answered by nothing: the conversation will be sent soon (a chat was opened, a question is being
    typed), so while idle the worker brings its KV state into a slot (restoring a parked one) and evaluates the
    prompt so far. Real requests always go first: one arriving stops the preparation between graph nodes, and
    what was evaluated stays in the cache for whichever prompt shares it. A hint that arrives after a request
    issued later (the two travel on different threads) is stale and ignored."""

    request_id: int                  # from the same count as ChatRequest's: orders the hint among them
    messages: tuple[dict, ...]
    thinking: ThinkingChoice = ThinkingChoice()
    tools: tuple[dict, ...] = ()


@dataclass(frozen=True)
class EmbedRequest:
    """A vector for each text, from a model loaded with LoadSettings.embeddings."""

    request_id: int
    texts: tuple[str, ...]
    truncate: bool = False           # cut a text longer than the model takes at once, instead of refusing it


@dataclass(frozen=True)
class StopRequest:
    """End this answer at its next token (the shared stop value also names it, for a decode under way)."""

    request_id: int


@dataclass(frozen=True)
class ShutdownRequest:
    pass


# --------------------------------------------------------------------------------------------
# worker -> client


class FailureKind(str, Enum):
    """Why a load failed; only the memory kinds are worth stepping down for."""

    MISSING = "missing"
    NOT_GGUF = "not_gguf"
    CORRUPT = "corrupt"
    UNSUPPORTED = "unsupported"
    MEMORY = "memory"
    INVALID = "invalid"              # settings llama.cpp refuses (e.g. a KV type it lacks)
    ENGINE = "engine"                # the worker itself failed (not the model, not memory)
    UNKNOWN = "unknown"              # includes a worker killed by a signal while loading

    @property
    def may_step_down(self) -> bool:
        return self in (FailureKind.MEMORY, FailureKind.UNKNOWN)

    @property
    def is_about_the_file(self) -> bool:
        return self in (FailureKind.MISSING, FailureKind.NOT_GGUF, FailureKind.CORRUPT,
                        FailureKind.UNSUPPORTED)


@dataclass(frozen=True)
class ModelFacts:
    """What the worker could learn about a model even when loading it failed."""

    n_layers: int
    n_ctx_train: int


@dataclass(frozen=True)
class LoadProgress:
    fraction: float


@dataclass(frozen=True)
class LoadSucceeded:
    model: LoadedModel


@dataclass(frozen=True)
class LoadFailed:
    kind: FailureKind
    reason: str                      # a sentence for a user
    facts: ModelFacts | None = None
    log_tail: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ChatFailed:
    reason: str
    kind: str = "error"              # "prompt_too_long" | "not_loaded" | "error"


@dataclass(frozen=True)
class Embedded:
    """The answer to an EmbedRequest: unit vectors in the texts' order, and the tokens read."""

    vectors: tuple[tuple[float, ...], ...]
    tokens: int


@dataclass(frozen=True)
class ChatReply:
    """One message of one answer: a chat event, or ChatFailed."""

    request_id: int
    message: object
