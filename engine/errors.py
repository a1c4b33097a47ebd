"""The one exception type for bad input, so every caller can map it to a 4xx naming the field."""


class InvalidInput(ValueError):
    """A request field is unusable; `field` names it and `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class CheckpointError(RuntimeError):
    """A checkpoint could not be resolved or loaded; the message says what to do instead."""
