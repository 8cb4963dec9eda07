//! MySQL / MariaDB: logical dumps and physical (mariadb-backup) backups.
