"""Every message on the wire, as msgspec Structs in one tagged union, plus the framing rules.

A ZeroMQ message is: [topic] + msgpack header + raw bulk frames. The header says how many bulk frames
follow and what they hold (token ids, PCM, tensors); bulk data is never msgpack'd or pickled, so a
chunk of PCM is one memcpy on each side. The topic frame exists only on the results channel, where it
is the receiving client's id (PUB/SUB filters on it).
"""

from __future__ import annotations

import enum
import types
from typing import Literal, NamedTuple

import msgspec
import numpy as np

from engine.metrics import Metrics, Weights
from engine.params import SynthesisParams

PROTOCOL_VERSION = 3  # 2: T3 tells S3Gen its load (Load); 3: a worker says Goodbye before it exits

Role = Literal["t3", "s3gen"]


class ErrorCode(enum.StrEnum):
    """Why a job (or a request) ended without its audio: the `code` of Error and Failed, of the client's
    JobError, and of the HTTP, SSE and WebSocket error bodies. The values are the wire strings."""

    INVALID_INPUT = "invalid_input"  # a request field is unusable; `field` names it
    NOT_FOUND = "not_found"  # a named voice does not exist (gateway only)
    BUSY = "busy"  # every slot is busy and the queue is full
    TIMEOUT = "timeout"  # no slot became free in time, or the server went silent on the job
    WORKER_LOST = "worker_lost"  # a worker of the job's slot died after the job's audio had begun
    BROKER_LOST = "broker_lost"  # the broker is unreachable, silent, or restarted
    CANCELLED = "cancelled"  # by the client
    GAP = "gap"  # a chunk went missing on the way
    INTERNAL = "internal"  # the model side raised
    UNSUBSCRIBED = "unsubscribed"  # frontend reply: the broker cannot reach the client's results yet
    UNAUTHORIZED = "unauthorized"  # gateway: a missing or wrong API key
    METHOD_NOT_ALLOWED = "method_not_allowed"  # gateway: the route exists, not with this method
    PAYLOAD_TOO_LARGE = "payload_too_large"  # gateway: the request body is over its limit
    # WebSocket: a request sent while the connection's previous one runs. Not `busy`: the server has room,
    # and a client retrying on `busy` would resend at once instead of waiting for its own `done`.
    CONNECTION_BUSY = "connection_busy"

    @property
    def status(self) -> int:
        """The HTTP status the gateway answers with."""
        return _ERROR_TRAITS[self].status

    @property
    def retryable(self) -> bool:
        """Whether the same request, sent again, may well succeed."""
        return _ERROR_TRAITS[self].retryable


class _ErrorTraits(NamedTuple):
    status: int
    retryable: bool


# Read-only: no module-level mutable state. Every member has a row (tests check).
_ERROR_TRAITS = types.MappingProxyType(
    {
        ErrorCode.INVALID_INPUT: _ErrorTraits(422, False),
        ErrorCode.NOT_FOUND: _ErrorTraits(404, False),
        ErrorCode.BUSY: _ErrorTraits(503, True),
        ErrorCode.TIMEOUT: _ErrorTraits(504, True),
        ErrorCode.WORKER_LOST: _ErrorTraits(503, False),  # its stream was under way: not idempotent
        ErrorCode.BROKER_LOST: _ErrorTraits(503, True),
        ErrorCode.CANCELLED: _ErrorTraits(499, False),
        ErrorCode.GAP: _ErrorTraits(500, False),
        ErrorCode.INTERNAL: _ErrorTraits(500, False),
        ErrorCode.UNSUBSCRIBED: _ErrorTraits(503, True),
        ErrorCode.UNAUTHORIZED: _ErrorTraits(401, False),
        ErrorCode.METHOD_NOT_ALLOWED: _ErrorTraits(405, False),
        ErrorCode.PAYLOAD_TOO_LARGE: _ErrorTraits(413, False),
        ErrorCode.CONNECTION_BUSY: _ErrorTraits(409, False),
    }
)


class TensorSpec(msgspec.Struct, frozen=True, array_like=True):
    """Describes one raw frame: a C-contiguous array of `dtype` (numpy name) and `shape`."""

    name: str
    dtype: str
    shape: tuple[int, ...]


class Span(msgspec.Struct, frozen=True, array_like=True):
    """CLOCK_MONOTONIC seconds (system-wide on Linux, so comparable across a slot's two processes)."""

    start: float
    end: float


# -- client → broker (frontend) ------------------------------------------------------------------


class Submit(msgspec.Struct, tag="submit", kw_only=True):
    job: str
    client: str  # the results topic the client subscribed to
    text: str
    params: SynthesisParams = SynthesisParams()
    stream: bool = True  # False: regular synthesis, one chunk per text piece
    has_reference: bool = False  # reference audio bytes follow as one raw frame


class Cancel(msgspec.Struct, tag="cancel", kw_only=True):
    job: str


class Ping(msgspec.Struct, tag="ping", kw_only=True):
    client: str


class StatsRequest(msgspec.Struct, tag="stats_request"):
    pass


# -- broker → client (frontend replies) ------------------------------------------------------------


class Pong(msgspec.Struct, tag="pong", kw_only=True):
    epoch: str  # changes when the broker restarts: the client's jobs in flight are lost
    subscribed: bool  # the broker's XPUB has seen the client's subscription


class SlotStats(msgspec.Struct, kw_only=True):
    name: str
    live: bool
    capacity: int
    in_flight: int
    completed: int
    failed: int
    mean_first_chunk_latency: float | None
    mean_rtf: float | None
    device: str = ""
    weights: Weights | None = None  # None until the slot's T3 worker has registered


