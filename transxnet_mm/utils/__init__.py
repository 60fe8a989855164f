"""Tool plumbing (argument parsing, data checks), our configs as bases of a
user's own (``config_lookup``), and the one module of workarounds for the
pinned stack (``compat``)."""
