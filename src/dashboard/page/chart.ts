import { formatCredits, formatTime } from './format.js'

const SVG_NS = 'http://www.w3.org/2000/svg'
const WIDTH = 600
const HEIGHT = 200
/** Room for the axis labels, in viewBox units. */
const MARGIN = { left: 70, right: 10, top: 12, bottom: 24 }

interface Point { at: number, balance: number }

/**
 * Draws the balance as a step line: the balance stays the same between
 * ledger entries and changes at each one. The line runs on to `now` at the current
 * balance. Returns a sentence that says what the chart shows, for its caption.
 */
export function drawBalanceChart (svg: SVGSVGElement, history: Array<{ at: string, balance: number }>, now: string, balance: number): string {
  const points: Point[] = history.map(point => ({ at: Date.parse(point.at), balance: point.balance }))
  points.push({ at: Math.max(Date.parse(now), points.at(-1)?.at ?? 0), balance })

  const first = points[0] as Point
  const last = points.at(-1) as Point
  // A chart of one moment spans the minute before it.
  const start = first.at < last.at ? first.at : last.at - 60_000
  const low = Math.min(...points.map(point => point.balance))
  const high = Math.max(...points.map(point => point.balance))
  // A flat line sits in the middle of a one-credit band.
  const pad = high === low ? 1000 : (high - low) * 0.1
  const bottom = low - pad
  const top = high + pad

  const x = (at: number): number => MARGIN.left + (at - start) / (last.at - start) * (WIDTH - MARGIN.left - MARGIN.right)
  const y = (value: number): number => MARGIN.top + (top - value) / (top - bottom) * (HEIGHT - MARGIN.top - MARGIN.bottom)

  let path = `M ${x(first.at).toFixed(1)} ${y(first.balance).toFixed(1)}`
  for (const point of points.slice(1)) {
    path += ` H ${x(point.at).toFixed(1)} V ${y(point.balance).toFixed(1)}`
  }

  svg.replaceChildren(
    line(MARGIN.left, HEIGHT - MARGIN.bottom, WIDTH - MARGIN.right, HEIGHT - MARGIN.bottom, 'axis'),
    line(MARGIN.left, MARGIN.top, MARGIN.left, HEIGHT - MARGIN.bottom, 'axis'),
    shape('path', { d: path, class: 'balance-line' }),
    label(MARGIN.left - 6, y(high) + 4, 'end', (high / 1000).toFixed(3)),
    label(MARGIN.left - 6, y(low) + 4, 'end', (low / 1000).toFixed(3)),
    label(MARGIN.left, HEIGHT - 6, 'start', formatTime(new Date(start).toISOString())),
    label(WIDTH - MARGIN.right, HEIGHT - 6, 'end', 'now')
  )

  return `Balance over time: ${formatCredits(balance)} now, between ${formatCredits(low)} and ${formatCredits(high)} since ${formatTime(new Date(start).toISOString())}`
}

function shape (tag: string, attributes: Record<string, string>): SVGElement {
  const node = document.createElementNS(SVG_NS, tag) as SVGElement
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value)
  }
  return node
}

function line (x1: number, y1: number, x2: number, y2: number, className: string): SVGElement {
  return shape('line', { x1: String(x1), y1: String(y1), x2: String(x2), y2: String(y2), class: className })
}

function label (xPosition: number, yPosition: number, anchor: 'start' | 'end', text: string): SVGElement {
  const node = shape('text', { x: xPosition.toFixed(1), y: yPosition.toFixed(1), 'text-anchor': anchor, class: 'chart-label' })
  node.textContent = text
  return node
}
