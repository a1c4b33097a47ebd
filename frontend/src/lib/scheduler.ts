// Back-to-back scheduling of audio chunks on one AudioContext clock. Pure arithmetic, so it is tested
// without audio: each chunk starts exactly where the previous one ends; a chunk that arrives after
// that moment (an underrun) starts a short lead after "now" instead, never overlapping what played.

export interface ScheduledChunk {
  id: number;
  start: number; // AudioContext seconds
  duration: number;
  late: boolean; // arrived after the previous chunk had finished playing
}

export class ChunkScheduler {
  private next: number | null = null;
  readonly chunks: ScheduledChunk[] = [];
  underruns = 0;

  /** @param lead seconds between "now" and the start of a chunk that has nothing to follow. */
  constructor(private readonly lead = 0.05) {}

  schedule(id: number, now: number, duration: number): ScheduledChunk {
    let start: number;
    let late = false;
    if (this.next === null) {
      start = now + this.lead;
    } else if (this.next < now) {
      late = true;
      this.underruns += 1;
      start = now + this.lead;
    } else {
      start = this.next;
    }
    this.next = start + duration;
    const chunk = { id, start, duration, late };
    this.chunks.push(chunk);
    return chunk;
  }

  /** When the last scheduled chunk ends (AudioContext seconds), or null before the first. */
  get end(): number | null {
    return this.next;
  }

  /** Largest gap and largest overlap between consecutive chunks, in seconds (underruns excluded). */
  seams(): { gap: number; overlap: number } {
    let gap = 0;
    let overlap = 0;
    for (let i = 1; i < this.chunks.length; i++) {
      const prev = this.chunks[i - 1];
      const cur = this.chunks[i];
      if (cur.late) continue;
      const delta = cur.start - (prev.start + prev.duration);
      gap = Math.max(gap, delta);
      overlap = Math.max(overlap, -delta);
    }
    return { gap, overlap };
  }
}
