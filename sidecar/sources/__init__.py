"""Config sources: where the sidecar's snapshots come from, behind one interface (``base``).

``static_file.StaticFileSource`` (``--config FILE``), ``registry.RegistrySource`` (the registry
alone) and ``control_plane.ControlPlaneSource`` (`mesh control`); ``defaults`` builds the
standard listener layout from the sidecar's flags. Import each source from its own module: the
registry and control-plane ones pull in aiohttp and the registry client, which a sidecar fed by
a file does not need.
"""
