const sizeUnits: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4
}

/**
 * Parses a memory or disk size such as `512m`, `2g`, `1.5GiB` or `1048576`
 * into bytes. Units are binary (1k = 1024 bytes), as in Docker's `--memory`.
 * Returns undefined for anything that is not a non-negative size.
 */
export function parseSize (text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text)
  if (match == null) {
    return undefined
  }

  const multiplier = sizeUnits[(match[2] ?? '').toLowerCase()]
  if (multiplier == null) {
    return undefined
  }

  return Math.round(Number(match[1]) * multiplier)
}

/** Formats a byte count for people: `1.5 GiB`, `512 MiB`, `800 B`. */
export function formatBytes (bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  const digits = unit === 0 || Number.isInteger(value) ? 0 : 1
  return `${value.toFixed(digits)} ${units[unit]}`
}

/** Formats a duration in milliseconds for people: `850 ms`, `12.3 s`, `2 h 5 min`. */
export function formatDuration (ms: number): string {
  if (ms < 1000) {
    return `${Math.round(ms)} ms`
  }
  if (ms < 60_000) {
    return `${(ms / 1000).toFixed(1)} s`
  }
  const minutes = Math.floor(ms / 60_000)
  if (minutes < 60) {
    return `${minutes} min ${Math.floor((ms % 60_000) / 1000)} s`
  }
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`
}
