"""Node ids: which process a unit row or an inbound lease belongs to.

A node is one process running the runtime, named ``hostname:pid``. Nodes sharing a
database are assumed to have distinct hostnames, and the processes of one hostname to
share one PID space (one machine, or one container with its own hostname). Then a node
can tell, without waiting for any timeout, that another node *of its own hostname* has
ended: its pid names no process any more (``jackfield serve`` killed with SIGKILL, or by
the OOM killer, and started again). Its leases may be taken over at once and its unit
rows no longer say it runs anything.

Should the assumption not hold (two machines with one hostname, containers on the
host's network, which see the host's hostname but have PID spaces of their own), a
live node may be judged ended: its lease is taken over, which the lease's generation
fences (its later commits are refused, nothing is written twice), and the units move
between the nodes more often than they should. Give each node its own hostname.

A pid that names a process (the old one's pid reused by another process, or a process
of another user) proves nothing: such a node is left to its lease's TTL.
"""

from __future__ import annotations

import os
import socket


def node_id() -> str:
    """This process, as ``hostname:pid`` (shown as a unit's ``node``; owns leases)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def ended_here(node: str) -> bool:
    """``True`` when ``node`` is a process of this hostname that no longer exists.

    ``False`` whenever that cannot be told: another hostname, this process, a name not
    of the form ``hostname:pid``, a platform without POSIX signals (on Windows
    ``os.kill`` would terminate the process), or a pid naming some live process.
    """
    host, sep, pid_text = node.rpartition(":")
    if not sep or os.name != "posix" or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid <= 0 or pid == os.getpid() or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)  # signal 0: is there such a process? (nothing is sent)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists (another user's)
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process killed but not yet reaped by its parent still answers signal 0: on
    Linux, its state in ``/proc`` says it is a zombie (elsewhere: not known, ``False``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (command) state ...": the command may hold spaces and parentheses
            return stat.read().rpartition(b")")[2].split()[:1] == [b"Z"]
    except OSError:
        return False


__all__ = ["ended_here", "node_id"]
