"""Socket rules on real ZeroMQ sockets."""

from __future__ import annotations

import threading
import time

import zmq

from bench.stack import free_ports
from broker.sockets import await_subscriber, closing_context, make_socket


def test_a_publisher_waits_for_its_subscriber_and_then_nothing_it_sends_is_lost() -> None:
    (port,) = free_ports(1)
    address = f"tcp://127.0.0.1:{port}"
    with closing_context() as ctx:
        pub = make_socket(ctx, zmq.XPUB)
        pub.connect(address)
        # Nobody is bound there yet: the wait ends only when told to stop.
        stop = threading.Event()
        threading.Timer(0.5, stop.set).start()
        assert await_subscriber(pub, stop, address) is False

        # The subscriber binds later, as a broker does when it starts after its workers, and reads
        # its socket all along as the broker's loop does (a socket nobody reads never takes the
        # connection in).
        received: list[list[bytes]] = []
        done = threading.Event()

        def subscriber() -> None:
            sub = make_socket(ctx, zmq.XSUB)
            sub.bind(address)
            sub.send(b"\x01")
            while not done.is_set():
                if sub.poll(20):
                    received.append(sub.recv_multipart())
            sub.close()

        thread = threading.Thread(target=subscriber)
        thread.start()
        try:
            stop = threading.Event()
            limit = threading.Timer(10, stop.set)  # a wait that never ends fails here instead of hanging
            limit.start()
            assert await_subscriber(pub, stop, address) is True
            limit.cancel()
            # The very first message after the wait arrives; a plain PUB loses what it sends in the
            # milliseconds between the connection and the subscription.
            pub.send_multipart([b"topic", b"first"])
            for _ in range(250):
                if received:
                    break
                time.sleep(0.02)
        finally:
            done.set()
            thread.join()
        assert received == [[b"topic", b"first"]]
