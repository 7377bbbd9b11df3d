"""Images for vision models: checking an image file, and llama.cpp's multimodal library (libmtmd) in the worker.

A vision model is a text model plus its projector (an mmproj GGUF). The projector turns an image into a run of
embeddings that the text model reads like tokens. In a chat the images travel on the user's message
(``"images"``: file paths or bytes, see protocol.py); the turn puts one media marker per image in front of the
message's text, the chat template renders the prompt as usual, and mtmd_tokenize splits the rendered prompt into
text chunks and image chunks. Text chunks are evaluated as before; image chunks are encoded by the projector and
decoded into the KV cache through mtmd's helper.

Every image is checked before anything decodes it (its size on disk, its format from its first bytes, its
pixel count from its header): a file that is not an image, or one too large to decode safely, is refused with a
sentence and nothing is sent. A model loaded without a projector refuses images the same way.

In the KV cache record (LlamaRuntime.cached) an image stands as the same negative id repeated once per position,
made from the image's content hash: a later turn that sends the same image at the same place reuses it, and a
different image never matches a token or another image.
"""
from __future__ import annotations

import ctypes
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from core.engine.errors import EngineError, ImageRefused
from core.engine.llama_runtime import DECODE_ABORTED, ContextFull, DecodeFailed
from core.engine.protocol import ProjectorLoaded

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MAX_IMAGE_BYTES = 32 * MiB             # a photo is a few MB; larger is refused before it is read
MAX_IMAGE_PIXELS = 40_000_000          # ~6300 x 6300; decoding takes 3 bytes a pixel before any resize
IMAGE_KINDS = "PNG, JPEG, GIF or BMP"  # what llama.cpp's decoder (stb_image) reads without a helper program
# mtmd marks where an image goes in the prompt text with this marker (mtmd_default_marker()).
MEDIA_MARKER = "<__media__>"


class ProjectorLoadFailed(EngineError):
    """llama.cpp's multimodal library could not load the projector with this model."""


@dataclass(frozen=True)
class ImageFile:
    """An image read and checked: its bytes, its format and its size in pixels."""

    name: str
    data: bytes
    kind: str            # "PNG" | "JPEG" | "GIF" | "BMP"
    width: int
    height: int


# ----------------------------------------------------------------------------------------------------------------
# checking an image file (no native code: the UI and the CLI call this too)


def read_image(source: str | os.PathLike | bytes, name: str | None = None) -> ImageFile:
    """The image at a path (or in bytes), checked; raises ImageRefused with a sentence naming it."""
    if isinstance(source, (bytes, bytearray)):
        label = name or "the attached image"
        if len(source) > MAX_IMAGE_BYTES:
            raise ImageRefused(_too_large(label, len(source)))
        data = bytes(source)
    else:
        path = Path(source)
        label = name or path.name
        data = _read_bounded(path, label)
    kind, width, height = image_header(data, label)
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageRefused(f"{label} is {width} x {height} pixels; images up to {MAX_IMAGE_PIXELS // 1_000_000} "
                           "million pixels can be attached. Scale it down first.")
    return ImageFile(label, data, kind, width, height)


def _read_bounded(path: Path, label: str) -> bytes:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageRefused(f"{label} is not a file, so it cannot be attached as an image.")
        if size > MAX_IMAGE_BYTES:
            raise ImageRefused(_too_large(label, size))
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageRefused(f"The image {path} does not exist.") from None
    except OSError as error:
        raise ImageRefused(f"The image {path} cannot be read: {error.strerror or error}.") from None


def _too_large(label: str, size: int) -> str:
    return (f"{label} is {size / MiB:.0f} MB; images up to {MAX_IMAGE_BYTES // MiB} MB can be attached. "
            "Save it smaller (a JPEG of the same picture is usually a few MB).")


