//! PostgreSQL: logical dumps, base backups, WAL archiving and point-in-time restore.
