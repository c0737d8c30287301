// index.ts: the cron plugin's public surface (see docs/cron.md).
//
// Attaching it to a vassal (emperor side):
//   const entries = parseCronOptions(checkedOptions);          // ConfigError names file:line
//   const cron = new CronScheduler({ vassal, entries, runner, metrics });
//   // runner.run(id, cmd)  -> send `job ID CMD`;  runner.kill(id) -> `job-kill ID`
//   // on `job-start ID PID`        -> cron.onStart(id, pid)
//   // on `job-exit VALUE`          -> const x = parseJobExit(VALUE); cron.onExit(x.id, x.status, x.ms)
//   cron.start() after `ready`; cron.stop() before `stop`.
export { parseCronOptions, parseCronOption, CRON_KEYS } from './parse';
export type { CronEntry, CronKey, UwsgiTime } from './parse';
export { CronScheduler } from './scheduler';
export type { CronSchedulerOptions, CronStartEvent, CronSkipEvent, CronExitEvent } from './scheduler';
export { CronMetrics } from './metrics';
export type { CronResult, SkipReason } from './metrics';
export { LocalJobRunner, parseJobStatus, parseJobExit, formatJobStatus } from './runner';
export type { JobRunner, JobEvents, JobStatus, LocalJobRunnerOptions } from './runner';
export { FakeClock, systemClock } from './clock';
export type { Clock, TimerHandle } from './clock';
