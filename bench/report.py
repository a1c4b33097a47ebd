"""The harness's result: summaries of the raw records, as JSON and as a Markdown table."""

from __future__ import annotations

import msgspec

from bench.load import StreamRecord, median, percentile
from bench.machine import Machine
from engine.checkpoint import VoiceShape


class Level(msgspec.Struct, kw_only=True):
    concurrency: int
    requests: int
    errors: int
    first_audio_p50: float | None
    first_audio_p95: float | None
    rtf_p50: float | None  # per stream: wall seconds per audio second
    rtf_p95: float | None
    audio_per_wall: float  # aggregate: audio seconds delivered per wall second
    wall_seconds: float


class Comparison(msgspec.Struct, kw_only=True):
    """Medians over the same texts and seeds, run alternately in the same session."""

    a: str
    b: str
    a_first_audio: float | None
    b_first_audio: float | None
    first_audio_ratio: float | None  # a / b, median of per-text ratios
    a_rtf: float | None
    b_rtf: float | None
    rtf_ratio: float | None


class Transit(msgspec.Struct, kw_only=True):
    """Per chunk, arrival at the client − end of its vocoding, in ms."""

    sse_p50: float | None
    sse_p95: float | None
    zmq_p50: float | None
    zmq_p95: float | None
    gateway_added_p50: float | None  # sse_p50 − zmq_p50: the gateway's share (HTTP, base64 WAV, SSE)


class BenchResult(msgspec.Struct, kw_only=True):
    date: str
    machine: Machine
    weights: str
    checkpoint: str
    device: str
    slots: int
    tokens: int  # max_new_tokens per request
    texts: list[str]
    valid_token_share: float | None  # speech tokens / raw T3 tokens (random weights: far below 1)
    levels: list[Level]
    transit: Transit
    pipelined_vs_sequential: Comparison | None
    regular_vs_streaming: Comparison | None
    records: list[StreamRecord]
    capacity: int = 1  # jobs per slot at once; 0: a running server's, not known here
    voice: VoiceShape | None = None  # the built-in voice's prompt lengths (None: a remote server's, or older)


def level(records: list[StreamRecord], concurrency: int, wall: float) -> Level:
    ok = [r for r in records if r.error is None]
    firsts = [r.first_audio for r in ok if r.first_audio is not None]
    rtfs = [r.rtf for r in ok if r.rtf is not None]
    return Level(
        concurrency=concurrency, requests=len(records), errors=len(records) - len(ok),
        first_audio_p50=percentile(firsts, 50), first_audio_p95=percentile(firsts, 95),
        rtf_p50=percentile(rtfs, 50), rtf_p95=percentile(rtfs, 95),
        audio_per_wall=sum(r.audio_seconds for r in ok) / wall if wall else 0.0, wall_seconds=wall,
    )  # fmt: skip


def compare(a: list[StreamRecord], b: list[StreamRecord]) -> Comparison | None:
    """Pairs records by text; None when either side is missing."""
    pairs = [(x, y) for x in a for y in b if x.text == y.text and x.error is None and y.error is None]
    if not pairs:
        return None

    def ratios(attr: str) -> float | None:
        values = [getattr(x, attr) / getattr(y, attr) for x, y in pairs if getattr(x, attr) and getattr(y, attr)]
        return median(values)

    return Comparison(
        a=a[0].way, b=b[0].way,
        a_first_audio=median([x.first_audio for x, _ in pairs if x.first_audio is not None]),
        b_first_audio=median([y.first_audio for _, y in pairs if y.first_audio is not None]),
        first_audio_ratio=ratios("first_audio"),
        a_rtf=median([x.rtf for x, _ in pairs if x.rtf is not None]),
        b_rtf=median([y.rtf for _, y in pairs if y.rtf is not None]),
        rtf_ratio=ratios("rtf"),
    )  # fmt: skip


