"""Tool plumbing (``cli``, ``checks``), ``transxnet_mm::`` config bases
(``config_lookup``) and the workarounds for the pinned stack (``compat``)."""
