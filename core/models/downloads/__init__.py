"""Downloads into the Hugging Face cache: the manager, the byte transfer, the trailing SHA-256 check."""
