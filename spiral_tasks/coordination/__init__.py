"""Serializing critical sections: a lock per tenant and a fenced commit."""
