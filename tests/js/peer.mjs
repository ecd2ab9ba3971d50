// A stock automerge-repo client (npm packages, websocket adapter), driven by
// the Rust interop tests. The token goes in `?token=`, as a browser would.
//
//   node peer.mjs create SERVER_URL TOKEN KEY VALUE      -> prints {"url": ...}
//   node peer.mjs read   SERVER_URL TOKEN DOC KEY VALUE  -> waits for doc[KEY] == VALUE, prints the doc
//   node peer.mjs edit   SERVER_URL TOKEN DOC KEY VALUE  -> sets doc[KEY] = VALUE
//
// create and edit only exit once a second, independent repo has read the
// value back from the server, so the caller knows the server holds it.
import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

const [mode, serverUrl, token, ...rest] = process.argv.slice(2)
const TIMEOUT_MS = 20000

function connect() {
  const url = `${serverUrl}?token=${encodeURIComponent(token)}`
  return new Repo({ network: [new WebSocketClientAdapter(url, 100)] })
}

async function waitForValue(repo, docUrl, key, value) {
  const deadline = Date.now() + TIMEOUT_MS
  while (Date.now() < deadline) {
    try {
      const handle = await repo.find(docUrl)
      const doc = handle.doc()
      // Strings written by Rust peers are scalar strings, which automerge-js
      // returns as ImmutableString objects; String() reads both kinds.
      if (doc && doc[key] !== undefined && String(doc[key]) === value) return doc
      await new Promise(resolve => {
        const timer = setTimeout(resolve, 200)
        handle.once("change", () => { clearTimeout(timer); resolve() })
      })
    } catch (e) {
      // Unavailable (not on the server yet) or still connecting: try again.
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
  throw new Error(`timed out waiting for ${key} == ${JSON.stringify(value)} in ${docUrl}`)
}

async function confirmOnServer(docUrl, key, value) {
  const checker = connect()
  try {
    await waitForValue(checker, docUrl, key, value)
  } finally {
    await checker.shutdown()
  }
}

async function main() {
  const repo = connect()
  try {
    if (mode === "create") {
      const [key, value] = rest
      const handle = repo.create({ [key]: value })
      await confirmOnServer(handle.url, key, value)
      console.log(JSON.stringify({ url: handle.url }))
    } else if (mode === "read") {
      const [docUrl, key, value] = rest
      const doc = await waitForValue(repo, docUrl, key, value)
      console.log(JSON.stringify(doc))
    } else if (mode === "edit") {
      const [docUrl, key, value] = rest
      const handle = await repo.find(docUrl)
      handle.change(d => { d[key] = value })
      await confirmOnServer(docUrl, key, value)
      console.log(JSON.stringify(handle.doc()))
    } else {
      throw new Error(`unknown mode ${mode}`)
    }
  } finally {
    await repo.shutdown()
  }
}

main().then(
  () => process.exit(0),
  e => { console.error(e.stack || String(e)); process.exit(1) },
)