def image_header(data: bytes, label: str = "the file") -> tuple[str, int, int]:
    """(kind, width, height) from an image's first bytes; ImageRefused when they are not one we can decode."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return _sized("PNG", width, height, label)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", data[6:10])
            return _sized("GIF", width, height, label)
        if data.startswith(b"BM") and len(data) >= 26:
            width, height = struct.unpack("<ii", data[18:26])
            return _sized("BMP", width, abs(height), label)
        if data.startswith(b"\xff\xd8\xff"):
            return _sized("JPEG", *_jpeg_size(data), label)
    except struct.error:
        pass
    raise ImageRefused(f"{label} is not an image this model can read: attach a {IMAGE_KINDS} file.")


def _sized(kind: str, width: int, height: int, label: str) -> tuple[str, int, int]:
    if width <= 0 or height <= 0:
        raise ImageRefused(f"{label} says it is a {kind} image of {width} x {height} pixels, so it is damaged.")
    return kind, width, height


_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walk the JPEG's marker segments to its frame header (SOFn), which holds the height and the width."""
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker == 0xFF:                          # fill byte
            position += 1
            continue
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        if marker in _JPEG_FRAME_MARKERS:
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            return width, height
        position += 2 + length
    raise struct.error("no frame header")


# ----------------------------------------------------------------------------------------------------------------
# messages


def message_images(message: dict) -> tuple:
    return tuple(message.get("images") or ())


def has_images(messages: Sequence[dict]) -> bool:
    return any(message_images(message) for message in messages)


def with_markers(message: dict) -> dict:
    """The message as the chat template sees it: one media marker per image before its text, no "images" key."""
    images = message_images(message)
    shown = {key: value for key, value in message.items() if key != "images"}
    if not images:
        return shown
    markers = "".join(f"{MEDIA_MARKER}\n" for _ in images)
    content = message.get("content")
    if isinstance(content, list):
        shown["content"] = [{"type": "text", "text": markers}, *content]
    else:
        shown["content"] = markers + (content or "")
    return shown


def refuse_images_without_projector(messages: Sequence[dict], model_name: str) -> None:
    if has_images(messages):
        raise ImageRefused(f"{model_name} cannot look at images: it was loaded without a vision projector "
                           "(an mmproj file). Remove the image, or load the model with its projector.")


# ----------------------------------------------------------------------------------------------------------------
# libmtmd, inside the worker


@dataclass(frozen=True)
class PromptChunk:
    """A piece of a vision prompt: text tokens, or one image of n_positions (its cache ids all alike)."""

    handle: int                 # mtmd_input_chunk pointer, owned by VisionPrompt
    is_image: bool
    ids: tuple[int, ...]        # what LlamaRuntime.cached records for it


