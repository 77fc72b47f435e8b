/**
 * Current rates of every session's data service and mover, sampled once a second by the
 * server (`ndmpd sessions` and /metrics read them). A sample rather than a whole-job average,
 * so a stalled job shows 0.
 */
import type { Session } from "../server/session.ts";

interface Meter {
  t: number;
  data: bigint;
  mover: bigint;
  dataRate: number;
  moverRate: number;
}

const meters = new WeakMap<Session, Meter>();

function bytesOf(s: Session): { data: bigint; mover: bigint } {
  const d = s.data as { bytesProcessed?: bigint } | undefined;
  return { data: d?.bytesProcessed ?? 0n, mover: s.mover?.bytesMoved ?? 0n };
}

/** Takes one sample of each session. */
export function sampleRates(sessions: Iterable<Session>, now = Date.now()): void {
  for (const s of sessions) {
    const b = bytesOf(s);
    const m = meters.get(s);
    if (!m) {
      meters.set(s, { t: now, ...b, dataRate: 0, moverRate: 0 });
      continue;
    }
    const dt = (now - m.t) / 1000;
    if (dt <= 0) continue;
    // A counter that went down was reset (DATA_STOP, MOVER_STOP): the new job starts from 0.
    const rate = (now: bigint, before: bigint) => Math.round(Number(now >= before ? now - before : now) / dt);
    meters.set(s, { t: now, ...b, dataRate: rate(b.data, m.data), moverRate: rate(b.mover, m.mover) });
  }
}

/** Bytes per second over the last sample interval; 0 before the second sample. */
export function ratesOf(s: Session): { data: number; mover: number } {
  const m = meters.get(s);
  return { data: m?.dataRate ?? 0, mover: m?.moverRate ?? 0 };
}

/** Samples the server's sessions every second until stopped (the timer keeps no process alive). */
export function startRateSampler(sessions: () => Iterable<Session>): () => void {
  const timer = setInterval(() => sampleRates(sessions()), 1000);
  timer.unref();
  return () => clearInterval(timer);
}
