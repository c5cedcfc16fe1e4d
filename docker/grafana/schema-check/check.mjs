#!/usr/bin/env node
// Type-check Grafana dashboard JSON files against @grafana/schema's Dashboard type with tsc.
//
//   node check.mjs [dashboard.json ...]     (default: ../dashboards/*.json)
//
// For each JSON file a .ts file is generated whose line N is the JSON's line N:
//   import type { LearnTrackDashboard } from '…/dashboard-types'; const dashboard: LearnTrackDashboard = {…};
// so TypeScript checks the literal exactly (excess-property checks: unknown or misspelled keys fail),
// then `tsc --noEmit -p <generated tsconfig>` runs once over all of them. Errors are reported with the
// JSON file's own path, line and column. Exit status: 0 all valid, 1 type errors, 2 setup problem.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const tsc = join(here, 'node_modules', 'typescript', 'bin', 'tsc');
for (const needed of [tsc, join(here, 'node_modules', '@grafana', 'schema', 'package.json')]) {
  if (!existsSync(needed)) {
    console.error(`schema-check: ${needed} is missing; run \`npm ci\` in ${here} (or \`make setup\`)`);
    process.exit(2);
  }
}

let inputs = process.argv.slice(2).map((p) => resolve(p));
if (inputs.length === 0) {
  const dir = resolve(here, '..', 'dashboards');
  inputs = readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => join(dir, f));
}
if (inputs.length === 0) {
  console.error('schema-check: no dashboard JSON files given or found');
  process.exit(2);
}

function check(work) {
  const generated = new Map(); // generated .ts path -> JSON path
  let parseErrors = 0;
  inputs.forEach((jsonPath, i) => {
    const text = readFileSync(jsonPath, 'utf8');
    try {
      JSON.parse(text);
    } catch (err) {
      console.error(`${jsonPath}: not valid JSON: ${err.message}`);
      parseErrors += 1;
      return;
    }
    const ts = join(work, `d${i}_${basename(jsonPath, '.json').replace(/[^A-Za-z0-9_]/g, '_')}.ts`);
    const types = relative(work, join(here, 'dashboard-types')).split('\\').join('/');
    // One header line, then the JSON verbatim: line numbers in tsc's output are the JSON file's.
    writeFileSync(ts, `import type { LearnTrackDashboard } from '${types}'; export const dashboard: LearnTrackDashboard = ${text.trimEnd()};\n`);
    generated.set(ts, jsonPath);
  });
  if (parseErrors) return 1;

  writeFileSync(join(work, 'tsconfig.json'), JSON.stringify({
    extends: relative(work, join(here, 'tsconfig.json')).split('\\').join('/'),
    files: [...generated.keys()].map((p) => basename(p)),
  }));
  const run = spawnSync(process.execPath, [tsc, '--noEmit', '--pretty', 'false', '-p', join(work, 'tsconfig.json')],
    { cwd: here, encoding: 'utf8' });
  if (run.error) {
    console.error(`schema-check: could not run tsc: ${run.error.message}`);
    return 2;
  }
  let out = `${run.stdout}${run.stderr}`;
  for (const [ts, json] of generated) {
    // tsc prints paths relative to the cwd or absolute; map both back to the JSON file.
    for (const form of [ts, relative(here, ts)]) out = out.split(form).join(json);
  }
  if (run.status !== 0) {
    process.stdout.write(out.trim() ? `${out.trim()}\n` : `tsc exited with status ${run.status}\n`);
    return 1;
  }
  console.log(`schema-check: ${generated.size} dashboard(s) satisfy @grafana/schema's Dashboard type`);
  return 0;
}

const work = mkdtempSync(join(here, '.gen-'));
let status = 2;
try {
  status = check(work);
} finally {
  rmSync(work, { recursive: true, force: true }); // before exiting: process.exit() skips finally blocks
}
process.exit(status);
