"""Finding and fetching models: the hub, the catalog, remote headers, downloads, the local library, the starter model."""
