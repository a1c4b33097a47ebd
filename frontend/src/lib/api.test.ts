// @vitest-environment happy-dom
// The API client's event handling, against a fetch that replays what the gateway sends.
import { describe, expect, it, vi } from "vitest";
import { type AudioChunk, ChatterboxAPI, type ChunkMetrics, type ErrorBody, errorMessage, formData } from "./api";

function sseResponse(body: string, status = 200): Response {
  return new Response(body, { status, headers: { "content-type": "text/event-stream" } });
}

const chunk = (id: number) =>
  `event: audio_chunk\nid: ${id}\ndata: ${JSON.stringify({
    chunk_id: id,
    audio_chunk: "UklGRg==",
    sample_rate: 24000,
    metrics: { first_chunk_latency: 0.5, total_latency: id, rtf: 1, total_audio_duration: id, chunks_generated: id },
  })}\n\n`;

function run(api: ChatterboxAPI) {
  const seen = { chunks: [] as AudioChunk[], metrics: [] as ChunkMetrics[], done: null as unknown, errors: [] as string[] };
  const handle = api.synthesizeStream({ text: "hi", chunk_size: 25 }, undefined, {
    onChunk: (c) => seen.chunks.push(c),
    onMetrics: (m) => seen.metrics.push(m),
    onComplete: (d) => (seen.done = d),
    onError: (e) => seen.errors.push(e),
  });
  return { seen, handle };
}

describe("synthesizeStream", () => {
  it("delivers chunks and metrics in order, then completes once", async () => {
    const body = `: keep-alive\n\n${chunk(1)}${chunk(2)}event: done\nid: 3\ndata: {"message": "Streaming complete", "total_chunks": 2}\n\n`;
    const fetchImpl = vi.fn(async () => sseResponse(body));
    const { seen, handle } = run(new ChatterboxAPI("http://gw", undefined, fetchImpl));
    await handle.finished;
    expect(seen.chunks.map((c) => c.chunk_id)).toEqual([1, 2]);
    expect(seen.metrics.map((m) => m.chunks_generated)).toEqual([1, 2]);
    expect(seen.done).toEqual({ message: "Streaming complete", total_chunks: 2 });
    expect(seen.errors).toEqual([]);
    expect(fetchImpl).toHaveBeenCalledTimes(1); // never retried
    const [url, init] = fetchImpl.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe("http://gw/synthesize-stream");
    expect((init.body as FormData).get("chunk_size")).toBe("25");
  });

  it("reports an error event once and nothing after it", async () => {
    const body = `${chunk(1)}event: error\nid: 2\ndata: {"error": "worker lost", "code": "worker_lost"}\n\n${chunk(3)}`;
    const { seen, handle } = run(new ChatterboxAPI("", undefined, async () => sseResponse(body)));
    await handle.finished;
    expect(seen.chunks.map((c) => c.chunk_id)).toEqual([1]);
    expect(seen.errors).toEqual(["worker lost"]);
    expect(seen.done).toBeNull();
  });

  it("turns a 422 into the server's field and reason, without retrying", async () => {
    const fetchImpl = vi.fn(
      async () =>
        new Response(JSON.stringify({ error: "x", field: "text", reason: "must not be empty" }), {
          status: 422,
          headers: { "content-type": "application/json" },
        }),
    );
    const { seen, handle } = run(new ChatterboxAPI("", undefined, fetchImpl));
    await handle.finished;
    expect(seen.errors).toEqual(["text: must not be empty"]);
    expect(fetchImpl).toHaveBeenCalledTimes(1);
  });

  it("says so when the stream ends without done or error", async () => {
    const { seen, handle } = run(new ChatterboxAPI("", undefined, async () => sseResponse(chunk(1))));
    await handle.finished;
    expect(seen.errors).toEqual(["the stream closed before it was done"]);
  });

  it("close() aborts the request and silences the callbacks", async () => {
    let signal: AbortSignal | undefined;
    const fetchImpl = vi.fn(async (_url: RequestInfo | URL, init?: RequestInit) => {
      signal = init?.signal ?? undefined;
      return new Promise<Response>(() => undefined); // the server is still thinking
    });
    const { seen, handle } = run(new ChatterboxAPI("", undefined, fetchImpl as typeof fetch));
    await vi.waitFor(() => expect(signal).toBeDefined());
    handle.close();
    expect(signal!.aborted).toBe(true);
    expect(seen.errors).toEqual([]);
  });
});

describe("helpers", () => {
  it("names the field and reason of a validation error", () => {
    expect(errorMessage(422, { field: "chunk_size", reason: "must be between 10 and 200" })).toBe(
      "chunk_size: must be between 10 and 200",
    );
    expect(errorMessage(503, { error: "all slots busy" })).toBe("all slots busy");
    expect(errorMessage(500, null)).toBe("HTTP 500");
  });

  it("leaves unset fields out of the form", () => {
    const form = formData({ text: "hi", voice: undefined, seed: 3 });
    expect([...form.keys()]).toEqual(["text", "seed"]);
  });
});

describe("errorMessage on the generated ErrorBody type", () => {
  it("names the field of the gateway's error body, else says its error, else the status", () => {
    const invalid: ErrorBody = { error: "text: is required", code: "invalid_input", field: "text", reason: "is required" };
    expect(errorMessage(422, invalid)).toBe("text: is required");
    expect(errorMessage(503, { error: "every slot is busy", code: "busy" })).toBe("every slot is busy");
    expect(errorMessage(502, "<html>bad gateway</html>")).toBe("HTTP 502");
  });
});
