"""The simulated Keap's REST v2 side, over the same data as its XML-RPC side."""