class _MtmdLog:
    """mtmd's log to the worker's stderr, keeping the lines that say what it loaded and why it failed."""

    def __init__(self, mtmd) -> None:
        import llama_cpp.llama_cpp as native
        self.lines: list[str] = []
        self._callback = native.llama_log_callback(self._on_log)    # C holds it: keep a reference
        mtmd.mtmd_log_set(self._callback, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(self._callback, ctypes.c_void_p(0))

    def _on_log(self, level: int, text: bytes, _data) -> None:
        if not text or level == 1:                                   # GGML_LOG_LEVEL_DEBUG
            return
        os.write(2, text)
        line = text.decode("utf-8", errors="replace").strip()
        if line:
            self.lines.append(line)
            del self.lines[:-200]

    def figures(self, path: str) -> ProjectorLoaded:
        device, weights, compute = "CPU", 0, 0
        for line in self.lines:
            if "CLIP using" in line and "backend" in line:
                device = line.split("CLIP using", 1)[1].split("backend", 1)[0].strip()
            elif "model size:" in line:
                weights = _mib(line.rsplit(":", 1)[1])
            elif "compute buffer size =" in line:
                compute = _mib(line.rsplit("=", 1)[1])               # a re-reservation replaces the buffer
        return ProjectorLoaded(path, device, weights, compute)

    def problem(self) -> str:
        errors = [line for line in self.lines if "error" in line.lower() or "mismatch" in line.lower()
                  or "failed" in line.lower()]
        return errors[-1] if errors else (self.lines[-1] if self.lines else "no reason was logged")


def _mib(text: str) -> int:
    return round(float(text.strip().split()[0]) * MiB)


class Vision:
    """A loaded projector beside a loaded text model: turns a rendered prompt with images into chunks and
    evaluates them. Lives only inside the worker process; close() it before the model."""

    def __init__(self, mtmd, context, mtmd_log: _MtmdLog, path: str) -> None:
        self._mtmd = mtmd
        self._context = context
        self._log = mtmd_log
        self.figures = mtmd_log.figures(path)
        self.uses_mrope = bool(mtmd.mtmd_decode_use_mrope(context))

    @classmethod
    def load(cls, projector_path: str, model, *, n_threads: int, use_gpu: bool) -> "Vision":
        """Raises ProjectorLoadFailed with llama.cpp's reason (a projector for another model, a broken file)."""
        import llama_cpp.mtmd_cpp as mtmd
        if not Path(projector_path).is_file():
            raise ProjectorLoadFailed(f"The vision projector {projector_path} does not exist.")
        mtmd_log = _MtmdLog(mtmd)
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = n_threads
        params.print_timings = False
        context = mtmd.mtmd_init_from_file(projector_path.encode("utf-8"), model, params)
        if not context:
            raise ProjectorLoadFailed(f"The vision projector {Path(projector_path).name} could not be loaded with "
                                      f"this model: {mtmd_log.problem()}")
        if not mtmd.mtmd_support_vision(context):
            mtmd.mtmd_free(context)
            raise ProjectorLoadFailed(f"{Path(projector_path).name} is a projector for audio, not for images.")
        return cls(mtmd, context, mtmd_log, projector_path)

    def close(self) -> None:
        if self._context:
            self._mtmd.mtmd_free(self._context)
            self._context = None

    # ---------------------------------------------------------------------------------------------- prompts

    def tokenize(self, prompt: str, images: Sequence[ImageFile], *, add_bos: bool) -> "VisionPrompt":
        """The rendered prompt (one marker per image, in order) as text and image chunks."""
        mtmd = self._mtmd
        bitmaps = [self._bitmap(image) for image in images]
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            data = prompt.encode("utf-8")
            text = mtmd.mtmd_input_text(data, len(data), add_bos, True)
            array = (mtmd.mtmd_bitmap_p_ctypes * max(len(bitmaps), 1))(*bitmaps)
            status = mtmd.mtmd_tokenize(self._context, chunks, ctypes.byref(text), array, len(bitmaps))
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)
        if status != 0:
            mtmd.mtmd_input_chunks_free(chunks)
            raise ImageRefused(_tokenize_problem(status, len(images)))
        return VisionPrompt(mtmd, chunks)

    def _bitmap(self, image: ImageFile):
        buffer = (ctypes.c_uint8 * len(image.data)).from_buffer_copy(image.data)
        bitmap = self._mtmd.mtmd_helper_bitmap_init_from_buf(self._context, buffer, len(image.data), False)
        if not bitmap:
            raise ImageRefused(f"{image.name} could not be decoded as a {image.kind} image; it may be damaged.")
        return bitmap

    def reusable(self, prompt: "VisionPrompt", reused: int) -> int:
        """How many cached positions this prompt may keep: never part of an image, and none on M-RoPE models
        (their image positions are not one per token)."""
        return 0 if self.uses_mrope else prompt.aligned_start(reused)

    def evaluate(self, runtime, prompt: "VisionPrompt", start: int, seq: int = 0) -> bool:
        """Evaluate the prompt from position `start` (the cache holds what is before it, see reusable): text
        through the runtime as usual, images through mtmd. False if Stop ended it (the cache stays consistent)."""
        needed = len(runtime.cached_in(seq)) + len(prompt.ids) - start
        if needed > runtime.n_ctx:
            raise ContextFull(f"{needed} positions do not fit in {runtime.n_ctx}")
        pieces = prompt.pieces_from(start)
        for number, (chunk, offset) in enumerate(pieces):
            last = number == len(pieces) - 1
            if chunk.is_image or self.uses_mrope:
                if not self._evaluate_whole(runtime, chunk, seq, logits_last=last):
                    return False
            elif not runtime.evaluate(chunk.ids[offset:], seq):
                return False
        return True

    def _evaluate_whole(self, runtime, chunk: PromptChunk, seq: int, *, logits_last: bool) -> bool:
        """Encode (an image) and decode one chunk at the end of the sequence's cache through mtmd's helper."""
        import llama_cpp.llama_cpp as native
        begin = len(runtime.cached_in(seq))
        new_n_past = native.llama_pos(0)
        status = self._mtmd.mtmd_helper_eval_chunk_single(self._context, runtime.handles[1], chunk.handle, begin,
                                                          seq, runtime.n_batch, logits_last,
                                                          ctypes.byref(new_n_past))
        if status != 0:
            runtime.forget_from(begin, seq)          # a part-decoded image is of no use: drop it whole
            if status == DECODE_ABORTED:
                return False
            raise DecodeFailed(f"the image could not be evaluated (mtmd returned {status})")
        runtime.note_evaluated(chunk.ids, seq)
        return True


