// The gateway's HTTP API: SSE streaming (parsed by @microsoft/fetch-event-source), regular synthesis,
// voices and health. Callbacks follow the seed's example: onChunk, onMetrics, onComplete, onError.
import { EventStreamContentType, fetchEventSource } from "@microsoft/fetch-event-source";
import type { components } from "./schema";

// The wire types, generated from the gateway's OpenAPI schema (`make` writes openapi.json with
// `python -m gateway.openapi`, then `npm run schema` turns it into schema.d.ts): never declared by hand here.
type Schemas = components["schemas"];
/** A synthesis request's fields (the form fields of /synthesize-stream and /synthesize). */
export type SynthesisParams = Schemas["SynthesizeBody"];
export type ChunkMetrics = Schemas["ChunkMetrics"];
export type AudioChunk = Schemas["AudioChunkEvent"];
export type StreamDone = Schemas["DoneEvent"];
export type ErrorBody = Schemas["ErrorBody"];
export type Voice = Schemas["Voice"];
export type Health = Schemas["Health"];

export interface StreamCallbacks {
  onChunk?: (chunk: AudioChunk) => void;
  onMetrics?: (metrics: ChunkMetrics) => void;
  onComplete?: (done: StreamDone) => void;
  onError?: (message: string) => void;
}

export interface StreamHandle {
  /** Stop listening; the gateway sees the disconnect and cancels the job. */
  close: () => void;
  /** Settles once the stream has ended in any way. */
  finished: Promise<void>;
}

/** Thrown inside fetchEventSource's callbacks to stop it: it retries on any other error. */
class StreamEnded extends Error {}

/** "field: reason" from the gateway's error body (every 4xx/5xx is an ErrorBody), else its `error`, else the
 * status line (a proxy's page, or no body). */
export function errorMessage(status: number, body: unknown): string {
  if (body && typeof body === "object") {
    const b = body as Partial<ErrorBody>;
    if (typeof b.field === "string" && typeof b.reason === "string") return `${b.field}: ${b.reason}`;
    if (typeof b.error === "string") return b.error;
  }
  return `HTTP ${status}`;
}

export function formData(params: SynthesisParams, audioPrompt?: Blob): FormData {
  const form = new FormData();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") form.append(key, String(value));
  }
  if (audioPrompt) form.append("audio_prompt", audioPrompt, "prompt");
  return form;
}

export class ChatterboxAPI {
  constructor(
    private readonly baseUrl = "",
    private readonly apiKey?: string,
    private readonly fetchImpl: typeof fetch = (...args) => fetch(...args),
  ) {}

  private headers(): Record<string, string> {
    return this.apiKey ? { Authorization: `Bearer ${this.apiKey}` } : {};
  }

  synthesizeStream(params: SynthesisParams, audioPrompt: Blob | undefined, callbacks: StreamCallbacks): StreamHandle {
    const controller = new AbortController();
    let ended = false;
    const end = (error?: string) => {
      if (ended) return;
      ended = true;
      if (error !== undefined) callbacks.onError?.(error);
    };
    const finished = fetchEventSource(`${this.baseUrl}/synthesize-stream`, {
      method: "POST",
      headers: this.headers(),
      body: formData(params, audioPrompt),
      signal: controller.signal,
      openWhenHidden: true, // keep streaming in a background tab
      fetch: this.fetchImpl,
      async onopen(response) {
        const type = response.headers.get("content-type") ?? "";
        if (response.ok && type.startsWith(EventStreamContentType)) return;
        const body = await response.json().catch(() => null);
        end(errorMessage(response.status, body));
        throw new StreamEnded();
      },
      onmessage(event) {
        if (ended || !event.data) return;
        const data = JSON.parse(event.data);
        if (event.event === "audio_chunk") {
          callbacks.onChunk?.(data as AudioChunk);
          callbacks.onMetrics?.((data as AudioChunk).metrics);
        } else if (event.event === "done") {
          ended = true;
          callbacks.onComplete?.(data as StreamDone);
        } else if (event.event === "error") {
          end(errorMessage(200, data));
        }
      },
      onclose() {
        end("the stream closed before it was done");
        throw new StreamEnded();
      },
      onerror(error) {
        if (!(error instanceof StreamEnded)) end(error instanceof Error ? error.message : String(error));
        throw error; // never retry: a retried POST would start a second job
      },
    }).catch(() => undefined);
    return {
      close: () => {
        ended = true;
        controller.abort();
      },
      finished,
    };
  }

  /** Regular synthesis: the whole WAV, and how long it took to arrive. */
  async synthesize(params: SynthesisParams, audioPrompt?: Blob): Promise<{ wav: ArrayBuffer; seconds: number }> {
    const started = performance.now();
    const response = await this.fetchImpl(`${this.baseUrl}/synthesize`, {
      method: "POST",
      headers: this.headers(),
      body: formData(params, audioPrompt),
    });
    if (!response.ok) throw new Error(errorMessage(response.status, await response.json().catch(() => null)));
    const wav = await response.arrayBuffer();
    return { wav, seconds: (performance.now() - started) / 1000 };
  }

  async health(): Promise<Health> {
    const response = await this.fetchImpl(`${this.baseUrl}/health`);
    return (await response.json()) as Health;
  }

  async listVoices(): Promise<Voice[]> {
    return this.json(await this.fetchImpl(`${this.baseUrl}/voices`, { headers: this.headers() }));
  }

  async uploadVoice(name: string, file: Blob): Promise<Voice> {
    const form = new FormData();
    form.append("name", name);
    form.append("file", file, "voice");
    const response = await this.fetchImpl(`${this.baseUrl}/voices`, { method: "POST", headers: this.headers(), body: form });
    return this.json(response);
  }

  async deleteVoice(id: string): Promise<void> {
    await this.json(await this.fetchImpl(`${this.baseUrl}/voices/${encodeURIComponent(id)}`, { method: "DELETE", headers: this.headers() }));
  }

  private async json<T>(response: Response): Promise<T> {
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(errorMessage(response.status, body));
    return body as T;
  }
}

export const chatterboxAPI = new ChatterboxAPI();
