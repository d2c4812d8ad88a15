"""The camera loop and what a kiosk makes of it: visits (sessions), the live state,
notifications and the annotated frame."""
