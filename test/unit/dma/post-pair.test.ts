import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import type { NdmpClient, Post } from "../../../src/client/client.ts";
import { PostPair } from "../../../src/dma/post-pair.ts";
import { JobError } from "../../../src/dma/target.ts";

/** What PostPair uses of a client: its post and closed events, and its list of posts. */
function fakeSession(): NdmpClient & EventEmitter {
  return Object.assign(new EventEmitter(), { posts: [] as Post[] }) as unknown as NdmpClient & EventEmitter;
}
const post = (code: number): Post => ({ code, sequence: 0, body: {} }) as unknown as Post;

describe("PostPair", () => {
  it("queues both sides' posts in arrival order, each with its side, and empties the clients' own lists", async () => {
    const src = fakeSession();
    const dst = fakeSession();
    const pair = new PostPair({ src, dst }, (s) => s);
    src.posts.push(post(1));
    src.emit("post", post(1));
    dst.emit("post", post(2));
    src.emit("post", post(3));
    await pair.settle(10_000); // something is queued: no wait
    expect(pair.queue.map(({ from, p }) => [from, p.code])).toEqual([["src", 1], ["dst", 2], ["src", 3]]);
    expect(src.posts).toEqual([]);
    pair.close();
    src.emit("post", post(4));
    expect(pair.queue).toHaveLength(3);
  });

  it("wakes at the next post, and a lost connection ends the wait with the side named", async () => {
    const src = fakeSession();
    const dst = fakeSession();
    const pair = new PostPair({ src, dst }, (s) => (s === "src" ? "the source a" : "the destination b"));
    const waiting = pair.settle(60_000);
    dst.emit("post", post(7));
    await waiting; // woken by the post, long before the poll interval
    expect(pair.queue).toHaveLength(1);
    pair.queue.length = 0;
    dst.emit("closed", new Error("reset"));
    expect(pair.lost).toBe("lost the connection to the destination b: reset");
    await expect(pair.settle(10)).rejects.toBeInstanceOf(JobError);
    pair.close();
  });
});
