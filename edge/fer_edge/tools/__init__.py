"""Commands beside the camera loop: evaluation, benchmarks, the demo and the systemd units."""

MAY_IMPORT = ("fer_edge.core", "fer_edge.model", "fer_edge.vision", "fer_edge.kiosk", "fer_edge.deploy")
NEVER_IMPORT: tuple = ()
