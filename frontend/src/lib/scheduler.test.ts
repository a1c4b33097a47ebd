import { describe, expect, it } from "vitest";
import { ChunkScheduler } from "./scheduler";

describe("ChunkScheduler", () => {
  it("starts the first chunk a lead after now, then each exactly where the previous ends", () => {
    const s = new ChunkScheduler(0.05);
    expect(s.schedule(1, 10, 0.5).start).toBeCloseTo(10.05);
    expect(s.schedule(2, 10.2, 1.0).start).toBeCloseTo(10.55); // arrived early: waits its turn
    expect(s.schedule(3, 11.0, 0.25).start).toBeCloseTo(11.55);
    expect(s.end).toBeCloseTo(11.8);
    expect(s.underruns).toBe(0);
    expect(s.seams()).toEqual({ gap: 0, overlap: 0 });
  });

  it("resumes a late chunk after now, without overlap, and counts the underrun", () => {
    const s = new ChunkScheduler(0.05);
    s.schedule(1, 0, 0.5); // plays 0.05–0.55
    const late = s.schedule(2, 2.0, 0.5); // arrives after the first ended
    expect(late.late).toBe(true);
    expect(late.start).toBeCloseTo(2.05);
    expect(s.underruns).toBe(1);
    const next = s.schedule(3, 2.1, 0.5);
    expect(next.late).toBe(false);
    expect(next.start).toBeCloseTo(2.55);
    expect(s.seams().overlap).toBe(0);
  });

  it("treats a chunk arriving exactly at the seam as on time", () => {
    const s = new ChunkScheduler(0);
    s.schedule(1, 1, 0.5);
    expect(s.schedule(2, 1.5, 0.5)).toMatchObject({ start: 1.5, late: false });
    expect(s.underruns).toBe(0);
  });

  it("reports gaps and overlaps between on-time chunks", () => {
    const s = new ChunkScheduler(0);
    s.chunks.push({ id: 1, start: 0, duration: 1, late: false }, { id: 2, start: 1.002, duration: 1, late: false });
    s.chunks.push({ id: 3, start: 1.9995, duration: 1, late: false });
    const seams = s.seams();
    expect(seams.gap).toBeCloseTo(0.002);
    expect(seams.overlap).toBeCloseTo(0.0025);
  });
});
