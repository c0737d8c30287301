// cron lines -> entries: every field form of cron, unique-cron, cron2 and
// cron-tab, the croner pattern each becomes, and errors naming file:line.
process.env.TZ = 'UTC';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCronOptions, CronEntry } from '../../src/plugins/cron/parse';
import { throwsConfig } from './config-helpers';
import { ini } from './cron-helpers';

const one = (line: string): CronEntry => {
  const e = parseCronOptions(ini(line + '\n'));
  assert.equal(e.length, 1);
  return e[0];
};
const fires = (e: CronEntry, from: string, n: number): string[] =>
  e.schedule.nextRuns(n, new Date(from)).map((d) => d.toISOString().slice(0, 16));
const MIN5 = '0,5,10,15,20,25,30,35,40,45,50,55';

test('cron: -1, -N and plain values become croner fields (-N as explicit multiples)', () => {
  let e = one('cron = -5 -1 -1 -1 6 cmd arg');
  assert.equal(e.pattern, `${MIN5} * * * 6`);
  assert.deepEqual(e.uwsgi, { minute: -5, hour: -1, day: -1, month: -1, week: 6 });
  assert.equal(e.command, 'cmd arg');
  assert.equal(e.key, 'cron');
  assert.equal(e.unique, false);
  assert.equal(e.harakiri, 0);
  assert.equal(e.where, 'v.ini:2');
  assert.equal(e.domAndDow, true);
  e = one('cron = 59 23 -1 -1 -1 myscript arg1');
  assert.equal(e.pattern, '59 23 * * *');
  assert.deepEqual(fires(e, '2024-01-01T00:00Z', 2), ['2024-01-01T23:59', '2024-01-02T23:59']);
  // day -7 is 7,14,21,28 (value % 7 == 0), not croner's */7 (1,8,15,22,29)
  e = one('cron = 0 0 -7 -1 -1 x');
  assert.equal(e.pattern, '0 0 7,14,21,28 * *');
  assert.deepEqual(fires(e, '2024-01-01T00:00Z', 5), ['2024-01-07T00:00', '2024-01-14T00:00', '2024-01-21T00:00', '2024-01-28T00:00', '2024-02-07T00:00']);
  assert.equal(one('cron = 0 0 1 -3 -1 x').pattern, '0 0 1 3,6,9,12 *');
  assert.equal(one('cron = 0 -6 -1 -1 -1 x').pattern, '0 0,6,12,18 * * *');
  assert.equal(one('cron = 0 -1 -1 -1 -2 x').pattern, '0 * * * 0,2,4,6'); // tm_wday 0-6: -2 never means 7
  assert.equal(one('cron = 0 -1 -1 -1 -7 x').pattern, '0 * * * 0');
  assert.equal(one('cron = -75 -1 -1 -1 -1 x').pattern, '0 * * * *'); // only 0 is a multiple of 75 in 0-59
  assert.equal(one('cron = -1 -1 -1 -1 -1 x').pattern, '* * * * *');
});

test('cron: weekday 7 is Sunday, 0 too', () => {
  const sun7 = one('cron = 0 12 -1 -1 7 x');
  const sun0 = one('cron = 0 12 -1 -1 0 x');
  assert.equal(sun7.pattern, '0 12 * * 0');
  assert.deepEqual(fires(sun7, '2024-01-01T00:00Z', 3), ['2024-01-07T12:00', '2024-01-14T12:00', '2024-01-21T12:00']);
  assert.deepEqual(fires(sun7, '2024-01-01T00:00Z', 10), fires(sun0, '2024-01-01T00:00Z', 10));
  for (const d of sun7.schedule.nextRuns(10, new Date('2024-01-01T00:00Z'))) assert.equal(d.getDay(), 0);
});

