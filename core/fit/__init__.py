"""Whether and how a model fits a machine: bytes per device, the planner, speed, llama.cpp's dry run, the user's choice."""
