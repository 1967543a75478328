"""The audit log: a per-tenant, hash-chained, signed record of every operation.

    actor.py     who acts (task id, worker): set by the task layer, read by the engine
    chain.py     an entry's hash and signature, the head and the checkpoint
    journal.py   the entries a commit appends (and the retention trim), staged with it
    verify.py    reading a tenant's log back and checking its chain
"""
