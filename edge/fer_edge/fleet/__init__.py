"""The fleet's server side, the readers: the collector that stores every kiosk's visits in one
database (SQLite or PostgreSQL), its failover, the reports' queries and the health report.
It reads what devices sent and never runs a camera."""

MAY_IMPORT = ("fer_edge.core", "fer_edge.outputs")
NEVER_IMPORT: tuple = ()
