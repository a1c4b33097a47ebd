"""One table per receiving loop from message type to handler (as SGLang's TypeBasedDispatcher): a loop
reads as receive -> dispatch, and a message of a type its table does not name is logged loudly and counted,
never dropped in silence. Exact types only: the protocol's messages are final Structs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, where: str, handlers: Mapping[type, Callable[..., Any]]) -> None:
        self.where = where
        self.handlers = dict(handlers)
        self.unknown = 0  # messages no handler takes, since start

    def __call__(self, msg: object, *args: Any) -> Any:
        """Hand `msg` (and `args`) to its type's handler; an unknown type is counted and None returned."""
        handler = self.handlers.get(type(msg))
        if handler is None:
            self.unknown += 1
            log.error(
                "%s: no handler for a %s message (%d unexpected so far); it was not acted on",
                self.where, type(msg).__name__, self.unknown,
            )  # fmt: skip
            return None
        return handler(msg, *args)
