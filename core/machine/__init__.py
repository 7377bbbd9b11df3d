"""What a computer offers a model: host, GPUs, the llama.cpp build, memory bandwidth, RPC devices."""
