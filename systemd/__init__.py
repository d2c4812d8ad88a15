"""The systemd unit and example config, installed as package data for `fer-edge service install`."""
