'use strict'
/**
 * kafkajs driver for kop's compatibility suite.
 *
 * Usage: node driver.js HOST:PORT
 *
 * Reads one JSON request per line on stdin, {"id": 1, "op": "produce", "args": {...}},
 * and answers each on stdout with {"id": 1, "result": ...} or {"id": 1, "error": {...}}.
 * Requests run concurrently (a group member's poll may wait while others proceed), so
 * answers can come out of order; the id pairs them. Keys, values and header values
 * travel as base64 (null stays null), records as
 * {key, value, headers: [[name, value], ...], timestamp, partition, offset}.
 * kafkajs logs go to stderr, so stdout carries answers only.
 *
 * Everything here is kafkajs's public API, used the way an application uses it.
 */

const crypto = require('crypto')
const readline = require('readline')
const {
  Kafka,
  CompressionTypes,
  CompressionCodecs,
  ConfigResourceTypes,
  logLevel,
} = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const lz4 = require('lz4js')
const zstd = require('zstd-napi')

// kafkajs ships gzip only; the other codecs are plug-ins, as its documentation shows.
CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
CompressionCodecs[CompressionTypes.LZ4] = () => ({
  async compress(encoder) {
    return Buffer.from(lz4.compress(encoder.buffer))
  },
  async decompress(buffer) {
    return Buffer.from(lz4.decompress(buffer))
  },
})
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  async compress(encoder) {
    return zstd.compress(encoder.buffer)
  },
  async decompress(buffer) {
    return zstd.decompress(buffer)
  },
})

const CODECS = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
}

const bootstrap = process.argv[2]
if (!bootstrap) {
  process.stderr.write('usage: node driver.js HOST:PORT\n')
  process.exit(2)
}

const stderrLogger = () => ({ namespace, label, log }) => {
  const { message, timestamp, logger, ...extra } = log
  process.stderr.write(`kafkajs ${label} [${namespace}] ${message} ${JSON.stringify(extra)}\n`)
}

const kafka = new Kafka({
  clientId: 'compat-kafkajs',
  brokers: [bootstrap],
  logLevel: logLevel.WARN,
  logCreator: stderrLogger,
})

// -- records ---------------------------------------------------------------------------

const fromBase64 = text => (text === null || text === undefined ? null : Buffer.from(text, 'base64'))
const toBase64 = data =>
  data === null || data === undefined ? null : Buffer.from(data).toString('base64')

/** kafkajs takes headers as an object; a repeated name becomes an array of values. */
function toMessage(record) {
  const headers = {}
  for (const [name, value] of record.headers) {
    const bytes = fromBase64(value)
    headers[name] = name in headers ? [].concat(headers[name], [bytes]) : bytes
  }
  const message = { key: fromBase64(record.key), value: fromBase64(record.value), headers }
  if (record.partition !== null) message.partition = record.partition
  if (record.timestamp !== null) message.timestamp = String(record.timestamp)
  return message
}

function fromMessage(partition, message) {
  const headers = []
  for (const [name, value] of Object.entries(message.headers || {})) {
    for (const one of Array.isArray(value) ? value : [value]) headers.push([name, toBase64(one)])
  }
  return {
    key: toBase64(message.key),
    value: toBase64(message.value),
    headers,
    timestamp: Number(message.timestamp),
    partition,
    offset: Number(message.offset),
  }
}

// -- shared admin client -------------------------------------------------------------------

let adminClient = null
async function admin() {
  if (adminClient === null) {
    const created = kafka.admin()
    await created.connect()
    adminClient = created
  }
  return adminClient
}

async function partitionOffsets(topic) {
  const byPartition = new Map()
  for (const { partition, low, high } of await (await admin()).fetchTopicOffsets(topic)) {
    byPartition.set(partition, { low: Number(low), high: Number(high) })
  }
  return byPartition
}

// -- producing -----------------------------------------------------------------------------

/** Offsets per record: kafkajs answers one base offset per partition of a send, and a
 * partition's records take consecutive offsets in the order they were sent. */
function acksFor(records, answer) {
  const next = new Map(answer.map(({ partition, baseOffset }) => [partition, Number(baseOffset)]))
  return records.map(record => {
    let partition = record.partition
    if (partition === null) {
      if (next.size !== 1) throw new Error('kafkajs does not say which partition each record took')
      partition = next.keys().next().value
    }
    const offset = next.get(partition)
    next.set(partition, offset + 1)
    return [partition, offset]
  })
}

