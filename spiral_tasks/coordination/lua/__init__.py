"""The Redis coordinator's scripts: taking a lock (acquire.lua), the fenced commit
(commit.lua, which applies writes with the storage backend's writes.lua) and the
optimistic commit (optimistic.lua), which on refusal may take the lock itself; both
lock-taking scripts read what the section needs with reads.lua."""
