/**
 * The posts of the two sessions of one job between two servers (a copy's data services, a
 * duplication's movers), in the order they arrive, and which side each came from. A job's loop
 * waits on them with `settle`, and a lost connection ends it with the side named.
 */
import type { NdmpClient, Post } from "../client/client.ts";
import { JobError } from "./target.ts";

export type Side = "src" | "dst";

export class PostPair {
  readonly queue: Array<{ from: Side; p: Post }> = [];
  /** Why the job cannot go on: "lost the connection to SIDE: ...", once a session closed. */
  lost: string | undefined;
  private wake: (() => void) | undefined;
  private readonly offs: Array<() => void>;

  /** `name(side)` says which server a lost connection was ("the source filer1", "filer1"). */
  constructor(private readonly clients: Record<Side, NdmpClient>, name: (side: Side) => string) {
    this.offs = (["src", "dst"] as const).map((from) => {
      const c = clients[from];
      const onPost = (p: Post) => {
        this.queue.push({ from, p });
        this.wake?.();
      };
      const onClosed = (e: Error) => {
        this.lost = `lost the connection to ${name(from)}: ${e.message}`;
        this.wake?.();
      };
      c.on("post", onPost);
      c.on("closed", onClosed);
      return () => {
        c.off("post", onPost);
        c.off("closed", onClosed);
      };
    });
  }

  /**
   * With nothing queued, waits for a post or `pollMs` (a JobError once a connection is lost).
   * The clients' own lists of posts are emptied: the job handles its posts from the queue.
   */
  async settle(pollMs: number): Promise<void> {
    if (this.queue.length === 0) {
      if (this.lost) throw new JobError(this.lost);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, pollMs);
      });
      this.wake = undefined;
    }
    this.clients.src.posts.length = 0;
    this.clients.dst.posts.length = 0;
  }

  close(): void {
    for (const off of this.offs) off();
  }
}