async function produce({ topic, batches, options }) {
  const producer = kafka.producer({
    idempotent: options.idempotent,
    maxInFlightRequests: options.idempotent ? 1 : undefined,
  })
  await producer.connect()
  try {
    const acks = []
    for (const records of batches) {
      const answer = await producer.send({
        topic,
        acks: -1,
        compression: CODECS[options.compression],
        messages: records.map(toMessage),
      })
      acks.push(acksFor(records, answer))
    }
    return acks
  } finally {
    await producer.disconnect()
  }
}

async function produceTransactions({ topic, transactionalId, transactions }) {
  const producer = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  try {
    for (const { records, commit } of transactions) {
      const transaction = await producer.transaction()
      try {
        await transaction.send({ topic, acks: -1, messages: records.map(toMessage) })
      } catch (error) {
        await transaction.abort()
        throw error
      }
      if (commit) await transaction.commit()
      else await transaction.abort()
    }
    return null
  } finally {
    await producer.disconnect()
  }
}

// -- reading (a consumer in a group of its own: kafkajs has no group-less consumer) ---------

/**
 * Reads `ranges` ({partition: {from, end}}) with a fresh consumer: seeks each partition
 * to `from` when the group is joined, then takes records until every partition's
 * position reaches `end` or `maxRecords` records were taken. A partition already at its
 * end is done after one fetch that started after the seek.
 */
async function consumeRanges(topic, ranges, maxRecords, isolation) {
  const consumer = kafka.consumer({
    groupId: `compat-reader-${crypto.randomUUID()}`,
    readUncommitted: isolation === 'read_uncommitted',
    retry: { retries: 3, restartOnFailure: async () => false },
  })
  const positions = new Map([...ranges].map(([partition, { from }]) => [partition, from]))
  const records = []
  let finished = false
  let fetchesAfterSeek = 0
  let settle
  const done = new Promise((resolve, reject) => {
    settle = { resolve, reject }
  })
  const limitReached = () => maxRecords !== null && records.length >= maxRecords
  const check = () => {
    if (finished) return
    const allAtEnd = [...ranges].every(([p, { end }]) => positions.get(p) >= end)
    const nothingToRead = [...ranges].every(([, { from, end }]) => from >= end)
    if (limitReached() || (allAtEnd && (!nothingToRead || fetchesAfterSeek >= 2))) {
      finished = true
      settle.resolve()
    }
  }

  consumer.on(consumer.events.CRASH, ({ payload }) => {
    finished = true
    settle.reject(payload.error)
  })
  consumer.on(consumer.events.GROUP_JOIN, () => {
    for (const [partition, { from }] of ranges) {
      consumer.seek({ topic, partition, offset: String(from) })
    }
  })
  consumer.on(consumer.events.FETCH, () => {
    fetchesAfterSeek += 1
    check()
  })
  // A fetch of only control records (transaction markers) or aborted records reaches
  // no eachBatch; kafkajs still moves past it and reports its last offset here.
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    if (payload.batchSize === 0 && ranges.has(payload.partition) && !finished) {
      const after = Number(payload.lastOffset) + 1
      positions.set(payload.partition, Math.max(positions.get(payload.partition), after))
      check()
    }
  })

  await consumer.connect()
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset }) => {
        const range = ranges.get(batch.partition)
        if (finished || range === undefined) return
        let tookAll = true
        for (const message of batch.messages) {
          if (Number(message.offset) < positions.get(batch.partition)) continue
          if (limitReached()) {
            tookAll = false
            break
          }
          records.push(fromMessage(batch.partition, message))
          positions.set(batch.partition, Number(message.offset) + 1)
          resolveOffset(message.offset)
        }
        if (tookAll && !batch.isEmpty()) {
          // Past any control records at the end of the fetch, as kafkajs moves on.
          const after = Number(batch.lastOffset()) + 1
          positions.set(batch.partition, Math.max(positions.get(batch.partition), after))
          resolveOffset(batch.lastOffset())
        }
        check()
      },
    })
    check()
    await done
    return { records, positions: Object.fromEntries(positions) }
  } finally {
    finished = true
    await consumer.disconnect()
  }
}

