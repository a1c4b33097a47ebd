import { describe, expect, it } from "vitest";
import { base64ToBytes, concatSamples, encodeWav, parseWav } from "./wav";

describe("wav", () => {
  it("round-trips 16-bit samples through encodeWav and parseWav", () => {
    const samples = new Float32Array([0, 0.5, -0.5, 0.999, -1]);
    const parsed = parseWav(new Uint8Array(encodeWav(samples, 24000)));
    expect(parsed.sampleRate).toBe(24000);
    expect(parsed.samples.length).toBe(5);
    parsed.samples.forEach((v, i) => expect(v).toBeCloseTo(samples[i], 3));
  });

  it("decodes base64 and concatenates in order", () => {
    expect(Array.from(base64ToBytes(btoa("RIFF")))).toEqual([82, 73, 70, 70]);
    expect(Array.from(concatSamples([new Float32Array([1, 2]), new Float32Array([3])]))).toEqual([1, 2, 3]);
  });

  it("refuses what is not 16-bit PCM WAV", () => {
    expect(() => parseWav(new TextEncoder().encode("not a wav at all"))).toThrow("not a WAV file");
  });
});
