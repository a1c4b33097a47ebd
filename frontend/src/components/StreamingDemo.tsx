// The demo page: text, voice, sliders; "Stream" and "Regular" side by side with time to first audio.
import { useEffect, useRef, useState } from "react";
import { type ChatterboxAPI, type Health, type SynthesisParams, type Voice } from "../lib/api";
import { StreamingAudioPlayer, type StreamRequest } from "./StreamingAudioPlayer";

const SLIDERS = [
  { key: "exaggeration", label: "Exaggeration", min: 0.25, max: 2, step: 0.05, value: 0.5 },
  { key: "temperature", label: "Temperature", min: 0.05, max: 5, step: 0.05, value: 0.8 },
  { key: "cfg_weight", label: "CFG weight", min: 0, max: 1, step: 0.05, value: 0.5 },
  { key: "chunk_size", label: "Chunk size", min: 10, max: 200, step: 5, value: 50 },
] as const;
type SliderKey = (typeof SLIDERS)[number]["key"];

export function StreamingDemo({ api }: { api: ChatterboxAPI }) {
  const [text, setText] = useState("Hello! This is Chatterbox, streaming speech as it is generated.");
  const [values, setValues] = useState<Record<SliderKey, number>>(
    Object.fromEntries(SLIDERS.map((s) => [s.key, s.value])) as Record<SliderKey, number>,
  );
  const [voices, setVoices] = useState<Voice[]>([]);
  const [voice, setVoice] = useState("");
  const [upload, setUpload] = useState<File | null>(null);
  const [health, setHealth] = useState<Health | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [request, setRequest] = useState<StreamRequest | null>(null);
  const [streamFirst, setStreamFirst] = useState<number | null>(null);
  const [regularFirst, setRegularFirst] = useState<number | null>(null);
  const [regularBusy, setRegularBusy] = useState(false);
  const context = useRef<AudioContext | null>(null);

  useEffect(() => {
    const unreachable = (e: Error): Health =>
      ({ status: "unavailable", live_slots: 0, slots: [], weights: "unknown", streaming: true, error: e.message });
    api.health().then(setHealth, (e: Error) => setHealth(unreachable(e)));
    api.listVoices().then(setVoices, () => setVoices([]));
  }, [api]);

  const audio = async () => {
    context.current ??= new AudioContext();
    await context.current.resume();
    return context.current;
  };
  const params = (): SynthesisParams => ({ text, voice: voice || undefined, ...values });

  const stream = async () => {
    setError(null);
    setStreamFirst(null);
    setRequest({ id: Date.now(), params: params(), context: await audio() });
  };

  const regular = async () => {
    setError(null);
    setRegularFirst(null);
    setRegularBusy(true);
    try {
      const ctx = await audio();
      const { wav, seconds } = await api.synthesize(params());
      setRegularFirst(seconds);
      const source = ctx.createBufferSource();
      source.buffer = await ctx.decodeAudioData(wav);
      source.connect(ctx.destination);
      source.start();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setRegularBusy(false);
    }
  };

  const addVoice = async () => {
    if (!upload) return;
    setError(null);
    try {
      const added = await api.uploadVoice(upload.name.replace(/\.[^.]*$/, "").slice(0, 60) || "voice", upload);
      setVoices(await api.listVoices());
      setVoice(added.id);
    } catch (e) {
      setError((e as Error).message);
    }
  };

  return (
    <main>
      <h1>Chatterbox streaming TTS</h1>
      {health?.weights === "random" && (
        <p className="banner" role="alert" data-testid="random-banner">
          This server runs <strong>random weights</strong> (no real Chatterbox checkpoint was available): the
          timing is real, the audio is noise.
        </p>
      )}
      {health && health.status !== "ok" && (
        <p className="banner" role="alert">
          Server not ready: {health.error ?? health.status}
        </p>
      )}
      <textarea value={text} onChange={(e) => setText(e.target.value)} rows={4} data-testid="text" />
      <div className="row">
        <label>
          Voice{" "}
          <select value={voice} onChange={(e) => setVoice(e.target.value)} data-testid="voice">
            <option value="">built-in</option>
            {voices.map((v) => (
              <option key={v.id} value={v.id}>
                {v.name} ({v.seconds.toFixed(1)} s)
              </option>
            ))}
          </select>
        </label>
        <input type="file" accept="audio/*" onChange={(e) => setUpload(e.target.files?.[0] ?? null)} />
        <button onClick={addVoice} disabled={!upload}>
          Upload voice
        </button>
      </div>
      {SLIDERS.map((s) => (
        <label key={s.key} className="slider">
          {s.label}: {values[s.key]}
          <input
            type="range"
            min={s.min}
            max={s.max}
            step={s.step}
            value={values[s.key]}
            onChange={(e) => setValues({ ...values, [s.key]: Number(e.target.value) })}
            data-testid={`slider-${s.key}`}
          />
        </label>
      ))}
      {error && (
        <p className="error" role="alert" data-testid="error">
          {error}
        </p>
      )}
      <div className="columns">
        <section>
          <button onClick={stream} data-testid="stream">
            Stream
          </button>{" "}
          time to first audio: <span data-testid="stream-first">{streamFirst?.toFixed(2) ?? "–"}</span> s
          <StreamingAudioPlayer api={api} request={request} onFirstAudio={setStreamFirst} onError={setError} />
        </section>
        <section>
          <button onClick={regular} disabled={regularBusy} data-testid="regular">
            Regular
          </button>{" "}
          time to first audio: <span data-testid="regular-first">{regularFirst?.toFixed(2) ?? "–"}</span> s
        </section>
      </div>
    </main>
  );
}