async function read({ topic, partition, start, maxRecords, isolation }) {
  const offsets = (await partitionOffsets(topic)).get(partition)
  if (offsets === undefined) throw new Error(`kafkajs found no partition ${partition} of ${topic}`)
  let from
  if (start.kind === 'beginning') from = offsets.low
  else if (start.kind === 'end') from = offsets.high
  else if (start.kind === 'offset') from = start.value
  else {
    const found = await (await admin()).fetchTopicOffsetsByTimestamp(topic, start.value)
    from = Number(found.find(entry => entry.partition === partition).offset)
  }
  const ranges = new Map([[partition, { from, end: offsets.high }]])
  const { records, positions } = await consumeRanges(topic, ranges, maxRecords, isolation)
  return { records, position: positions[partition] }
}

async function readAll({ topic, isolation }) {
  const ranges = new Map()
  for (const [partition, { low, high }] of await partitionOffsets(topic)) {
    ranges.set(partition, { from: low, end: high })
  }
  return (await consumeRanges(topic, ranges, null, isolation)).records
}

async function offsets({ topic, partition }) {
  const found = (await partitionOffsets(topic)).get(partition)
  return [found.low, found.high]
}

/** kafkajs answers the end offset when no record is that recent (Kafka answers -1);
 * no record sits at the end offset, so that answer means "none". */
async function offsetForTime({ topic, partition, timestamp }) {
  const end = (await partitionOffsets(topic)).get(partition).high
  const found = await (await admin()).fetchTopicOffsetsByTimestamp(topic, timestamp)
  const offset = Number(found.find(entry => entry.partition === partition).offset)
  return offset >= end ? null : offset
}

// -- group members ----------------------------------------------------------------------

const members = new Map()

function memberJoin({ groupId, topic }) {
  const id = crypto.randomUUID()
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500 })
  const member = { consumer, groupId, topic, buffer: [], wake: null, assignment: [], error: null }
  member.consumed = new Map() // partition -> next offset, for committing what was consumed
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    member.assignment = payload.memberAssignment[topic] || []
  })
  consumer.on(consumer.events.REBALANCING, () => {
    member.assignment = []
  })
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (!payload.restart) member.error = payload.error
  })
  const started = (async () => {
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const message of batch.messages) {
          member.buffer.push(fromMessage(batch.partition, message))
        }
        if (member.wake) member.wake()
      },
    })
  })()
  started.catch(error => {
    member.error = error
  })
  members.set(id, member)
  return id
}

function memberNamed(id) {
  const member = members.get(id)
  if (member === undefined) throw new Error(`no member ${id}`)
  if (member.error) throw member.error
  return member
}

async function memberPoll({ member: id, timeoutMs }) {
  const member = memberNamed(id)
  if (member.buffer.length === 0) {
    await new Promise(resolve => {
      const timer = setTimeout(resolve, timeoutMs)
      member.wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
    member.wake = null
  }
  const records = member.buffer.splice(0)
  for (const record of records) member.consumed.set(record.partition, record.offset + 1)
  return records
}

function memberAssignment({ member: id }) {
  return memberNamed(id).assignment
}

async function memberCommit({ member: id, offsets, metadata }) {
  const member = memberNamed(id)
  let chosen
  if (offsets === null) {
    // What poll handed out, for partitions this member still owns.
    chosen = [...member.consumed]
      .filter(([partition]) => member.assignment.includes(partition))
      .map(([partition, offset]) => ({ partition, offset }))
  } else {
    chosen = Object.entries(offsets).map(([partition, offset]) => ({
      partition: Number(partition),
      offset,
      metadata,
    }))
  }
  await member.consumer.commitOffsets(
    chosen.map(({ partition, offset, metadata: text = null }) => ({
      topic: member.topic,
      partition,
      offset: String(offset),
      metadata: text,
    }))
  )
  return null
}

async function memberCommitted({ member: id, partitions }) {
  const member = memberNamed(id)
  const { groupId, topic } = member
  const fetched = await (await admin()).fetchOffsets({ groupId, topics: [topic] })
  const found = {}
  for (const partition of partitions) found[partition] = [null, '']
  for (const { topic: fetchedTopic, partitions: listed } of fetched) {
    if (fetchedTopic !== topic) continue
    for (const { partition, offset, metadata } of listed) {
      if (partition in found) {
        found[partition] = [Number(offset) < 0 ? null : Number(offset), metadata || '']
      }
    }
  }
  return found
}

async function memberClose({ member: id }) {
  const member = members.get(id)
  members.delete(id)
  if (member !== undefined) await member.consumer.disconnect()
  return null
}

// -- admin -----------------------------------------------------------------------------

async function createTopic({ name, partitions, configs }) {
  const created = await (await admin()).createTopics({
    waitForLeaders: true,
    topics: [
      {
        topic: name,
        numPartitions: partitions,
        replicationFactor: 1,
        configEntries: Object.entries(configs).map(([key, value]) => ({ name: key, value })),
      },
    ],
  })
  // kafkajs answers false (not an error) when the broker said TOPIC_ALREADY_EXISTS.
  if (!created) throw Object.assign(new Error('kafkajs createTopics answered false'), { code: 36 })
  return null
}

async function listTopics() {
  return (await admin()).listTopics()
}

async function describeTopic({ name }) {
  const { topics } = await (await admin()).fetchTopicMetadata({ topics: [name] })
  return topics[0].partitions.length
}

async function deleteTopic({ name }) {
  await (await admin()).deleteTopics({ topics: [name] })
  return null
}

async function createPartitions({ name, total }) {
  await (await admin()).createPartitions({ topicPartitions: [{ topic: name, count: total }] })
  return null
}

async function describeConfigs({ topic }) {
  const { resources } = await (await admin()).describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
  })
  return Object.fromEntries(resources[0].configEntries.map(e => [e.configName, e.configValue]))
}

