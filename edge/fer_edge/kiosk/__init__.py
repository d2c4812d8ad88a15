"""The camera loop and what a kiosk makes of it: visits (sessions), the live state,
notifications and the annotated frame. It sends events to `core.events`' sinks, never to an
output by name: the outputs are chosen by the composition root."""

MAY_IMPORT = ("fer_edge.core", "fer_edge.model", "fer_edge.vision")
NEVER_IMPORT: tuple = ()
