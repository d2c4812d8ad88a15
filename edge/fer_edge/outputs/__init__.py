"""Where a device's results go: the one SQLite store, the sinks (log, stdout), the outbox,
MQTT, its broker and Home Assistant's discovery. Writers only: they receive records and know
neither the camera loop nor the camera."""

MAY_IMPORT = ("fer_edge.core",)
NEVER_IMPORT: tuple = ()
