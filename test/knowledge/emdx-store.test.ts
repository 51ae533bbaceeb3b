import { execFile } from 'node:child_process'
import { chmod, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { EmdxStore } from '../../src/knowledge/emdx-store.js'
import { KnowledgeBaseError } from '../../src/knowledge/errors.js'
import { writeStageOutput } from '../../src/knowledge/stage-output.js'
import { ensureBuilt } from '../helpers/build.js'
import { createEmdxDatabase } from '../support/emdx-db.js'
import { makeTempDir } from '../support/temp.js'
import type { Stage } from '../../src/cascade/stages.js'
import type { KnowledgeDocument } from '../../src/knowledge/document-store.js'
import type { EmdxSchemaName } from '../support/emdx-db.js'

const openFixture = fileURLToPath(new URL('./fixtures/open-emdx-store.mjs', import.meta.url))
const opened: EmdxStore[] = []
const connections: Database.Database[] = []

afterEach(async () => {
  for (const store of opened.splice(0)) {
    await store.close()
  }
  for (const db of connections.splice(0)) {
    db.close()
  }
})

async function open (file: string, busyTimeoutMs?: number): Promise<EmdxStore> {
  const store = await EmdxStore.open(file, { busyTimeoutMs })
  opened.push(store)
  return store
}

/** Opens a second connection to the file, as EMDX itself would, to check rows without the store. */
function connect (file: string): Database.Database {
  const db = new Database(file)
  connections.push(db)
  return db
}

async function expectError (promise: Promise<unknown>, code: string): Promise<KnowledgeBaseError> {
  const err = await promise.then(() => undefined, (caught: unknown) => caught)
  expect(err).toBeInstanceOf(KnowledgeBaseError)
  expect((err as KnowledgeBaseError).code).toBe(code)
  return err as KnowledgeBaseError
}

const TRANSFORMS: Array<[Stage, Stage]> = [['idea', 'prompt'], ['prompt', 'analyzed'], ['analyzed', 'planned'], ['planned', 'done']]

/** Runs a whole cascade through the store: the idea, a run, four outputs, and the run's end. */
async function writeCascade (store: EmdxStore): Promise<{ root: KnowledgeDocument, outputs: KnowledgeDocument[], runId: number | undefined }> {
  const root = await store.insertDocument({ title: 'Add dark mode', content: 'Let users pick a dark theme.', project: 'dashboard', stage: 'idea', tags: ['cascade'] })
  const runId = await store.startRun({ startDocId: root.id, startStage: 'idea', stopStage: 'done' })

  const outputs: KnowledgeDocument[] = []
  let parentId = root.id
  for (const [from, to] of TRANSFORMS) {
    const output = await writeStageOutput(store, {
      title: 'Add dark mode',
      fromStage: from,
      parentId,
      content: `The ${to} document about the dark theme toggle.`,
      project: 'dashboard',
      runId
    })
    outputs.push(output)
    parentId = output.id
  }

  if (runId !== undefined) {
    await store.finishRun(runId, 'completed')
  }
  return { root, outputs, runId }
}

describe.each<[EmdxSchemaName]>([['cascadeRuns'], ['docType']])('EmdxStore on the %s schema', (schema) => {
  it('writes four child documents', async () => {
    const file = createEmdxDatabase(await makeTempDir(), schema)
    const { root, outputs } = await writeCascade(await open(file))

    const rows = connect(file).prepare('SELECT id, title, parent_id, stage, project FROM documents WHERE id != ? ORDER BY id').all(root.id) as Array<{ id: number, title: string, parent_id: number, stage: string, project: string }>

    expect(rows.map((row) => row.title)).toEqual([
      'Add dark mode [idea→prompt]',
      'Add dark mode [prompt→analyzed]',
      'Add dark mode [analyzed→planned]',
      'Add dark mode [planned→done]'
    ])
    expect(rows.map((row) => row.parent_id)).toEqual([root.id, ...outputs.slice(0, 3).map((output) => output.id)])
    expect(rows.map((row) => row.stage)).toEqual(['prompt', 'analyzed', 'planned', 'done'])
    expect(rows.every((row) => row.project === 'dashboard')).toBe(true)
  })

  it('tags outputs cascade and remote', async () => {
    const file = createEmdxDatabase(await makeTempDir(), schema)
    const { outputs } = await writeCascade(await open(file))
    const db = connect(file)

    for (const output of outputs) {
      const tags = db.prepare('SELECT t.name FROM tags t JOIN document_tags dt ON dt.tag_id = t.id WHERE dt.document_id = ? ORDER BY t.name').all(output.id)
      expect(tags).toEqual([{ name: 'cascade' }, { name: 'remote' }])
    }
    const counts = db.prepare('SELECT name, usage_count FROM tags ORDER BY name').all()
    expect(counts).toEqual([{ name: 'cascade', usage_count: 5 }, { name: 'remote', usage_count: 4 }])
  })

  it('outputs are found by FTS', async () => {
    const file = createEmdxDatabase(await makeTempDir(), schema)
    const { outputs } = await writeCascade(await open(file))

    const rows = connect(file).prepare("SELECT rowid FROM documents_fts WHERE documents_fts MATCH 'toggle' ORDER BY rowid").all() as Array<{ rowid: number }>

    expect(rows.map((row) => row.rowid)).toEqual(outputs.map((output) => output.id))
  })

  it('records the cascade run', async () => {
    const file = createEmdxDatabase(await makeTempDir(), schema)
    const { root, outputs, runId } = await writeCascade(await open(file))

    const run = connect(file).prepare('SELECT * FROM cascade_runs WHERE id = ?').get(runId) as Record<string, unknown>

    expect(run.start_doc_id).toBe(root.id)
    expect(run.current_doc_id).toBe(outputs[3]?.id)
    expect(run.start_stage).toBe('idea')
    expect(run.stop_stage).toBe('done')
    expect(run.current_stage).toBe('done')
    expect(run.status).toBe('completed')
    expect(run.completed_at).not.toBeNull()
  })

  it('search finds outputs through the store', async () => {
    const file = createEmdxDatabase(await makeTempDir(), schema)
    const store = await open(file)
    const { outputs } = await writeCascade(store)

    const found = await store.search('analyzed dark')

    expect(found.map((document) => document.id)).toContain(outputs[1]?.id)
    expect(found[0]?.tags).toEqual(['cascade', 'remote'])
  })

  it('children and getDocument read back', async () => {
    const file = createEmdxDatabase(await makeTempDir(), schema)
    const store = await open(file)
    const { root, outputs } = await writeCascade(store)

    const children = await store.children(root.id)
    const last = await store.getDocument(outputs[3]?.id as number)

    expect(children.map((child) => child.id)).toEqual([outputs[0]?.id])
    expect(last?.title).toBe('Add dark mode [planned→done]')
    expect(last?.stage).toBe('done')
    expect(last?.parentId).toBe(outputs[2]?.id)
    expect(await store.getDocument(9999)).toBeUndefined()
  })
})

describe('EmdxStore schema differences', () => {
  it('fills document_cascade_metadata when present', async () => {
    const file = createEmdxDatabase(await makeTempDir(), 'cascadeRuns')
    const { root, outputs } = await writeCascade(await open(file))

    const rows = connect(file).prepare('SELECT document_id, stage FROM document_cascade_metadata ORDER BY document_id').all()

    expect(rows).toEqual([root, ...outputs].map((document) => ({ document_id: document.id, stage: document.stage })))
  })

  it('writes doc_type user when present', async () => {
    const file = createEmdxDatabase(await makeTempDir(), 'docType')
    const { outputs } = await writeCascade(await open(file))

    const types = connect(file).prepare('SELECT DISTINCT doc_type FROM documents WHERE id >= ?').all(outputs[0]?.id)

    expect(types).toEqual([{ doc_type: 'user' }])
  })

  it('works without cascade_runs', async () => {
    const file = createEmdxDatabase(await makeTempDir(), 'docType')
    connect(file).exec('DROP TABLE cascade_runs')
    const store = await open(file)

    const { outputs, runId } = await writeCascade(store)

    expect(runId).toBeUndefined()
    expect(outputs).toHaveLength(4)
    expect(store.schema.hasCascadeRuns).toBe(false)
  })

  it('leaves FTS to the triggers', async () => {
    const file = createEmdxDatabase(await makeTempDir(), 'cascadeRuns')
    connect(file).exec('DROP TRIGGER documents_ai')
    const store = await open(file)

    await store.insertDocument({ title: 'Unindexed', content: 'zebra crossing' })

    const rows = connect(file).prepare("SELECT rowid FROM documents_fts WHERE documents_fts MATCH 'zebra'").all()
    expect(rows).toEqual([])
    expect(store.schema.hasFtsInsertTrigger).toBe(false)
  })

  it('keeps usage_count of existing tags', async () => {
    const file = createEmdxDatabase(await makeTempDir(), 'docType')
    connect(file).exec("INSERT INTO tags (name, usage_count) VALUES ('remote', 7)")
    const store = await open(file)

    const document = await store.insertDocument({ title: 'Tagged', content: 'x', tags: ['Remote', ' REMOTE ', 'cascade'] })

    const counts = connect(file).prepare('SELECT name, usage_count FROM tags ORDER BY name').all()
    expect(counts).toEqual([{ name: 'cascade', usage_count: 1 }, { name: 'remote', usage_count: 8 }])
    expect(document.tags).toEqual(['cascade', 'remote'])
  })

  it('search skips deleted documents', async () => {
    const file = createEmdxDatabase(await makeTempDir(), 'docType')
    const store = await open(file)
    const kept = await store.insertDocument({ title: 'Kept', content: 'walrus notes' })
    const deleted = await store.insertDocument({ title: 'Deleted', content: 'walrus notes' })
    connect(file).prepare('UPDATE documents SET is_deleted = 1 WHERE id = ?').run(deleted.id)

    const found = await store.search('walrus')

    expect(found.map((document) => document.id)).toEqual([kept.id])
  })
})

describe('EmdxStore errors', () => {
  it('rejects a missing parent', async () => {
    const file = createEmdxDatabase(await makeTempDir(), 'docType')
    const store = await open(file)

    const err = await expectError(store.insertDocument({ title: 't', content: 'c', parentId: 42 }), 'ERR_DOCUMENT_NOT_FOUND')

    expect(err.message).toContain('parent document 42 not found')
    expect(connect(file).prepare('SELECT count(*) AS n FROM documents').get()).toEqual({ n: 0 })
  })

  it('rejects a missing file', async () => {
    const file = path.join(await makeTempDir(), 'missing.db')

    const err = await expectError(EmdxStore.open(file), 'ERR_KNOWLEDGE_BASE_NOT_FOUND')

    expect(err.message).toContain(file)
  })

  it('rejects a file that is not SQLite', async () => {
    const file = path.join(await makeTempDir(), 'knowledge.db')
    await writeFile(file, 'these are notes, not a database\n'.repeat(200))

    const err = await expectError(EmdxStore.open(file), 'ERR_KNOWLEDGE_BASE_INVALID')

    expect(err.message).toContain(file)
    expect(err.message).toContain('set EMDX_DB')
  })

  it('rejects missing tables', async () => {
    const file = path.join(await makeTempDir(), 'knowledge.db')
    connect(file).exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)')

    const err = await expectError(EmdxStore.open(file), 'ERR_KNOWLEDGE_BASE_SCHEMA')

    expect(err.message).toContain(`EMDX database ${file} has no table documents`)
    expect(err.message).toContain('run emdx once to upgrade it')
  })

  it('rejects unknown NOT NULL columns', async () => {
    const file = path.join(await makeTempDir(), 'knowledge.db')
    connect(file).exec(`
      CREATE TABLE documents (id INTEGER PRIMARY KEY, title TEXT NOT NULL, content TEXT NOT NULL, project TEXT, parent_id INTEGER, owner TEXT NOT NULL);
      CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, usage_count INTEGER DEFAULT 0);
      CREATE TABLE document_tags (document_id INTEGER NOT NULL, tag_id INTEGER NOT NULL, PRIMARY KEY (document_id, tag_id));`)

    const err = await expectError(EmdxStore.open(file), 'ERR_KNOWLEDGE_BASE_SCHEMA')

    expect(err.message).toContain('documents.owner')
  })

  it('fails after the busy timeout', async () => {
    const file = createEmdxDatabase(await makeTempDir(), 'docType')
    const store = await open(file, 300)
    const holder = connect(file)
    holder.exec('BEGIN IMMEDIATE')

    let ticks = 0
    const timer = setInterval(() => { ticks++ }, 20)
    const started = Date.now()
    const err = await expectError(store.insertDocument({ title: 't', content: 'c' }), 'ERR_KNOWLEDGE_BASE_BUSY')
    clearInterval(timer)
    holder.exec('ROLLBACK')

    expect(Date.now() - started).toBeGreaterThanOrEqual(300)
    expect(err.message).toContain(`EMDX database ${file} stayed locked by another process for 300 ms`)
    // The wait is spent in async sleeps, so the event loop kept running.
    expect(ticks).toBeGreaterThan(5)
  })

  it('waits for a lock to clear', async () => {
    const file = createEmdxDatabase(await makeTempDir(), 'docType')
    const store = await open(file, 5000)
    const holder = connect(file)
    holder.exec('BEGIN IMMEDIATE')
    setTimeout(() => holder.exec('COMMIT'), 200)

    const document = await store.insertDocument({ title: 'After the lock', content: 'c' })

    expect(document.title).toBe('After the lock')
  })

  it('rejects a read-only file', async () => {
    await ensureBuilt()
    const dir = await makeTempDir()
    const file = createEmdxDatabase(dir, 'docType')
    await chmod(dir, 0o755)
    await chmod(file, 0o444)

    // Root may write any file, so as root the check runs as user nobody.
    const asRoot = process.getuid?.() === 0
    const { stdout } = await promisify(execFile)(process.execPath, [openFixture, file], asRoot ? { uid: 65534, gid: 65534 } : {})
    const outcome = JSON.parse(stdout) as { opened: boolean, code: string, message: string }

    expect(outcome.opened).toBe(false)
    expect(outcome.code).toBe('ERR_KNOWLEDGE_BASE_READ_ONLY')
    expect(outcome.message).toContain(`EMDX database ${file} is read-only for this user`)
  })
})
