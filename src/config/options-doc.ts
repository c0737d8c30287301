// options-doc.ts: the option table as Markdown (docs/options.md and the
// README's table, written by gen-docs.ts): one row per option with its
// default, bounds or values, consumer, vassal-file use and uWSGI status.
import { OPTIONS, OptionSpec, OptionStatus, vassalUse } from './schema';

const STATUS_TEXT: Record<OptionStatus, string> = {
  implemented: 'implemented', accepted: 'accepted, no effect', ignored: 'ignored (warning)',
  refused: 'refused', planned: 'planned',
};

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const code = (s: string): string => '`' + s + '`';

function range(s: OptionSpec): string {
  const unit = s.unit ? ' ' + s.unit : '';
  if (s.min !== undefined || s.max !== undefined) return `${s.min ?? ''}..${s.max ?? ''}${unit}`;
  if (s.values) return s.values.map(code).join(', ');
  return unit.trim();
}

function inVassal(s: OptionSpec): string {
  const u = vassalUse(s);
  switch (u.use) {
    case 'applies': return s.runtime ? `yes (${code(s.runtime)})` : 'yes';
    case 'implicit': return 'always so';
    case 'warns': return 'warning';
    case 'refused': return 'error';
  }
}

/** The README option table. */
export function optionTableMarkdown(): string {
  const rows = OPTIONS.map((s) => {
    const name = code(s.name) + (s.aliases?.length ? ' (' + s.aliases.map(code).join(', ') + ')' : '');
    const status = s.origin === 'moat' ? 'moat only' : STATUS_TEXT[s.status] + (s.note ? ': ' + s.note : '');
    const desc = s.description + (s.origin === 'moat' && s.note ? ` (${s.note})` : '');
    const def = s.default === undefined ? '' : code(String(s.default));
    return `| ${cell(name)} | ${cell(def)} | ${cell(range(s))} | ${s.consumer} | ${inVassal(s)} | ${cell(desc)} | ${cell(status)} |`;
  });
  return ['| Option | Default | Bounds | Read by | In a vassal file | Description | uWSGI |', '|---|---|---|---|---|---|---|', ...rows].join('\n') + '\n';
}
