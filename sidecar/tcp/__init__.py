"""The L4 (TCP) proxy: listeners that relay bytes to a cluster's endpoints."""
