"""Ending a threaded paho client in tests without leaking its sockets."""

from __future__ import annotations

import paho.mqtt.client as paho


def release(client: paho.Client, *, goodbye: bool = True) -> None:
    """Stop the network thread, say goodbye (or, with goodbye=False, vanish so the will
    fires), and close paho's wake-up socket pair.

    loop_start() opens a socket pair that paho closes only in Client.__del__. A client
    kept alive by its own callbacks is freed by the cycle collector, which may finalize
    the two sockets before the client: they warn "unclosed socket", and under
    filterwarnings=error that fails whichever test happens to be running.
    """
    client.loop_stop()
    if goodbye:
        client.disconnect()
    client._reset_sockets()  # the only way to close the pair before __del__
