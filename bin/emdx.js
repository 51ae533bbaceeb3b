#!/usr/bin/env node
import { existsSync } from 'node:fs'

const entry = new URL('../dist/cli/emdx.js', import.meta.url)
if (!existsSync(entry)) {
  process.stderr.write('emdx (from emdx-node) is not built yet: run "npm install" (which builds it) or "npm run build" in its folder\n')
  process.exit(1)
}
await import(entry.href)
