"""Security: encryption at rest (sealing), and the keys and markers it needs."""