test('cron: day and weekday both plain numbers -> either matches (OR); with -1 or -N both must match (AND)', () => {
  // 2024-01-01 is a Monday. Day 15 OR Mondays:
  const or = one('cron = 0 0 15 -1 1 x');
  assert.equal(or.domAndDow, false);
  assert.deepEqual(fires(or, '2024-01-01T00:00Z', 5), ['2024-01-08T00:00', '2024-01-15T00:00', '2024-01-22T00:00', '2024-01-29T00:00', '2024-02-05T00:00']);
  assert.deepEqual(fires(or, '2024-02-05T00:00Z', 2), ['2024-02-12T00:00', '2024-02-15T00:00']); // the 15th is a Thursday
  // Days 7,14,21,28 AND Mondays:
  const and = one('cron = 0 0 -7 -1 1 x');
  assert.equal(and.domAndDow, true);
  assert.deepEqual(fires(and, '2024-01-01T00:00Z', 3), ['2024-10-07T00:00', '2024-10-14T00:00', '2024-10-21T00:00']);
  // Any day AND Mondays = Mondays; day 15 AND any weekday = the 15th.
  assert.deepEqual(fires(one('cron = 0 0 -1 -1 1 x'), '2024-01-01T00:00Z', 2), ['2024-01-08T00:00', '2024-01-15T00:00']);
  assert.deepEqual(fires(one('cron = 0 0 15 -1 -1 x'), '2024-01-01T00:00Z', 2), ['2024-01-15T00:00', '2024-02-15T00:00']);
  // 30 February never exists, but OR Mondays it fires on February's Mondays.
  assert.deepEqual(fires(one('cron = 0 0 30 2 1 x'), '2024-01-01T00:00Z', 2), ['2024-02-05T00:00', '2024-02-12T00:00']);
});

test('unique-cron is cron with unique=1; cron-harakiri is the default harakiri', () => {
  const [a, b] = parseCronOptions(ini('cron-harakiri = 30\nunique-cron = -1 -1 -1 -1 -1 a\ncron2 = harakiri=5 b\n'));
  assert.equal(a.key, 'unique-cron');
  assert.equal(a.unique, true);
  assert.equal(a.harakiri, 30);
  assert.equal(b.harakiri, 5);
});

test('cron2: every key, missing keys are any, unique and harakiri', () => {
  let e = one('cron2 = minute=39,hour=23,unique=1 /usr/bin/send_emails --all');
  assert.equal(e.pattern, '39 23 * * *');
  assert.equal(e.unique, true);
  assert.equal(e.command, '/usr/bin/send_emails --all');
  e = one('cron2 = minute=-15,hour=-2,day=-10,month=-6,week=7,harakiri=60 x');
  assert.equal(e.pattern, '0,15,30,45 0,2,4,6,8,10,12,14,16,18,20,22 10,20,30 6,12 0');
  assert.equal(e.domAndDow, true);
  assert.equal(e.harakiri, 60);
  assert.equal(e.unique, false);
  assert.equal(one('cron2 = day=1,week=1 x').domAndDow, false);
  assert.equal(one('cron2 = unique=0 x').pattern, '* * * * *');
});

test('cron-tab: standard five fields with ranges, lists, steps, names and @nicknames', () => {
  let e = one('cron-tab = */5 * * * * run this');
  assert.equal(e.pattern, '*/5 * * * *');
  assert.equal(e.command, 'run this');
  assert.equal(e.uwsgi, undefined);
  assert.deepEqual(fires(e, '2024-01-01T00:00Z', 2), ['2024-01-01T00:05', '2024-01-01T00:10']);
  e = one('cron-tab = 0 9-17/4 * * mon-fri x');
  assert.deepEqual(fires(e, '2024-01-05T10:00Z', 4), ['2024-01-05T13:00', '2024-01-05T17:00', '2024-01-08T09:00', '2024-01-08T13:00']);
  e = one('cron-tab = 0 0 1,15 * * x');
  assert.deepEqual(fires(e, '2024-01-01T00:00Z', 3), ['2024-01-15T00:00', '2024-02-01T00:00', '2024-02-15T00:00']);
  e = one('cron-tab = @daily x y');
  assert.equal(e.command, 'x y');
  assert.deepEqual(fires(e, '2024-01-01T00:00Z', 2), ['2024-01-02T00:00', '2024-01-03T00:00']);
  // Vixie cron's rule: both day fields restricted -> OR; either starting with '*' -> AND
  e = one('cron-tab = 0 0 13 * 5 x');
  assert.equal(e.domAndDow, false);
  assert.deepEqual(fires(e, '2024-09-01T00:00Z', 3), ['2024-09-06T00:00', '2024-09-13T00:00', '2024-09-20T00:00']);
  e = one('cron-tab = 0 0 */2 * 1 x');
  assert.equal(e.domAndDow, true);
  for (const d of e.schedule.nextRuns(20, new Date('2024-01-01T00:00Z'))) {
    assert.equal(d.getDay(), 1);
    assert.equal(d.getDate() % 2, 1);
  }
  assert.deepEqual(fires(one('cron-tab = 0 0 ? * 7 x'), '2024-01-01T00:00Z', 2), ['2024-01-07T00:00', '2024-01-14T00:00']);
});

