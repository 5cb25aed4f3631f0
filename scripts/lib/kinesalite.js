#!/usr/bin/env node
// Starts kinesalite, an in-memory Kinesis Data Streams emulator, on 127.0.0.1 for the
// integration tests. scripts/lib/kinesalite.sh installs kinesalite into .tools/kinesalite.
//
// Usage: node scripts/lib/kinesalite.js [--port N]   (N = 0, the default, picks a free port)
//
// Prints one line, `listening 127.0.0.1:<port>`, once the server accepts connections, and
// exits when its standard input closes or on SIGTERM or SIGINT, so a test process that dies
// takes the emulator with it.
'use strict'

const path = require('path')

const modules = path.join(__dirname, '..', '..', '.tools', 'kinesalite', 'node_modules')

function parsePort(argv) {
  const index = argv.indexOf('--port')
  if (index === -1) return 0
  const value = argv[index + 1]
  if (!/^\d+$/.test(value || '') || Number(value) > 65535) {
    console.error(`kinesalite.js: invalid --port ${JSON.stringify(value)}: expected 0 to 65535`)
    process.exit(2)
  }
  return Number(value)
}

function loadKinesalite() {
  try {
    return require(require.resolve('kinesalite', { paths: [modules] }))
  } catch (error) {
    console.error(`kinesalite.js: kinesalite not found under ${modules}: ` +
      'run scripts/test or source scripts/lib/kinesalite.sh and call install_kinesalite')
    process.exit(1)
  }
}

const port = parsePort(process.argv.slice(2))
const kinesalite = loadKinesalite()

// Without `path` kinesalite keeps everything in memdown. Streams become ACTIVE after
// createStreamMs, so tests wait for milliseconds rather than kinesalite's default 500 ms.
// shardLimit counts the shards of all streams together; its default is 10.
const server = kinesalite({
  createStreamMs: 0,
  deleteStreamMs: 0,
  updateStreamMs: 0,
  shardLimit: 1000,
})

function shutdown() {
  server.close(() => process.exit(0))
  // close() waits for keep-alive connections to go idle, so do not wait for it long.
  setTimeout(() => process.exit(0), 500).unref()
}

server.on('error', (error) => {
  console.error(`kinesalite.js: failed to listen on 127.0.0.1:${port}: ${error.message}`)
  process.exit(1)
})

// kinesalite has no host option, and its server listens on every address unless listen()
// receives one.
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening 127.0.0.1:${server.address().port}\n`)
})

process.stdin.on('end', shutdown)
process.stdin.on('error', shutdown)
process.stdin.resume()
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
