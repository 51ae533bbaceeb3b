/**
 * A strict reader of the Prometheus text exposition format 0.0.4, for tests.
 * Every line must be blank, a comment, a HELP or TYPE line, or a sample.
 * Every sample must belong to a family declared by a TYPE line before it.
 */

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface PrometheusText {
  samples: Sample[]
  /** Family name to its type: counter, gauge, histogram, summary or untyped. */
  types: Map<string, string>
  help: Map<string, string>
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])
const SUFFIXES: Record<string, string[]> = {
  counter: [''],
  gauge: [''],
  untyped: [''],
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['', '_sum', '_count']
}

/** Parses the text; throws an Error naming the line and what is wrong with it. */
export function parsePrometheusText (text: string): PrometheusText {
  const result: PrometheusText = { samples: [], types: new Map(), help: new Map() }
  const lines = text.split('\n')
  if (lines.at(-1) === '') {
    lines.pop()
  }

  lines.forEach((line, index) => {
    try {
      parseLine(line, result)
    } catch (err) {
      throw new Error(`line ${index + 1} is not valid Prometheus text (${(err as Error).message}): ${JSON.stringify(line)}`)
    }
  })
  return result
}

function parseLine (line: string, result: PrometheusText): void {
  if (line.trim() === '') {
    return
  }
  if (line.startsWith('#')) {
    parseComment(line, result)
    return
  }

  const sample = parseSample(line)
  const family = familyOf(sample.name, result.types)
  if (family === undefined) {
    throw new Error(`sample ${sample.name} has no TYPE line before it`)
  }
  result.samples.push(sample)
}

function parseComment (line: string, result: PrometheusText): void {
  const match = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line)
  if (match === null) {
    return
  }
  const [, keyword, name = '', rest = ''] = match
  if (!METRIC_NAME.test(name)) {
    throw new Error(`invalid metric name ${name}`)
  }
  if (keyword === 'HELP') {
    if (result.help.has(name)) {
      throw new Error(`a second HELP line for ${name}`)
    }
    result.help.set(name, rest)
    return
  }
  if (!TYPES.has(rest.trim())) {
    throw new Error(`invalid type ${rest}`)
  }
  if (result.types.has(name)) {
    throw new Error(`a second TYPE line for ${name}`)
  }
  if (result.samples.some(sample => familyOf(sample.name, new Map([[name, rest.trim()]])) !== undefined)) {
    throw new Error(`the TYPE line of ${name} comes after its samples`)
  }
  result.types.set(name, rest.trim())
}

/** Returns the family a sample name belongs to among the declared ones. */
function familyOf (name: string, types: Map<string, string>): string | undefined {
  for (const [family, type] of types) {
    if ((SUFFIXES[type] ?? ['']).some(suffix => family + suffix === name)) {
      return family
    }
  }
  return undefined
}

function parseSample (line: string): Sample {
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)
  if (nameMatch === null) {
    throw new Error('no metric name')
  }
  const name = nameMatch[0]
  let position = name.length
  let labels: Record<string, string> = {}
  if (line[position] === '{') {
    const parsed = parseLabels(line, position + 1)
    labels = parsed.labels
    position = parsed.end
  }

  const rest = line.slice(position)
  const valueMatch = /^ +(\S+)(?: +(-?\d+))?$/.exec(rest)
  if (valueMatch === null) {
    throw new Error('expected a space, a value and an optional timestamp after the labels')
  }
  return { name, labels, value: parseValue(valueMatch[1] ?? '') }
}

/** Reads `name="value",...}` from `start`; returns the labels and the index after the brace. */
function parseLabels (line: string, start: number): { labels: Record<string, string>, end: number } {
  const labels: Record<string, string> = {}
  let position = start
  while (line[position] !== '}') {
    const nameMatch = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(position))
    if (nameMatch === null || !LABEL_NAME.test(nameMatch[0])) {
      throw new Error(`invalid label name at column ${position + 1}`)
    }
    const labelName = nameMatch[0]
    position += labelName.length
    if (line.slice(position, position + 2) !== '="') {
      throw new Error(`expected =" after label ${labelName}`)
    }
    position += 2

    let value = ''
    while (line[position] !== '"') {
      const character = line[position]
      if (character === undefined) {
        throw new Error(`the value of label ${labelName} is not closed`)
      }
      if (character === '\\') {
        const escaped = line[position + 1]
        if (escaped === 'n') {
          value += '\n'
        } else if (escaped === '\\' || escaped === '"') {
          value += escaped
        } else {
          throw new Error(`invalid escape \\${escaped ?? ''} in label ${labelName}`)
        }
        position += 2
      } else {
        value += character
        position++
      }
    }
    position++
    if (labelName in labels) {
      throw new Error(`label ${labelName} appears twice`)
    }
    labels[labelName] = value

    if (line[position] === ',') {
      position++
    } else if (line[position] !== '}') {
      throw new Error(`expected , or } after label ${labelName}`)
    }
  }
  return { labels, end: position + 1 }
}

/**
 * Reads a sample value as Prometheus does: its text parser reads values
 * with Go's strconv.ParseFloat, which takes Inf and NaN in any case (and
 * prom-client 15 writes NaN as `Nan`).
 */
function parseValue (text: string): number {
  const infinity = /^([-+]?)inf(inity)?$/i.exec(text)
  if (infinity !== null) {
    return infinity[1] === '-' ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY
  }
  if (/^nan$/i.test(text)) {
    return Number.NaN
  }
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) {
    throw new Error(`invalid value ${text}`)
  }
  return Number(text)
}

/** Returns the value of the sample with exactly these labels, or undefined when there is none. */
export function sampleValue (metrics: PrometheusText, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).sort()
  const sample = metrics.samples.find(candidate => candidate.name === name &&
    JSON.stringify(Object.entries(candidate.labels).sort()) === JSON.stringify(wanted))
  return sample?.value
}

/** Fetches and parses a node's `/metrics`. */
export async function scrape (apiUrl: string): Promise<PrometheusText> {
  const response = await fetch(`${apiUrl}/metrics`)
  if (!response.ok) {
    throw new Error(`GET ${apiUrl}/metrics returned ${response.status}: ${await response.text()}`)
  }
  return parsePrometheusText(await response.text())
}
