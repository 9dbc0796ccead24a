"""The hot path: balances in Redis (atomic, shared by replicas) and in process memory (read by Check)."""
