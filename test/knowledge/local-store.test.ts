import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { closeDatabase, openDatabase, textSublevel } from '../../src/node/data-dir.js'
import { KnowledgeBaseError } from '../../src/knowledge/errors.js'
import { LOCAL_STORE_SUBLEVEL, LocalDocumentStore } from '../../src/knowledge/local-store.js'
import { emdxDatabasePath, openKnowledgeBase } from '../../src/knowledge/open.js'
import { writeStageOutput } from '../../src/knowledge/stage-output.js'
import { createEmdxDatabase } from '../support/emdx-db.js'
import { makeTempDir } from '../support/temp.js'
import type { RootDatabase } from '../../src/node/data-dir.js'
import type { DocumentStore } from '../../src/knowledge/document-store.js'

const databases: Array<{ dir: string, db: RootDatabase }> = []
const stores: DocumentStore[] = []

afterEach(async () => {
  for (const store of stores.splice(0)) {
    await store.close()
  }
  for (const { dir, db } of databases.splice(0)) {
    if (db.status === 'open') {
      await closeDatabase(dir, db)
    }
  }
})

async function openRoot (dir?: string): Promise<{ dir: string, db: RootDatabase }> {
  const dataDir = dir ?? await makeTempDir()
  const db = await openDatabase(dataDir)
  databases.push({ dir: dataDir, db })
  return { dir: dataDir, db }
}

async function localStore (db: RootDatabase): Promise<LocalDocumentStore> {
  return new LocalDocumentStore(textSublevel(db, LOCAL_STORE_SUBLEVEL))
}

describe('LocalDocumentStore', () => {
  it('stores a chain of outputs', async () => {
    const { db } = await openRoot()
    const store = await localStore(db)
    const root = await store.insertDocument({ title: 'Add dark mode', content: 'idea', stage: 'idea' })

    let parentId = root.id
    for (const stage of ['idea', 'prompt', 'analyzed', 'planned'] as const) {
      parentId = (await writeStageOutput(store, { title: 'Add dark mode', fromStage: stage, parentId, content: `after ${stage}` })).id
    }

    const titles: string[] = []
    let current = (await store.children(root.id))[0]
    while (current !== undefined) {
      titles.push(`${current.title} ${current.stage ?? ''} ${current.tags.join(',')}`)
      current = (await store.children(current.id))[0]
    }
    expect(titles).toEqual([
      'Add dark mode [idea→prompt] prompt cascade,remote',
      'Add dark mode [prompt→analyzed] analyzed cascade,remote',
      'Add dark mode [analyzed→planned] planned cascade,remote',
      'Add dark mode [planned→done] done cascade,remote'
    ])
  })

  it('numbers documents from one', async () => {
    const { db } = await openRoot()
    const store = await localStore(db)

    const ids = await Promise.all([1, 2, 3].map(async (n) => (await store.insertDocument({ title: `doc ${n}`, content: 'c' })).id))

    expect(ids.sort()).toEqual([1, 2, 3])
  })

  it('orders children by id', async () => {
    const { db } = await openRoot()
    const store = await localStore(db)
    const parent = await store.insertDocument({ title: 'parent', content: 'c' })
    for (let n = 0; n < 11; n++) {
      await store.insertDocument({ title: `child ${n}`, content: 'c', parentId: parent.id })
    }

    const children = await store.children(parent.id)

    expect(children.map((child) => child.title)).toEqual(Array.from({ length: 11 }, (_, n) => `child ${n}`))
  })

  it('keeps documents across restarts', async () => {
    const first = await openRoot()
    const inserted = await (await localStore(first.db)).insertDocument({ title: 'Kept', content: 'survives', project: 'p', tags: ['Cascade'] })
    await closeDatabase(first.dir, first.db)

    const second = await openRoot(first.dir)
    const store = await localStore(second.db)
    const next = await store.insertDocument({ title: 'Next', content: 'c' })

    expect(await store.getDocument(inserted.id)).toEqual(inserted)
    expect(next.id).toBe(inserted.id + 1)
  })

  it('search needs every word', async () => {
    const { db } = await openRoot()
    const store = await localStore(db)
    const both = await store.insertDocument({ title: 'Dark mode', content: 'a dark theme toggle, dark by default' })
    await store.insertDocument({ title: 'Light mode', content: 'a theme toggle' })

    const found = await store.search('DARK toggle')

    expect(found.map((document) => document.id)).toEqual([both.id])
    expect(await store.search('  ')).toEqual([])
  })

  it('rejects a missing parent', async () => {
    const { db } = await openRoot()
    const store = await localStore(db)

    const err = await store.insertDocument({ title: 't', content: 'c', parentId: 5 }).catch((caught: unknown) => caught)

    expect(err).toBeInstanceOf(KnowledgeBaseError)
    expect((err as KnowledgeBaseError).code).toBe('ERR_DOCUMENT_NOT_FOUND')
    expect(await store.getDocument(1)).toBeUndefined()
  })

  it('rejects a corrupt record', async () => {
    const { db } = await openRoot()
    const sublevel = textSublevel(db, LOCAL_STORE_SUBLEVEL)
    await sublevel.put('doc:000000000001', JSON.stringify({ id: 1, title: 'no content' }))

    const err = await new LocalDocumentStore(sublevel).getDocument(1).catch((caught: unknown) => caught)

    expect((err as KnowledgeBaseError).code).toBe('ERR_KNOWLEDGE_BASE_INVALID')
    expect((err as Error).message).toContain('doc:000000000001')
  })

  it('keeps no cascade runs', async () => {
    const { db } = await openRoot()

    expect(await (await localStore(db)).startRun()).toBeUndefined()
  })
})

describe('openKnowledgeBase', () => {
  it('defaults to the config path', () => {
    expect(emdxDatabasePath({}, '/home/ada')).toEqual({ file: '/home/ada/.config/emdx/knowledge.db', fromEnv: false })
    expect(emdxDatabasePath({ EMDX_DB: 'kb.db' }, '/home/ada').file).toBe(path.resolve('kb.db'))
  })

  it('uses EMDX_DB when set', async () => {
    const file = createEmdxDatabase(await makeTempDir(), 'docType')

    const store = await openKnowledgeBase({ env: { EMDX_DB: file } })
    stores.push(store)

    expect(store.kind).toBe('emdx')
    expect(store.location).toBe(file)
  })

  it('uses the default file when present', async () => {
    const home = await makeTempDir()
    await mkdir(path.join(home, '.config', 'emdx'), { recursive: true })
    createEmdxDatabase(path.join(home, '.config', 'emdx'), 'cascadeRuns')

    const store = await openKnowledgeBase({ env: {}, homeDir: home })
    stores.push(store)

    expect(store.kind).toBe('emdx')
  })

  it('falls back to the node store', async () => {
    const { db } = await openRoot()

    const store = await openKnowledgeBase({ env: {}, homeDir: await makeTempDir(), database: db })

    expect(store.kind).toBe('local')
  })

  it('rejects a missing EMDX_DB file', async () => {
    const { db } = await openRoot()
    const file = path.join(await makeTempDir(), 'absent.db')

    const err = await openKnowledgeBase({ env: { EMDX_DB: file }, database: db }).catch((caught: unknown) => caught)

    expect((err as KnowledgeBaseError).code).toBe('ERR_KNOWLEDGE_BASE_NOT_FOUND')
    expect((err as Error).message).toContain(`EMDX database ${file} does not exist`)
  })
})
