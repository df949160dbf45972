// Gzipped size of the built JavaScript (the whole app is one chunk: the chat screen and the
// rest). Fails above the budget so the bundle cannot grow past it unnoticed.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET_BYTES = 300 * 1024;
const dir = join(import.meta.dirname, "..", "dist", "assets");
let total = 0;
for (const name of readdirSync(dir).filter((n) => n.endsWith(".js"))) {
  const raw = readFileSync(join(dir, name));
  const gz = gzipSync(raw, { level: 9 }).length;
  total += gz;
  console.log(`${name}: ${(raw.length / 1024).toFixed(1)} KiB, gzip ${(gz / 1024).toFixed(1)} KiB`);
}
console.log(`total JavaScript gzip: ${(total / 1024).toFixed(1)} KiB (budget ${BUDGET_BYTES / 1024} KiB)`);
if (total > BUDGET_BYTES) process.exit(1);
