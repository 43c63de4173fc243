"""The gateway: the wire fanned out to WebSocket subscribers and the dashboard."""
