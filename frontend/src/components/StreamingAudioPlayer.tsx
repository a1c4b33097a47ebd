// Plays SSE chunks as they arrive: each is scheduled on one AudioContext exactly where the previous one
// ends (ChunkScheduler); a late chunk resumes playback without overlap and counts as an underrun.
import { useEffect, useRef, useState } from "react";
import { type ChatterboxAPI, type ChunkMetrics, type StreamHandle, type SynthesisParams } from "../lib/api";
import { ChunkScheduler, type ScheduledChunk } from "../lib/scheduler";
import { base64ToBytes, concatSamples, encodeWav, parseWav } from "../lib/wav";

export interface StreamRequest {
  id: number; // a new id starts a new stream
  params: SynthesisParams;
  audioPrompt?: Blob;
  context: AudioContext; // created and resumed in the click that asked for it (autoplay rules)
}

interface Timing {
  requestedAt: number; // performance.now() milliseconds
  firstScheduledAt: number | null;
  doneAt: number | null;
  chunks: (ScheduledChunk & { scheduledAt: number })[];
}

type Status = "idle" | "streaming" | "done" | "stopped" | "error";

export function StreamingAudioPlayer(props: {
  api: ChatterboxAPI;
  request: StreamRequest | null;
  onFirstAudio?: (seconds: number) => void;
  onError?: (message: string) => void;
}) {
  const { api, request, onFirstAudio, onError } = props;
  const [status, setStatus] = useState<Status>("idle");
  const [metrics, setMetrics] = useState<ChunkMetrics | null>(null);
  const [timing, setTiming] = useState<Timing | null>(null);
  const [underruns, setUnderruns] = useState(0);
  const [played, setPlayed] = useState(0);
  const [download, setDownload] = useState<string | null>(null);
  const [paused, setPaused] = useState(false);
  const handle = useRef<StreamHandle | null>(null);
  const sources = useRef<AudioBufferSourceNode[]>([]);
  const callbacks = useRef({ onFirstAudio, onError });
  callbacks.current = { onFirstAudio, onError };

  useEffect(() => {
    if (!request) return;
    const ctx = request.context;
    const scheduler = new ChunkScheduler();
    const parts: Float32Array[] = [];
    let sampleRate = 24000;
    const t: Timing = { requestedAt: performance.now(), firstScheduledAt: null, doneAt: null, chunks: [] };
    const finish = (next: Status) => {
      setStatus(next);
      if (parts.length) setDownload(URL.createObjectURL(new Blob([encodeWav(concatSamples(parts), sampleRate)], { type: "audio/wav" })));
    };
    setStatus("streaming");
    setPaused(ctx.state === "suspended");
    setMetrics(null);
    setUnderruns(0);
    setDownload(null);
    setTiming({ ...t });
    sources.current = [];
    handle.current = api.synthesizeStream(request.params, request.audioPrompt, {
      onChunk(chunk) {
        const wav = parseWav(base64ToBytes(chunk.audio_chunk));
        sampleRate = wav.sampleRate;
        parts.push(wav.samples);
        if (!wav.samples.length) return;
        const buffer = ctx.createBuffer(1, wav.samples.length, wav.sampleRate);
        buffer.copyToChannel(wav.samples, 0);
        const slot = scheduler.schedule(chunk.chunk_id, ctx.currentTime, buffer.duration);
        const source = ctx.createBufferSource();
        source.buffer = buffer;
        source.connect(ctx.destination);
        source.start(slot.start);
        sources.current.push(source);
        const now = performance.now();
        if (t.firstScheduledAt === null) {
          t.firstScheduledAt = now;
          callbacks.current.onFirstAudio?.((now - t.requestedAt) / 1000);
        }
        t.chunks.push({ ...slot, scheduledAt: now });
        setUnderruns(scheduler.underruns);
        setTiming({ ...t, chunks: [...t.chunks] });
      },
      onMetrics: setMetrics,
      onComplete() {
        t.doneAt = performance.now();
        setTiming({ ...t, chunks: [...t.chunks] });
        finish("done");
      },
      onError(message) {
        finish("error");
        callbacks.current.onError?.(message);
      },
    });
    const clock = setInterval(() => {
      const first = t.chunks[0];
      setPlayed(first ? Math.max(0, ctx.currentTime - first.start) : 0);
    }, 100);
    return () => {
      clearInterval(clock);
      handle.current?.close();
    };
  }, [api, request]);

  // Pausing freezes the AudioContext clock; chunks that arrive meanwhile still line up back to back.
  const togglePause = async () => {
    const ctx = request?.context;
    if (!ctx) return;
    if (paused) await ctx.resume();
    else await ctx.suspend();
    setPaused(!paused);
  };

  const stop = () => {
    handle.current?.close();
    for (const source of sources.current) source.stop();
    setStatus("stopped");
  };

  const received = metrics?.total_audio_duration ?? 0;
  return (
    <section className="player" data-testid="player" data-status={status}>
      <div className="row">
        <strong>Streaming player</strong> <span data-testid="status">{status}</span>
        <button onClick={togglePause} disabled={!request} data-testid="pause">
          {paused ? "Resume" : "Pause"}
        </button>
        <button onClick={stop} disabled={status !== "streaming"} data-testid="stop">
          Stop
        </button>
        {download && (
          <a href={download} download="chatterbox.wav" data-testid="download">
            Download WAV
          </a>
        )}
      </div>
      <progress max={Math.max(received, 0.001)} value={Math.min(played, received)} />
      <dl className="metrics">
        <dt>first chunk (server)</dt>
        <dd data-testid="first-chunk">{metrics?.first_chunk_latency?.toFixed(2) ?? "–"} s</dd>
        <dt>RTF</dt>
        <dd>{metrics?.rtf?.toFixed(2) ?? "–"}</dd>
        <dt>chunks</dt>
        <dd data-testid="chunks">{metrics?.chunks_generated ?? 0}</dd>
        <dt>audio</dt>
        <dd>{received.toFixed(2)} s</dd>
        <dt>underruns</dt>
        <dd data-testid="underruns">{underruns}</dd>
        <dt>job</dt>
        <dd data-testid="last-job">{metrics?.job ?? ""}</dd>
      </dl>
      <details>
        <summary>Chunk schedule</summary>
        <pre data-testid="timing">{JSON.stringify(timing, null, 1)}</pre>
      </details>
    </section>
  );
}
