import { readFileSync } from 'node:fs'

/**
 * The package version. Read at run time because package.json sits outside the
 * compiled tree; the same relative path works from `src/node` and `dist/node`.
 */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