test('what uWSGI silently ignores is an error naming file:line', () => {
  const bad = (line: string, re: RegExp) => throwsConfig(() => parseCronOptions(ini('master = true\n' + line + '\n')), re, 3);
  bad('cron = 1-5 -1 -1 -1 -1 x', /^v\.ini:3: cron: minute '1-5' is not a number .*cron-tab/);
  bad('cron = 0 1,15 -1 -1 -1 x', /^v\.ini:3: cron: hour '1,15' is not a number/);
  bad('cron = */5 -1 -1 -1 -1 x', /minute '\*\/5' is not a number/);
  bad('cron = * * * * * x', /minute '\*' is not a number/);
  bad('cron = 0 0 -1 -1 mon x', /week 'mon' is not a number/);
  bad('cron = 60 -1 -1 -1 -1 x', /minute 60 is out of range 0-59/);
  bad('cron = 0 24 -1 -1 -1 x', /hour 24 is out of range 0-23/);
  bad('cron = 0 0 0 -1 -1 x', /day 0 is out of range 1-31/);
  bad('cron = 0 0 32 -1 -1 x', /day 32 is out of range 1-31/);
  bad('cron = 0 0 -1 0 -1 x', /month 0 is out of range 1-12/);
  bad('cron = 0 0 -1 13 -1 x', /month 13 is out of range 1-12/);
  bad('cron = 0 0 -1 -1 8 x', /week 8 is out of range 0-7/);
  bad('cron = -0 0 -1 -1 -1 x', /-N needs N >= 1/);
  bad('cron = 0 0 -32 -1 -1 x', /day '-32' never matches/);
  bad('cron = 0 0 -1 -13 -1 x', /month '-13' never matches/);
  bad('cron = 0 0 31 2 -1 x', /never fires/);
  bad('cron = -1 -1 -1 -1 -1', /^v\.ini:3: cron: missing command/);
  bad('cron = -1 -1 -1 -1 -1   ', /missing command/);
  bad('cron = -1 -1 x', /expected <minute> <hour> <day> <month> <weekday> <command>/);
  bad('unique-cron = -1 -1 -1 -1 x y', /^v\.ini:3: unique-cron: week 'x' is not a number/);
  bad('cron2 = minute=1', /^v\.ini:3: cron2: missing command/);
  bad('cron2 = minute=1,legion=mylegion x', /cron2: legion is not supported/);
  bad('cron2 = minute=1,second=3 x', /unknown key 'second'/);
  bad('cron2 = minute x', /'minute' is not key=value/);
  bad('cron2 = minute=1,minute=2 x', /minute given twice/);
  bad('cron2 = minute=1-5 x', /minute '1-5' is not a number/);
  bad('cron2 = unique=yes x', /unique must be 0 or 1/);
  bad('cron2 = harakiri=-1 x', /harakiri must be a number of seconds/);
  bad('cron2 = weekday=1 x', /unknown key 'weekday'/);
  bad('cron-tab = 61 * * * * x', /^v\.ini:3: cron-tab: .*minute/);
  bad('cron-tab = @reboot x', /^v\.ini:3: cron-tab: .*@reboot/);
  bad('cron-tab = * * * * *', /cron-tab: missing command/);
  bad('cron-tab = * * *', /expected five crontab fields/);
  bad('cron-tab = 0 0 30 2 * x', /never fires/);
  bad('cron-harakiri = soon', /cron-harakiri: 'soon' is not an integer/);
});

test('a command with a line break (possible in YAML/JSON) is refused: the runtime channel is line-based', () => {
  throwsConfig(() => parseCronOptions([{ key: 'cron', value: '-1 -1 -1 -1 -1 a\nb', source: { file: 'v.yaml', line: 4 } }]),
    /^v\.yaml:4: cron: the command may not contain a line break/, 4);
  throwsConfig(() => parseCronOptions([{ key: 'cron-tab', value: '* * * * * a\rb', source: { file: 'v.json' } }]), /^v\.json: cron-tab: .*line break/);
});

test('only cron options are read, in file order, keeping their lines', () => {
  const e = parseCronOptions(ini('cron = 0 0 -1 -1 -1 a\nexec-as-root = true\ncron-tab = @hourly b\ncron2 = hour=1 c\n'));
  assert.deepEqual(e.map((x) => [x.key, x.command, x.source.line]), [['cron', 'a', 2], ['cron-tab', 'b', 4], ['cron2', 'c', 5]]);
  assert.deepEqual(parseCronOptions(ini('master = true\n')), []);
});