class Stats(msgspec.Struct, tag="stats", kw_only=True):
    epoch: str
    slots: list[SlotStats]
    queue_depth: int
    queue_limit: int
    submitted: int
    completed: int
    failed: int
    rejected_busy: int
    # Messages of a type the receiving loop has no handler for (logged as errors): 0 unless a peer misbehaves.
    unexpected_messages: int = 0


# -- broker ↔ workers (backend) ---------------------------------------------------------------------


class Ready(msgspec.Struct, tag="ready", kw_only=True):
    version: int
    role: Role
    slot: str
    capacity: int
    device: str
    weights: Weights
    pid: int


class Heartbeat(msgspec.Struct, tag="heartbeat", kw_only=True):
    epoch: str = ""  # set by the broker; empty from workers


class Register(msgspec.Struct, tag="register", kw_only=True):
    """The broker does not know the sender (it restarted, or expired the worker): send Ready again."""

    epoch: str


class Job(msgspec.Struct, tag="job", kw_only=True):
    """A Submit as dispatched to a T3 worker; `attempt` grows on each re-dispatch."""

    job: str
    client: str
    attempt: int
    epoch: str
    text: str
    params: SynthesisParams
    stream: bool
    has_reference: bool


class Failed(msgspec.Struct, tag="failed", kw_only=True):
    """T3 → broker: the job could not run (bad input found by the model side, or an exception)."""

    job: str
    attempt: int
    code: ErrorCode
    message: str
    field: str | None = None


class Goodbye(msgspec.Struct, tag="goodbye", kw_only=True):
    """Worker → broker, its last message: it is exiting (its loop crashed, or it was told to stop). The
    broker treats it as lost now: its slot's jobs are re-dispatched or end with `worker_lost` at once,
    not after the heartbeat expiry."""

    reason: str


# -- T3 → S3Gen (the slot's PUSH/PULL pipe) --------------------------------------------------------


class Tokens(msgspec.Struct, tag="tokens", kw_only=True):
    """One chunk of valid speech tokens (int32 raw frame), plus the voice reference on seq 1."""

    job: str
    client: str
    attempt: int
    seq: int
    final: bool
    generated: int
    seed: int
    accepted_at: float  # monotonic: T3 took the job; job metrics are measured from here
    span: Span  # T3's work on this chunk
    stream: bool = True
    reference: list[TensorSpec] = []  # S3Gen reference tensors (seq 1 only), one raw frame each


class Abort(msgspec.Struct, tag="abort", kw_only=True):
    """T3 → S3Gen: the job stopped (cancel, failure); drop its state."""

    job: str


class Load(msgspec.Struct, tag="load", kw_only=True):
    """T3 → S3Gen, whenever it changes: the jobs T3 is decoding. While T3 has none, its share of the
    machine is idle and S3Gen may use it."""

    running: int


# -- S3Gen / broker → client (results channel, topic = client id) ---------------------------------


class Accepted(msgspec.Struct, tag="accepted", kw_only=True):
    job: str
    queued: bool  # waiting for a free slot
    slot: str | None = None


class Audio(msgspec.Struct, tag="audio", kw_only=True):
    """One chunk of float32 mono PCM (one raw frame)."""

    job: str
    attempt: int
    slot: str
    seq: int
    final: bool
    tokens: int
    sample_rate: int
    metrics: Metrics
    t3_span: Span
    s3gen_span: Span


class Done(msgspec.Struct, tag="done", kw_only=True):
    job: str
    attempt: int
    slot: str
    chunks: int
    metrics: Metrics


class Error(msgspec.Struct, tag="error", kw_only=True):
    job: str
    code: ErrorCode  # decoding refuses a code not in ErrorCode
    message: str
    field: str | None = None
    retryable: bool = False  # always code.retryable (set below); on the wire for readers without the enum
    attempt: int = 0
    slot: str | None = None

    def __post_init__(self) -> None:
        self.code = ErrorCode(self.code)  # a bare string from the constructor is checked too
        self.retryable = self.code.retryable


Message = (
    Submit
    | Cancel
    | Ping
    | StatsRequest
    | Pong
    | Stats
    | Ready
    | Heartbeat
    | Register
    | Job
    | Failed
    | Goodbye
    | Tokens
    | Abort
    | Load
    | Accepted
    | Audio
    | Done
    | Error
)

Frame = bytes | memoryview


class ProtocolError(ValueError):
    """A frame that is not a message of this protocol."""


class Codec:
    """Encoder and decoder for the union; one per socket-owning thread (msgspec's are not shared)."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(Message)

    def encode(self, msg: Message, *bulk: Frame) -> list[Frame]:
        return [self._encoder.encode(msg), *bulk]

    def decode(self, frames: list[Frame]) -> tuple[Message, list[Frame]]:
        """Header → message; the rest are its bulk frames."""
        if not frames:
            raise ProtocolError("empty message")
        try:
            return self._decoder.decode(frames[0]), list(frames[1:])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ProtocolError(str(exc)) from exc


def array_frame(array: np.ndarray) -> tuple[TensorSpec, memoryview]:
    array = np.ascontiguousarray(array)
    return TensorSpec("", array.dtype.str, tuple(array.shape)), memoryview(array).cast("B")


def frame_array(spec: TensorSpec, frame: Frame) -> np.ndarray:
    """A read-only view on the frame (zero copy); copy it before writing."""
    array = np.frombuffer(frame, dtype=np.dtype(spec.dtype))
    expected = int(np.prod(spec.shape)) if spec.shape else 1
    if array.size != expected:
        raise ProtocolError(f"frame {spec.name!r} holds {array.size} items, header says {spec.shape}")
    return array.reshape(spec.shape)
