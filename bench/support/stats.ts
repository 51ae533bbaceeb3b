/** Summary statistics for benchmark samples; medians and p95, never means alone. */
export interface Summary {
  count: number
  median: number
  p95: number
  min: number
  max: number
}

export function percentile (sorted: number[], fraction: number): number {
  if (sorted.length === 0) {
    return Number.NaN
  }
  const index = Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)
  return sorted[Math.max(0, index)] as number
}

export function summarize (samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b)
  return {
    count: sorted.length,
    median: percentile(sorted, 0.5),
    p95: percentile(sorted, 0.95),
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN
  }
}

export function formatSummary (summary: Summary, unit: string, digits = 1): string {
  const f = (value: number): string => value.toFixed(digits)
  return `median ${f(summary.median)} ${unit}, p95 ${f(summary.p95)} ${unit}, min ${f(summary.min)}, max ${f(summary.max)} (n=${summary.count})`
}
