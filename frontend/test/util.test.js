// Pure helpers of the console (node --test; no browser). `npm test` in frontend/.
import assert from 'node:assert/strict';
import test from 'node:test';
import {
  can, fmtAgo, fmtDuration, fromLocalInput, hashFor, indexAtTime, parseHash, positionAt, queryString, tileOrigin,
  toLocalInput, validImei,
} from '../src/util.js';

test('IMEI: 15 digits with the Luhn check digit', () => {
  assert.equal(validImei('490154203237518'), true); // the classic example IMEI
  assert.equal(validImei('490154203237517'), false);
  assert.equal(validImei('49015420323751'), false);
  assert.equal(validImei('4901542032375180'), false);
  assert.equal(validImei('49015420323751a'), false);
});

test('IMEI check agrees with the simulator fleet the server accepted', () => {
  for (const imei of ['860120433798589', '860190165030691', '860120433799074']) assert.equal(validImei(imei), true, imei);
});

test('query strings repeat array parameters and drop empty ones', () => {
  assert.equal(queryString({ imei: ['1', '2'], type: 'CRASH', status: '', since: null, x: [] }), '?imei=1&imei=2&type=CRASH');
  assert.equal(queryString({}), '');
  assert.equal(queryString({ q: 'a b&c' }), '?q=a+b%26c');
});

test('hash routes round-trip', () => {
  const h = hashFor('alarms', { imei: '490154203237518', id: 'x y' });
  assert.deepEqual(parseHash(h), { path: 'alarms', params: { imei: '490154203237518', id: 'x y' } });
  assert.deepEqual(parseHash(''), { path: '', params: {} });
  assert.deepEqual(parseHash('#/map'), { path: 'map', params: {} });
});

test('roles: operators acknowledge and send commands, only admins administer', () => {
  assert.equal(can('admin', 'admin'), true);
  assert.equal(can('operator', 'alarm.ack'), true);
  assert.equal(can('operator', 'command.send'), true);
  assert.equal(can('operator', 'admin'), false);
  assert.equal(can('viewer', 'alarm.ack'), false);
  assert.equal(can('viewer', 'command.send'), false);
  assert.equal(can(undefined, 'admin'), false);
});

test('datetime-local values convert to UTC and back', () => {
  const iso = fromLocalInput('2026-11-28T10:15');
  assert.equal(new Date(iso).getHours(), 10); // local wall clock in, same wall clock out
  assert.equal(toLocalInput(iso), '2026-11-28T10:15');
  assert.equal(fromLocalInput(''), null);
  assert.equal(fromLocalInput('nonsense'), null);
});

test('relative times and durations', () => {
  const now = Date.parse('2026-11-28T12:00:00Z');
  assert.equal(fmtAgo('2026-11-28T11:59:58Z', now), 'now');
  assert.equal(fmtAgo('2026-11-28T11:59:30Z', now), '30 s ago');
  assert.equal(fmtAgo('2026-11-28T11:55:00Z', now), '5 min ago');
  assert.equal(fmtAgo('2026-11-28T09:00:00Z', now), '3 h ago');
  assert.equal(fmtAgo(null, now), 'never');
  assert.equal(fmtDuration(45), '45 s');
  assert.equal(fmtDuration(750), '12 min 30 s');
  assert.equal(fmtDuration(3900), '1 h 05 min');
});

test('playback position: binary search and interpolation between fixes', () => {
  const points = [{ lat: 0, lon: 0 }, { lat: 10, lon: 20 }, { lat: 10, lon: 30 }];
  const times = [1000, 2000, 4000];
  assert.equal(indexAtTime(times, 500), -1);
  assert.equal(indexAtTime(times, 1000), 0);
  assert.equal(indexAtTime(times, 3999), 1);
  assert.equal(indexAtTime(times, 9999), 2);
  assert.deepEqual(positionAt(points, times, 1500), { lat: 5, lon: 10, index: 0 });
  assert.deepEqual(positionAt(points, times, 3000), { lat: 10, lon: 25, index: 1 });
  assert.deepEqual(positionAt(points, times, 5000), { lat: 10, lon: 30, index: 2 });
  assert.deepEqual(positionAt(points, times, 0), { lat: 0, lon: 0, index: 0 });
  assert.equal(positionAt([], [], 0), null);
});

test('tile origin for the CSP', () => {
  assert.equal(tileOrigin('https://tile.openstreetmap.org/{z}/{x}/{y}.png'), 'https://tile.openstreetmap.org');
  assert.equal(tileOrigin('https://{s}.tile.example.com:8443/{z}/{x}/{y}.png'), 'https://*.tile.example.com:8443');
  assert.equal(tileOrigin('/tiles/{z}/{x}/{y}.png'), null);
});
