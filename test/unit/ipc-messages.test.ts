// ipc-messages.test.ts: the one definition of the emperor <-> router process
// messages. Each side acts only on messages of its own direction with a
// known type; anything else from the channel is dropped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFromRouterProcess, decodeToRouterProcess } from '../../src/router/ipc-messages';

test('each side decodes its own direction\'s messages and nothing else', () => {
  assert.deepEqual(decodeToRouterProcess({ t: 'reload', why: 'SIGHUP' }), { t: 'reload', why: 'SIGHUP' });
  assert.deepEqual(decodeToRouterProcess({ t: 'sections', keys: ['emperor'] }), { t: 'sections', keys: ['emperor'] });
  assert.deepEqual(decodeFromRouterProcess({ t: 'fatal', reason: 'tun gone' }), { t: 'fatal', reason: 'tun gone' });
  assert.equal(decodeToRouterProcess({ t: 'fatal', reason: 'x' }), undefined, 'a router-process message is not one for it');
  assert.equal(decodeFromRouterProcess({ t: 'stop' }), undefined, 'an emperor message is not one for the emperor');
  for (const junk of [null, undefined, 'stop', 42, [], {}, { t: 7 }, { t: 'toString' }, { t: '__proto__' }]) {
    assert.equal(decodeToRouterProcess(junk), undefined, JSON.stringify(junk));
    assert.equal(decodeFromRouterProcess(junk), undefined, JSON.stringify(junk));
  }
});
