"""`mesh up --demo`: a Bookinfo-like set of workloads, each a real process behind its own `mesh sidecar`."""
