import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Repository root and fixture folder. */
export const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const FIXTURES = join(REPO, "tests", "fixtures");
