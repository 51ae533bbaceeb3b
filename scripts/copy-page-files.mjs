// Copies the dashboard page's HTML, CSS and icon next to its compiled
// scripts in dist/browser/dashboard/page, from where the node serves them.
import { copyFile, mkdir, readdir } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const from = path.join(root, 'src/dashboard/page')
const to = path.join(root, 'dist/browser/dashboard/page')

await mkdir(to, { recursive: true })
for (const name of await readdir(from)) {
  if (/\.(html|css|svg)$/.test(name)) {
    await copyFile(path.join(from, name), path.join(to, name))
  }
}
