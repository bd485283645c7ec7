-- When a worker last took its advisory lock. A server restart drops every lock at once; a
-- worker whose lock is missing counts as dead only if it had taken it since the server
-- started (its session then died: the process did), else only once its heartbeat is late.
ALTER TABLE threadline.workers ADD COLUMN locked_at timestamptz;
