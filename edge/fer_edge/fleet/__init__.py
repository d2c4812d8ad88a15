"""The fleet's server side: the collector that stores every kiosk's visits in one database, and
its health report."""
