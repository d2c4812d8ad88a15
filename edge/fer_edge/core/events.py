"""Where the camera loop's events go: the `EventSink` contract every output meets (the log,
stdout, MQTT), and `Sinks`, the run's outputs as one, so that the loop, the watchdog and the
status page ask one object how the outputs are doing. It lives on the ground floor because
the loop that sends and the outputs that receive sit on floors that must not import each other.
"""

from typing import Dict, Iterable, Iterator, List, Protocol, Sequence

from .records import RunStats, TrackUpdate, View, Visit


class EventSink(Protocol):
    """An output. A class that names `EventSink` as its base gets these do-nothing methods and
    overrides what it needs."""

    def update(self, update: TrackUpdate) -> None:
        """One track update (rate-limited per face)."""
        return None

    def session(self, visit: Visit) -> None:
        """One finished visit."""
        return None

    def view(self, view: View) -> None:
        """Who is in view now: when the count changes, else once per log interval."""
        return None

    def stats(self, stats: RunStats) -> None:
        """The periodic stats message."""
        return None

    def model_changed(self, name: str, labels: Sequence[str]) -> None:
        """Another model runs from now on (a deployment): its name and labels, as a fresh start would have them."""
        return None

    def health(self) -> dict:
        """What the status page, the stats message and the run's summary show of this sink."""
        return {}

    def alive(self) -> bool:
        """Every thread this sink relies on still runs (the watchdog stops when one has died)."""
        return True

    def close(self, summary: dict) -> None:
        """The run ends; `summary` has frames, faces and updates."""
        return None


class Sinks:
    """The run's outputs as one sink: every event goes to each, in order."""

    def __init__(self, sinks: Iterable[EventSink] = ()):
        self.sinks: List[EventSink] = list(sinks)

    def __iter__(self) -> Iterator[EventSink]:
        return iter(self.sinks)

    def __len__(self) -> int:
        return len(self.sinks)

    def update(self, update: TrackUpdate) -> None:
        for sink in self.sinks:
            sink.update(update)

    def session(self, visit: Visit) -> None:
        for sink in self.sinks:
            sink.session(visit)

    def view(self, view: View) -> None:
        for sink in self.sinks:
            sink.view(view)

    def stats(self, stats: RunStats) -> None:
        for sink in self.sinks:
            sink.stats(stats)

    def model_changed(self, name: str, labels: Sequence[str]) -> None:
        for sink in self.sinks:
            sink.model_changed(name, labels)

    def health(self) -> Dict[str, object]:
        """What the sinks report of themselves (log state, broker state, backlog), merged."""
        merged: Dict[str, object] = {}
        for sink in self.sinks:
            merged.update(sink.health())
        return merged

    def alive(self) -> bool:
        """Every sink's threads still run (the watchdog and /healthz follow this)."""
        return all(sink.alive() for sink in self.sinks)

    def close(self, summary: dict) -> None:
        for sink in self.sinks:
            sink.close(summary)
