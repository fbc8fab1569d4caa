-- PGMQ provides the queues. The tasker-postgres image installs the
-- extension files; this only enables it in the database.
CREATE EXTENSION IF NOT EXISTS pgmq;
