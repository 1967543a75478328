"""Security: sigils as capabilities (and, beside them, sealing and the audit log)."""
