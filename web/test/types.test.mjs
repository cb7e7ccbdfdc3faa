// The types: the library's JSDoc passes TypeScript's strict checkJs, the
// .d.ts files compile against a typical use (and a real QueryClient), and
// they declare exactly what the modules export.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'

const run = promisify(execFile)
const TSC = 'node_modules/typescript/lib/tsc.js'

async function tsc(args) {
  try {
    await run(process.execPath, [TSC, ...args], { timeout: 60_000 })
  } catch (err) {
    assert.fail(`tsc ${args.join(' ')}:\n${err.stdout}${err.stderr}`)
  }
}

test('the library passes strict checkJs', { timeout: 90_000 }, async () => {
  await tsc(['--noEmit', '--allowJs', '--checkJs', '--strict', '--target', 'es2022', '--module', 'es2022',
    '--moduleResolution', 'bundler', '--lib', 'es2022,dom', '../static/coursestream.js', '../static/coursestream-tanstack.js'])
})

test('the .d.ts files compile against a typical use', { timeout: 90_000 }, async () => {
  await tsc(['-p', 'types'])
})

for (const name of ['coursestream', 'coursestream-tanstack']) {
  test(`${name}.d.ts declares what ${name}.js exports`, async () => {
    const mod = await import(`../static/${name}.js`)
    const dts = await readFile(new URL(`../static/${name}.d.ts`, import.meta.url), 'utf8')
    const declared = [...dts.matchAll(/^export declare (?:function|const|class) (\w+)/gm)].map((m) => m[1])
    if (/^export default \w+$/m.test(dts)) declared.push('default')
    assert.deepEqual(declared.sort(), Object.keys(mod).sort())
  })
}
