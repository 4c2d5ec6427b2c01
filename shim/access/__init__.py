"""Who may call: local keys (pure checks) and per-key rates (pure policy, store-backed enforcer)."""
