/**
 * Formats aligned `label: value` rows for people reading a terminal. A value
 * with several lines has its later lines indented under the first.
 */
export function formatRows (rows: Array<[string, string]>): string {
  const width = Math.max(...rows.map(([label]) => label.length)) + 1
  const indent = ' '.repeat(width + 4)
  return rows
    .map(([label, value]) => `  ${`${label}:`.padEnd(width)}  ${value.split('\n').join(`\n${indent}`)}`)
    .join('\n')
}

/** Prints a table with a header row; columns are padded to their widest cell. */
export function formatTable (header: string[], rows: string[][]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map(row => (row[column] ?? '').length)))
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()
  return [line(header), ...rows.map(line)].join('\n')
}

export function printJson (value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`)
}
