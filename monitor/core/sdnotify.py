"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``), spoken directly.

The protocol is one datagram per message to the AF_UNIX socket named by ``$NOTIFY_SOCKET``
(sd_notify(3)); a leading ``@`` names an abstract socket. Outside systemd the variable is unset
and every call is a no-op, so the daemon calls these unconditionally.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger(__name__)


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET") or ""
        self.address = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ours = not pid or (pid.isdigit() and int(pid) == os.getpid())
        self.watchdog_s: float | None = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and ours else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, state: str) -> bool:
        """Send ``state`` (e.g. ``READY=1``); False when not under systemd or the send failed."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(state.encode("utf-8"))
        except OSError as err:
            log.warning("sd_notify failed", state=state, error=str(err))
            return False
        return True
