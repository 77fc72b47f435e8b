import { walkSync } from "../../../src/engine/walker-sync.ts";
import type { WalkOptions } from "../../../src/engine/walker.ts";
import { walkerSuite } from "./walker-suite.ts";

// The synchronous walker (run by the scan worker) keeps every rule of the asynchronous one.
walkerSuite({
  name: "walkSync",
  async *walk(opts: WalkOptions) {
    yield* walkSync(opts);
  },
  full: false,
});
