"""Mesh security: workload identities, the mesh CA, workload credentials and authorization (pure cores).

- ``identity``: SPIFFE IDs ``spiffe://<trust-domain>/ns/<namespace>/sa/<service>``.
- ``ca``: the control plane's certificate authority (root on disk, CSRs signed into short-lived leaves).
- ``workload``: what a sidecar holds: its key and CSR, when to rotate, TLS contexts, peer verification.
- ``authz``: Istio ``AuthorizationPolicy`` evaluation and ``PeerAuthentication`` mode resolution.
- ``jwt``: ``RequestAuthentication``'s JWT verification (end-user authentication).

Nothing here imports the control plane's server code or the sidecar: both import these.
"""
