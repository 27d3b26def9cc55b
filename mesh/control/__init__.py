"""The control plane (`mesh control`): rules store, per-sidecar snapshots, push, status, explain.

Pure parts: ``changes`` (apply/delete plans), ``state``, ``instances``, ``policy``,
``translate`` (rules + registry → snapshot), ``explain``, ``sidecars``. Edges: ``store_sqlite``
and ``store_consul`` (storage), ``watches`` (registry), ``push`` (rounds and wake-ups), ``api``
(HTTP), ``server`` (the process). The sidecar side of the sync protocol is
``sidecar/sources/control_plane.py``; the protocol is described in ``docs/control-plane.md``.
"""
