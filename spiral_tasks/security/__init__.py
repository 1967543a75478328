"""Security: what protects the stored data (encryption at rest, sigils, audit)."""
