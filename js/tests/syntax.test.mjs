// The extension entry point imports the editor's own modules, so it cannot be imported here; check that it
// (and every other module) at least parses as an ES module.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const js = join(dirname(fileURLToPath(import.meta.url)), "..");
const files = [...readdirSync(js).filter((f) => f.endsWith(".js")).map((f) => join(js, f)),
  ...readdirSync(join(js, "lib")).filter((f) => f.endsWith(".js")).map((f) => join(js, "lib", f))];

for (const file of files) {
  test(`${file.slice(js.length + 1)} parses as an ES module`, () => {
    const tmp = join(mkdtempSync(join(tmpdir(), "stepwise-js-")), "module.mjs");
    copyFileSync(file, tmp);
    const res = spawnSync(process.execPath, ["--check", tmp], { encoding: "utf8" });
    assert.equal(res.status, 0, res.stderr);
  });
}
