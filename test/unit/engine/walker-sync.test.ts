import { walkSync } from "../../../src/engine/walker-sync.ts";
import { isListed, type WalkOptions } from "../../../src/engine/walker.ts";
import { walkerSuite } from "./walker-suite.ts";

// The synchronous walker (run by the scan worker) keeps every rule of the asynchronous one.
walkerSuite({
  name: "walkSync",
  async *walk(opts: WalkOptions) {
    for (const item of walkSync(opts)) {
      // (The suite never sets statFiles false, which alone makes these.)
      if (isListed(item)) throw new Error("a ListedNames item from a walk with statFiles set");
      yield item;
    }
  },
  full: false,
});