async function alterConfigs({ topic, configs }) {
  await (await admin()).alterConfigs({
    validateOnly: false,
    resources: [
      {
        type: ConfigResourceTypes.TOPIC,
        name: topic,
        configEntries: Object.entries(configs).map(([name, value]) => ({ name, value })),
      },
    ],
  })
  return null
}

async function listGroups() {
  return (await (await admin()).listGroups()).groups.map(group => group.groupId)
}

async function describeGroup({ groupId }) {
  const { groups } = await (await admin()).describeGroups([groupId])
  const group = groups[0]
  if (group.errorCode) throw Object.assign(new Error(`describing ${groupId}`), { code: group.errorCode })
  return { state: group.state, members: group.members.length }
}

async function deleteGroup({ groupId }) {
  await (await admin()).deleteGroups([groupId])
  return null
}

async function shutdown() {
  for (const id of [...members.keys()]) await memberClose({ member: id })
  if (adminClient !== null) await adminClient.disconnect()
  setImmediate(() => process.exit(0))
  return null
}

const OPERATIONS = {
  produce,
  produceTransactions,
  read,
  readAll,
  offsets,
  offsetForTime,
  memberJoin,
  memberPoll,
  memberAssignment,
  memberCommit,
  memberCommitted,
  memberClose,
  createTopic,
  listTopics,
  describeTopic,
  deleteTopic,
  createPartitions,
  describeConfigs,
  alterConfigs,
  listGroups,
  describeGroup,
  deleteGroup,
  shutdown,
}

// -- the request loop ------------------------------------------------------------------

/** The Kafka error code behind an error, wherever kafkajs nested it. */
function kafkaCode(error, seen = new Set()) {
  if (!error || typeof error !== 'object' || seen.has(error)) return null
  seen.add(error)
  if (typeof error.code === 'number') return error.code
  const nested = [error.cause, error.originalError, ...(error.errors || [])]
  for (const group of error.groups || []) nested.push(group.error)
  for (const inner of nested) {
    const code = kafkaCode(inner, seen)
    if (code !== null) return code
  }
  return null
}

function describeError(error) {
  return {
    name: (error && error.name) || 'Error',
    message: (error && error.message) || String(error),
    code: kafkaCode(error),
  }
}

function answer(reply) {
  process.stdout.write(JSON.stringify(reply) + '\n')
}

async function handle(line) {
  let request
  try {
    request = JSON.parse(line)
  } catch (error) {
    answer({ id: null, error: { name: 'BadRequest', message: `not JSON: ${line.slice(0, 80)}` } })
    return
  }
  const operation = OPERATIONS[request.op]
  if (operation === undefined) {
    answer({ id: request.id, error: { name: 'BadRequest', message: `unknown op ${request.op}` } })
    return
  }
  try {
    answer({ id: request.id, result: await operation(request.args || {}) })
  } catch (error) {
    answer({ id: request.id, error: describeError(error) })
  }
}

readline.createInterface({ input: process.stdin }).on('line', line => {
  if (line.trim()) handle(line)
})
process.stdin.on('end', () => shutdown())
