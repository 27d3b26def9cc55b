"""Process plumbing shared by every long-running component: logs, ops endpoints, signals."""
