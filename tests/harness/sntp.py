"""An SNTP server on loopback that serves this machine's time plus a chosen offset."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

NTP_EPOCH_OFFSET = 2208988800


def _ntp(ts: float) -> bytes:
    secs = ts + NTP_EPOCH_OFFSET
    return struct.pack("!II", int(secs), int((secs % 1) * 2**32))


@dataclass
class SntpServer:
    offset_s: float = 0.0
    stratum: int = 2
    answer: bool = True  # False: receive and stay silent (a firewalled server)
    port: int = 0
    # When set, the offset is read from this file at every request: the simulated
    # chronyc "steps the board's clock" by writing 0 there (this machine's clock is
    # never touched).
    offset_file: Path | None = None
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> SntpServer:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", self.port))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="sntp", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def current_offset(self) -> float:
        if self.offset_file is not None and self.offset_file.exists():
            return float(self.offset_file.read_text().strip() or 0)
        return self.offset_s

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if not ready:
                continue
            data, peer = self._sock.recvfrom(512)
            if len(data) < 48 or not self.answer:
                continue
            offset = self.current_offset()
            now = time.time() + offset
            reply = bytearray(48)
            reply[0] = (0 << 6) | (4 << 3) | 4  # LI 0, version 4, mode 4 (server)
            reply[1] = self.stratum
            reply[24:32] = data[40:48]  # originate = client's transmit
            reply[32:40] = _ntp(now)
            reply[40:48] = _ntp(time.time() + offset)
            self._sock.sendto(bytes(reply), peer)
