// The pure parts of sharing, in Node: the cursor, the roster's start
// positions, the share key and the token's expiry.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { advanceTo, formatCursor, parseCursor, reached } from '../static/coursestream/cursor.js'
import { Roster, samePositions } from '../static/coursestream/roster.js'
import { credentialOf, renewDelay, shareKey, tokenExpiry } from '../static/coursestream/share-key.js'

test('cursor: format and parse round-trip; ids with colons; bad entries skipped', () => {
  const p = new Map([['course-a', '5'], ['org:b', '0']])
  assert.equal(formatCursor(p), 'course-a:5,org:b:0')
  assert.deepEqual([...parseCursor('course-a:5,org:b:0')], [...p])
  assert.deepEqual([...parseCursor('x,:3,a:01,b:7')], [['b', '7']])
})

test('cursor: advanceTo never moves back; reached compares per course', () => {
  const p = new Map([['a', '9']])
  assert.equal(advanceTo(p, 'a', '10'), true)
  assert.equal(advanceTo(p, 'a', '2'), false)
  assert.equal(p.get('a'), '10')
  assert.equal(reached(p, new Map([['a', '10']])), true)
  assert.equal(reached(p, new Map([['a', '11']])), false)
  assert.equal(reached(p, new Map([['b', '1']])), false)
})

test('roster: the stream keeps its position unless a member newly asks from further back', () => {
  const r = new Roster()
  r.set('tab1', { a: '5', b: '3' })
  let start = r.startFrom(new Map())
  assert.deepEqual([...start], [['a', '5'], ['b', '3']])
  // The stream moved on; tab1 reports again (it lags): no rewind.
  const now = new Map([['a', '8'], ['b', '3']])
  r.set('tab1', { a: '7', b: '3' })
  assert.equal(samePositions(r.startFrom(now), now), true)
  // tab2 newly asks for a from 2: the stream goes back to 2, adds c.
  r.set('tab2', { a: '2', c: '0' })
  start = r.startFrom(now)
  assert.deepEqual([...start], [['a', '2'], ['b', '3'], ['c', '0']])
  // tab1 closes: b goes.
  r.remove('tab1')
  assert.deepEqual([...r.startFrom(start)], [['a', '2'], ['c', '0']])
  assert.deepEqual(r.wanting('a'), ['tab2'])
  r.remove('tab2')
  assert.equal(r.empty, true)
})

function jwt(claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url')
  return `${b64({ alg: 'HS256' })}.${b64(claims)}.sig`
}

test('share key: same claims at different times share; other scopes, types, bases do not', () => {
  const f = { base: 'http://x/', withCredentials: false, types: [], coalesce: '', requested: 'auto', fallbackTo: 'poll' }
  const t1 = credentialOf(jwt({ courses: ['a'], exp: 100, iat: 1 }))
  const t2 = credentialOf(jwt({ courses: ['a'], exp: 200, iat: 2 }))
  const t3 = credentialOf(jwt({ courses: ['b'], exp: 200 }))
  assert.equal(shareKey(f, t1), shareKey(f, t2))
  assert.notEqual(shareKey(f, t1), shareKey(f, t3))
  assert.notEqual(shareKey(f, t1), shareKey({ ...f, types: ['quiz'] }, t1))
  assert.notEqual(shareKey(f, t1), shareKey({ ...f, base: 'http://y/' }, t1))
  assert.equal(credentialOf(null), '')
})

test('token expiry: read from the payload; renewed a minute ahead, or a quarter of its life', () => {
  assert.equal(tokenExpiry(jwt({ exp: 1000 })), 1_000_000)
  assert.ok(Number.isNaN(tokenExpiry('opaque')))
  assert.ok(Number.isNaN(tokenExpiry(jwt({ sub: 'u' }))))
  assert.equal(renewDelay(3_600_000, 0), 3_540_000)
  assert.equal(renewDelay(8_000, 0), 6_000)
  assert.equal(renewDelay(1_000, 0), 500)
  assert.equal(renewDelay(0, 10), 0)
})
