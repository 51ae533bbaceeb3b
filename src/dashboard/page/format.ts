// Formats figures for people. The locale is fixed, so that the page reads
// the same on every machine and tests can compute the expected text.

const credits = new Intl.NumberFormat('en-US', { minimumFractionDigits: 3, maximumFractionDigits: 3 })
const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 })

/** Formats millicredits as credits with three decimals, such as `99.950 credits`. */
export function formatCredits (millicredits: number): string {
  return `${credits.format(millicredits / 1000)} credits`
}

/** Formats a signed change of millicredits, such as `+0.005` or `−1.250`. */
export function formatDelta (millicredits: number): string {
  const text = credits.format(Math.abs(millicredits) / 1000)
  return millicredits < 0 ? `−${text}` : `+${text}`
}

export function formatNumber (value: number): string {
  return decimal.format(value)
}

/** Formats bytes in binary units, such as `512 MiB` or `2 GiB`. */
export function formatBytes (bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${decimal.format(value)} ${units[unit] ?? 'B'}`
}

/** Formats a duration in milliseconds, such as `850 ms`, `42 s`, `3 min 5 s` or `2 h 10 min`. */
export function formatDuration (milliseconds: number): string {
  if (milliseconds < 1000) {
    return `${Math.round(milliseconds)} ms`
  }
  const seconds = Math.floor(milliseconds / 1000)
  if (seconds < 60) {
    return `${seconds} s`
  }
  const minutes = Math.floor(seconds / 60)
  if (minutes < 60) {
    return `${minutes} min ${seconds % 60} s`
  }
  const hours = Math.floor(minutes / 60)
  if (hours < 48) {
    return `${hours} h ${minutes % 60} min`
  }
  return `${Math.floor(hours / 24)} d ${hours % 24} h`
}

/** Formats a time of day from an ISO string, such as `14:03:27`. */
export function formatTime (iso: string): string {
  return new Date(iso).toLocaleTimeString('en-GB', { hour12: false })
}

/** Shortens a peer id to its start and end, such as `12D3KooW…x4Yd8`. */
export function shortPeerId (peerId: string): string {
  return peerId.length <= 16 ? peerId : `${peerId.slice(0, 8)}…${peerId.slice(-5)}`
}

/** Shortens a job id, 32 hex digits, to its first eight. */
export function shortJobId (jobId: string): string {
  return jobId.slice(0, 8)
}
