"""Wire models: REST bodies and WebSocket events. Leaves: they import nothing of ours."""
