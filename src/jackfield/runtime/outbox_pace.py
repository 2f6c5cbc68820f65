"""How many messages a connector's buffer may hold: what it delivers in a quarter lease.

Messages wait in a connector's buffer under a lease; one still waiting when the lease
runs out is claimed again, perhaps elsewhere (a wasted attempt, a duplicate). So the
buffer of a slow connector (an SMTP server taking 20 messages a second) must stay small,
while a fast one's (a broker, ``echo``) must be large, or its workers sit idle between
claims and hand-overs. ``Pace`` keeps each connector's recent time per message, measured
over whole runs of deliveries (an exponentially weighted average), and sizes its buffer
to what its workers deliver in a quarter of the lease -- never below ``floor`` (one
claim's worth) nor above ``ceiling`` (the node's in-flight limit).
"""

from __future__ import annotations

WEIGHT = 0.3  # of the newest run in the average


class Pace:
    def __init__(self, floor: int, ceiling: int, lease_seconds: float) -> None:
        self.floor = floor
        self.ceiling = max(floor, ceiling)
        self.budget = lease_seconds / 4
        self._per_message: dict[str, float] = {}
        self._room: dict[str, int] = {}

    def note(self, connector_id: str, messages: int, seconds: float, concurrency: int) -> None:
        """A worker of the connector delivered ``messages`` one after another in
        ``seconds`` (while up to ``concurrency`` workers run side by side)."""
        if messages <= 0:
            return
        per = max(seconds, 1e-9) / messages
        old = self._per_message.get(connector_id)
        per = per if old is None else old + WEIGHT * (per - old)
        self._per_message[connector_id] = per
        room = self.budget * max(1, concurrency) / per
        self._room[connector_id] = int(max(self.floor, min(self.ceiling, room)))

    def room(self, connector_id: str) -> int:
        """How many messages the connector's buffer may hold now."""
        return self._room.get(connector_id, self.floor)

    def forget(self, connector_id: str) -> None:
        """The connector's unit restarted or was removed: measure it afresh."""
        self._per_message.pop(connector_id, None)
        self._room.pop(connector_id, None)
