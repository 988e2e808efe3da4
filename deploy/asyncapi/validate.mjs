// Validate AsyncAPI documents with the AsyncAPI project's own parser (@asyncapi/parser,
// pinned in package-lock.json; `make asyncapi` installs it into .cache/asyncapi).
//   node deploy/asyncapi/validate.mjs FILE...
// Prints every diagnostic (severity, path, message); exits 1 when any is an error or a
// warning: the committed document must be clean, not merely parseable.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

// The parser lives in .cache/asyncapi/node_modules (or RIVERRUN_ASYNCAPI_MODULES), not
// beside this script: resolve it from there.
const modules = process.env.RIVERRUN_ASYNCAPI_MODULES ?? path.resolve(".cache/asyncapi/node_modules");
const require = createRequire(path.join(modules, "noop.js"));
let parserModule;
try {
  parserModule = require("@asyncapi/parser");
} catch (err) {
  console.error(`@asyncapi/parser not found in ${modules}: run \`make asyncapi\` (it installs it with npm ci)`);
  process.exit(2);
}
const { Parser, DiagnosticSeverity } = parserModule;
const SEVERITY = ["error", "warning", "information", "hint"];

const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const text = await readFile(file, "utf8");
  const { document, diagnostics } = await parser.parse(text, { source: path.resolve(file) });
  for (const d of diagnostics) {
    const where = d.path && d.path.length ? d.path.join(".") : "(document)";
    console.log(`${file}: ${SEVERITY[d.severity] ?? d.severity}: ${where}: ${d.message} [${d.code}]`);
    if (d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning) {
      failed = true;
    }
  }
  if (document === undefined) {
    failed = true;
    console.log(`${file}: not a valid AsyncAPI document`);
  } else {
    console.log(`${file}: AsyncAPI ${document.version()}, ${document.channels().length} channels, ${document.operations().length} operations`);
  }
}
process.exit(failed ? 1 : 0);
