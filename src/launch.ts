#!/usr/bin/env bun
/**
 * The compiled binary's entry point: only what must run before the program is loaded.
 *
 * `ndmpd backup` and `ndmpd recover` start themselves again with runtime options in their
 * environment (runtime-env.ts). Doing that from main.ts meant loading the whole program twice: the binary's
 * one bundle is read and set up before its first line runs, about 50 ms here against 15 ms for
 * an empty binary. This entry is a bundle of its own, small; main.ts, another entry point of the
 * build (package.json: build), is loaded by path once we know we stay.
 */
import "./runtime-env.ts";

const here = new URL(import.meta.url);
// A path computed at run time, so that the bundler leaves main out of this bundle.
const main = here.pathname.startsWith("/$bunfs/") ? "./main.js" : "./main.ts";
await import(new URL(main, here).href);
