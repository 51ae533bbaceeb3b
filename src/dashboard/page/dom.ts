// Small DOM helpers. Every value from the node goes in as text, never as
// HTML: peer ids, stage names and progress lines come from other peers.

type Child = Node | string | undefined

/** Creates an element with attributes and children; strings become text nodes. */
export function element<K extends keyof HTMLElementTagNameMap> (tag: K, attributes: Record<string, string> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value)
  }
  for (const child of children) {
    if (child !== undefined) {
      node.append(child)
    }
  }
  return node
}

/** Finds an element the page must have; a missing one is a bug of the page. */
export function required<T extends Element = HTMLElement> (selector: string): T {
  const found = document.querySelector<T>(selector)
  if (found === null) {
    throw new Error(`the dashboard page has no element ${selector}`)
  }
  return found
}

/** Sets an element's text only when it changed, so live regions announce changes, not every snapshot. */
export function setText (node: Element, text: string): void {
  if (node.textContent !== text) {
    node.textContent = text
  }
}

/**
 * Replaces the children of a container only when the data behind them
 * changed, so rows keep focus and selection between identical snapshots.
 */
export function replaceWhenChanged (container: Element, data: unknown, build: () => Node[]): void {
  const key = JSON.stringify(data)
  if (container.getAttribute('data-key') === key) {
    return
  }
  container.setAttribute('data-key', key)
  container.replaceChildren(...build())
}

/** Fills a table body with rows of cells, or one row saying it is empty. */
export function fillTable (table: HTMLTableElement, data: unknown[], rows: () => Child[][], emptyText: string): void {
  const body = table.tBodies[0] ?? table.createTBody()
  const columns = table.tHead?.rows[0]?.cells.length ?? 1
  replaceWhenChanged(body, data, () => {
    if (data.length === 0) {
      return [element('tr', {}, element('td', { colspan: String(columns), class: 'empty' }, emptyText))]
    }
    return rows().map(cells => element('tr', {}, ...cells.map(cell => element('td', {}, cell))))
  })
}

/** Creates a short label of a peer id, with the whole id as its tooltip. */
export function peerLabel (peerId: string, short: string): HTMLElement {
  return element('span', { class: 'mono', title: peerId }, short)
}
