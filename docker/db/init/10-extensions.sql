-- Loaded into template1 and the application database when a cluster is created.
CREATE EXTENSION IF NOT EXISTS pgmq;
