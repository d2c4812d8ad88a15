"""Commands beside the camera loop: evaluation, benchmarks, and the systemd units."""