def _tokenize_problem(status: int, n_images: int) -> str:
    if status == 1:
        return (f"The message carries {n_images} image(s) but its text does not hold the same number of image "
                f"places; the text must not contain {MEDIA_MARKER} itself.")
    return "The projector could not read the attached image (llama.cpp's image preprocessing failed)."


class VisionPrompt:
    """A tokenized vision prompt: its chunks, and the ids LlamaRuntime.cached records for them."""

    def __init__(self, mtmd, chunks) -> None:
        self._mtmd = mtmd
        self._chunks = chunks
        self.chunks: list[PromptChunk] = []
        self.image_tokens: list[int] = []
        for index in range(mtmd.mtmd_input_chunks_size(chunks)):
            handle = mtmd.mtmd_input_chunks_get(chunks, index)
            if mtmd.mtmd_input_chunk_get_type(handle) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t(0)
                tokens = mtmd.mtmd_input_chunk_get_tokens_text(handle, ctypes.byref(count))
                self.chunks.append(PromptChunk(handle, False, tuple(tokens[:count.value])))
            else:
                n_positions = mtmd.mtmd_input_chunk_get_n_pos(handle)
                image_id = _image_cache_id(mtmd.mtmd_input_chunk_get_id(handle))
                self.chunks.append(PromptChunk(handle, True, (image_id,) * n_positions))
                self.image_tokens.append(mtmd.mtmd_input_chunk_get_n_tokens(handle))
        self.ids: list[int] = [token for chunk in self.chunks for token in chunk.ids]

    def aligned_start(self, reused: int) -> int:
        """The position to evaluate from, given `reused` cached positions: never inside an image."""
        start = 0
        for chunk in self.chunks:
            end = start + len(chunk.ids)
            if chunk.is_image and start < reused < end:
                return start
            start = end
        return reused

    def pieces_from(self, position: int) -> list[tuple[PromptChunk, int]]:
        """(chunk, offset into it) for every chunk that still has positions at or after `position`."""
        pieces, start = [], 0
        for chunk in self.chunks:
            end = start + len(chunk.ids)
            if end > position:
                pieces.append((chunk, max(position - start, 0)))
            start = end
        return pieces

    def free(self) -> None:
        if self._chunks:
            self._mtmd.mtmd_input_chunks_free(self._chunks)
            self._chunks = None

    __del__ = free


def _image_cache_id(raw_id: bytes | None) -> int:
    """A negative id from the image's content hash (mtmd ids an image by it): never a token, alike only for the
    same image."""
    digest = int((raw_id or b"0")[:15], 16) if raw_id and all(c in b"0123456789abcdef" for c in raw_id[:15]) \
        else hash(raw_id)
    return -1 - (digest % (1 << 30))


def prepare_messages(messages: Sequence[dict]) -> tuple[list[dict], dict[int, tuple[ImageFile, ...]]]:
    """The messages as the template sees them (markers, no "images" key), and each one's checked images by the
    id() of its shown dict (the context window keeps or drops whole messages, so their images go with them).
    Raises ImageRefused for the first image that cannot be used."""
    shown, images = [], {}
    for number, message in enumerate(messages, start=1):
        files = tuple(read_image(source, name=None if isinstance(source, (str, os.PathLike))
                                 else f"image {index} of message {number}")
                      for index, source in enumerate(message_images(message), start=1))
        prepared = with_markers(message)
        shown.append(prepared)
        if files:
            images[id(prepared)] = files
    return shown, images


def images_in(messages: Sequence[dict], images: dict[int, tuple[ImageFile, ...]]) -> list[ImageFile]:
    return [image for message in messages for image in images.get(id(message), ())]