def transit(sse: list[StreamRecord], zmq: list[StreamRecord]) -> Transit:
    s = [t for r in sse for t in r.transit_ms]
    z = [t for r in zmq for t in r.transit_ms]
    s50, z50 = percentile(s, 50), percentile(z, 50)
    return Transit(
        sse_p50=s50, sse_p95=percentile(s, 95), zmq_p50=z50, zmq_p95=percentile(z, 95),
        gateway_added_p50=s50 - z50 if s50 is not None and z50 is not None else None,
    )  # fmt: skip


def valid_share(records: list[StreamRecord]) -> float | None:
    generated = sum(r.tokens_generated for r in records if r.error is None)
    return sum(r.valid_tokens for r in records if r.error is None) / generated if generated else None


def fmt(x: float | None, unit: str = "", digits: int = 2) -> str:
    """A figure for a Markdown table; — when it is missing."""
    return "—" if x is None else f"{x:.{digits}f}{unit}"


def voice_line(v: VoiceShape) -> str:
    return (
        f"Built-in voice: {v.t3_prompt_tokens} T3 prompt tokens, S3Gen prompt of {v.s3gen_prompt_tokens} tokens / "
        f"{v.s3gen_prompt_frames} mel frames (a real 10 s voice: 150, 250 / 500)."
    )


def markdown(result: BenchResult, plots: dict[str, str]) -> str:
    r = result
    lines = [
        f"# Bench {r.date} — {r.machine.describe()}",
        "",
        f"Checkpoint `{r.checkpoint}`, **weights {r.weights}**"
        + (" (the audio is noise; compute is real)" if r.weights == "random" else "")
        + f", device {r.device}, {r.slots} slot(s) of capacity {r.capacity or 'as configured'}, "
        f"max_new_tokens {r.tokens}, {len(r.texts)} texts.",
    ]
    if r.voice is not None:
        lines.append(voice_line(r.voice))
    if r.valid_token_share is not None:
        lines.append(f"Valid speech tokens among T3's raw tokens: {100 * r.valid_token_share:.0f}%.")
    lines += [
        "",
        "| concurrency | requests | errors | first audio p50 | p95 | per-stream RTF p50 | p95 | audio s per wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lv in r.levels:
        lines.append(
            f"| {lv.concurrency} | {lv.requests} | {lv.errors} | {fmt(lv.first_audio_p50, ' s')} "
            f"| {fmt(lv.first_audio_p95, ' s')} | {fmt(lv.rtf_p50)} | {fmt(lv.rtf_p95)} | {fmt(lv.audio_per_wall)} |"
        )
    errors: dict[str, int] = {}
    for rec in r.records:
        if rec.error:
            key = f"{rec.way} at concurrency {rec.concurrency}: {rec.error}"
            errors[key] = errors.get(key, 0) + 1
    if errors:
        lines += ["", "Errors (requests the server refused or ended with an error):"]
        lines += [f"- {n} × {what}" for what, n in errors.items()]
    t = r.transit
    lines += [
        "",
        "Per chunk, vocoder → client: SSE p50 "
        f"{fmt(t.sse_p50, ' ms')} (p95 {fmt(t.sse_p95, ' ms')}), ZeroMQ client p50 {fmt(t.zmq_p50, ' ms')} "
        f"(p95 {fmt(t.zmq_p95, ' ms')}); the gateway adds {fmt(t.gateway_added_p50, ' ms')}.",
        "",
        "| comparison (same texts and seeds, alternating) | first audio | | ratio | RTF | | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in (r.pipelined_vs_sequential, r.regular_vs_streaming):
        if c is not None:
            lines.append(
                f"| {c.a} vs {c.b} | {fmt(c.a_first_audio, ' s')} | {fmt(c.b_first_audio, ' s')} "
                f"| {fmt(c.first_audio_ratio)} | {fmt(c.a_rtf)} | {fmt(c.b_rtf)} | {fmt(c.rtf_ratio)} |"
            )
    lines += [
        "",
        "Ways: `sse` = the pipeline through the gateway; `inprocess` = one process, T3 then S3Gen per chunk "
        "(the seed's design); `regular` = `POST /synthesize`, whose first audio is the whole WAV.",
        "",
    ]
    lines += [f"![{name}]({path})" for name, path in plots.items()]
    return "\n".join(lines) + "\n"
