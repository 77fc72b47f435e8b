import { walk } from "../../../src/engine/walker.ts";
import { walkerSuite } from "./walker-suite.ts";

walkerSuite({ name: "walk", walk, full: true });
