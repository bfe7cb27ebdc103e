"""klog's text header, the way keadm and edgecore print every log line.

k8s.io/klog/v2 (klog.go, formatHeader): `Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg`,
to stderr (keadm and edgecore keep klog's default logtostderr=true)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from typing import TextIO


def line(level: str, where: str, msg: str, stream: TextIO | None = None) -> None:
    now = datetime.now(UTC)
    out = stream or sys.stderr
    out.write(f"{level}{now:%m%d %H:%M:%S.%f} {os.getpid():>7} {where}] {msg}\n")
    out.flush()


class Steps:
    """keadm's common.Step (keadm/cmd/keadm/app/cmd/common/step.go@v1.13.0, lines 34-38):
        s.n++; format = strconv.Itoa(s.n) + ". " + format; klog.InfoDepth(2, ...)
    a running number (a step skipped shifts the later ones), reported at the caller."""

    def __init__(self) -> None:
        self.n = 0

    def printf(self, where: str, text: str) -> None:
        self.n += 1
        line("I", where, f"{self.n}. {text}")
