"""The pages: the device's own page and the fleet page, on one server with one set of guards
(who may connect and ask)."""

MAY_IMPORT = ("fer_edge.core", "fer_edge.vision", "fer_edge.kiosk", "fer_edge.fleet")
NEVER_IMPORT: tuple = ()
