// index.ts: the config API the rest of moat uses.
export * from './types';
export { loadFile, loadArgv, parseConfig, formatOf } from './load';
export type { ConfigFormat } from './load';
export { parseIni } from './ini';
export { parseJson } from './json';
export { parseYaml } from './yaml';
export { parseXml } from './xml';
export { parseFlags } from './flags';
export { OPTIONS, findOption, canonicalKey, checkOptions, didYouMean, parseBool } from './schema';
export { optionTableMarkdown } from './options-doc';
export type { OptionSpec, OptionKind, OptionStatus, CheckedOptions } from './schema';
export { routerConfig, deviceConfig } from './router-config';
export type { AccountFiles } from './accounts';
export { formatSource, splitQuoted } from './option';
