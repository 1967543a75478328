"""The Redis coordinator's scripts: taking a lock (acquire.lua) and the fenced commit
(commit.lua, which applies writes with the storage backend's writes.lua)."""
