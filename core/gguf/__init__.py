"""Reading GGUF model headers (local files or remote header bytes) into ModelInfo. A leaf: imports nothing from core."""
