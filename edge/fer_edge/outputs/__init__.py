"""Where results go: the one SQLite store, the sinks (log, stdout), the outbox and MQTT, the
visit reports and the fleet database layer."""
