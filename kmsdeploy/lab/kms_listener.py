"""TCP listeners standing in for sppsvc's KMS port on each simulated host (DESIGN "Lab contract").

"The lab listens on 1688 for a host whose KMS service is running and its firewall rule
enabled": for every lab host, :class:`KmsListeners` keeps a listening socket on
``(host address, port)`` exactly while the Windows model says the KMS service listens
there (:meth:`kmsdeploy.lab.model.LabModel.kms_endpoint`: a licensed KMS host, sppsvc
running, effective listening port, and an enabled inbound allow rule for that port —
``SPPSVC-In-TCP`` or a rule of its own). Connections are accepted and closed: the lab
speaks no KMS protocol, a TCP connect is what health probes and clients' reachability
checks need.

A port another process already holds on that address (another lab on the same loopback
address) is reported in :meth:`status` as ``conflict`` and retried on the next sync; it
never stops the lab.
"""
from __future__ import annotations

import contextlib
import socket
import threading
from typing import Callable, Iterable, Mapping


class KmsListeners:
    """Open/close one listening socket per host as the model's state changes."""

    def __init__(self, hosts: Mapping[str, str], endpoint: Callable[[str], int | None]):
        #: host name -> loopback address
        self.hosts = dict(hosts)
        self._endpoint = endpoint
        self._socks: dict[str, tuple[int, socket.socket]] = {}
        self._conflicts: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def sync(self, names: Iterable[str] | None = None) -> None:
        """Re-read the model for ``names`` (default: every host) and open/close listeners."""
        with self._lock:
            for name in list(self.hosts) if names is None else [n for n in names if n in self.hosts]:
                try:
                    port = self._endpoint(name)
                except (KeyError, OSError, ValueError):  # not seeded yet / unreadable state: not listening
                    port = None
                self._apply(name, port)

    def _apply(self, name: str, port: int | None) -> None:
        have = self._socks.get(name)
        if have and have[0] == port:
            return
        if have:
            self._close(self._socks.pop(name)[1])
        self._conflicts.pop(name, None)
        if port is None:
            return
        s = socket.socket(socket.AF_INET6 if ":" in self.hosts[name] else socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.hosts[name], port))
            s.listen(64)
        except OSError as exc:
            s.close()
            self._conflicts[name] = (port, exc.strerror or str(exc))
            return
        self._socks[name] = (port, s)
        threading.Thread(target=self._accept, args=(s,), name=f"kms-{name}", daemon=True).start()

    @staticmethod
    def _accept(s: socket.socket) -> None:
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            c.close()

    @staticmethod
    def _close(s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone keeps it listening
        s.close()

    def status(self) -> dict[str, dict]:
        """host -> {"address", "port", "listening": bool, "error"?} for hosts meant to listen."""
        with self._lock:
            out = {n: {"address": self.hosts[n], "port": p, "listening": True} for n, (p, _) in self._socks.items()}
            for n, (p, err) in self._conflicts.items():
                out[n] = {"address": self.hosts[n], "port": p, "listening": False, "error": f"conflict: {err}"}
            return out

    def close(self) -> None:
        with self._lock:
            for _, s in self._socks.values():
                self._close(s)
            self._socks.clear()
            self._conflicts.clear()
