// The slice of OData v4 query options the Tidsbanken fake understands: $filter (comparisons,
// and/or/not, parentheses, contains/startswith/endswith/tolower/toupper), $orderby, $select.
// Property names are case-insensitive because Tidsbanken's own examples use lower-case names
// while Sesam uses PascalCase (docs/vendor-apis.md).
// Type errors follow ASP.NET OData's wording, so a client that quotes a numeric key
// (`Id eq '100'` on Ansatt) fails here as it would against the real API.

export type EdmType = 'int' | 'number' | 'string' | 'bool' | 'date' | 'datetime';

/** Property name (canonical casing) → type, for one entity set. */
export type EntityType = { name: string; properties: Record<string, EdmType> };

export class ODataError extends Error {}

type LiteralType = EdmType | 'null';
type Node =
  | { kind: 'prop'; name: string; type: EdmType }
  | { kind: 'lit'; value: unknown; type: LiteralType }
  | { kind: 'cmp'; op: string; left: Node; right: Node }
  | { kind: 'and' | 'or'; left: Node; right: Node }
  | { kind: 'not'; operand: Node }
  | { kind: 'call'; name: string; args: Node[]; type: EdmType };

type Token =
  | { t: 'punct'; v: '(' | ')' | ',' }
  | { t: 'string'; v: string }
  | { t: 'number'; v: number; int: boolean }
  | { t: 'date'; v: string; time: boolean }
  | { t: 'word'; v: string };

const COMPARISONS = new Set(['eq', 'ne', 'gt', 'ge', 'lt', 'le']);
const EDM_NAMES: Record<LiteralType, string> = {
  int: 'Edm.Int32',
  number: 'Edm.Double',
  string: 'Edm.String',
  bool: 'Edm.Boolean',
  date: 'Edm.Date',
  datetime: 'Edm.DateTimeOffset',
  null: 'null',
};
const OP_NAMES: Record<string, string> = {
  eq: 'Equal',
  ne: 'NotEqual',
  gt: 'GreaterThan',
  ge: 'GreaterThanOrEqual',
  lt: 'LessThan',
  le: 'LessThanOrEqual',
};
const DATE_LITERAL =
  /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2}))?(?![\w:.-])/;

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    const ch = text[i]!;
    if (/\s/.test(ch)) {
      i += 1;
    } else if (ch === '(' || ch === ')' || ch === ',') {
      tokens.push({ t: 'punct', v: ch });
      i += 1;
    } else if (ch === "'") {
      let value = '';
      let j = i + 1;
      for (;;) {
        if (j >= text.length) throw new ODataError(`Unterminated string literal at position ${i}`);
        if (text[j] === "'") {
          if (text[j + 1] === "'") {
            value += "'";
            j += 2;
            continue;
          }
          break;
        }
        value += text[j];
        j += 1;
      }
      tokens.push({ t: 'string', v: value });
      i = j + 1;
    } else if (DATE_LITERAL.test(rest)) {
      const literal = DATE_LITERAL.exec(rest)![0];
      tokens.push({ t: 'date', v: literal, time: literal.includes('T') });
      i += literal.length;
    } else if (/^-?\d/.test(rest)) {
      const literal = /^-?\d+(\.\d+)?([eE][+-]?\d+)?[dDmMlL]?/.exec(rest)![0];
      const numeric = literal.replace(/[dDmMlL]$/, '');
      tokens.push({ t: 'number', v: Number(numeric), int: /^-?\d+$/.test(numeric) });
      i += literal.length;
    } else if (/^[A-Za-z_]/.test(rest)) {
      const word = /^[A-Za-z_][A-Za-z0-9_]*/.exec(rest)![0];
      tokens.push({ t: 'word', v: word });
      i += word.length;
    } else {
      throw new ODataError(
        `Syntax error: character '${ch}' is not valid at position ${i} in '${text}'.`,
      );
    }
  }
  return tokens;
}

/** Looks a property up case-insensitively; throws the OData "could not find" error. */
export function resolveProperty(entity: EntityType, name: string): string {
  const lower = name.toLowerCase();
  const found = Object.keys(entity.properties).find((key) => key.toLowerCase() === lower);
  if (!found) {
    throw new ODataError(`Could not find a property named '${name}' on type '${entity.name}'.`);
  }
  return found;
}

class Parser {
  private pos = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly entity: EntityType,
  ) {}

  parse(): Node {
    const node = this.parseOr();
    if (this.pos < this.tokens.length) {
      throw new ODataError(
        `Syntax error at token ${this.pos + 1}: unexpected '${this.describe()}'.`,
      );
    }
    return node;
  }

  private describe(): string {
    const token = this.tokens[this.pos];
    return token ? String(token.v) : 'end of input';
  }

  private peekWord(word: string): boolean {
    const token = this.tokens[this.pos];
    return token?.t === 'word' && token.v.toLowerCase() === word;
  }

  private expectPunct(v: '(' | ')' | ','): void {
    const token = this.tokens[this.pos];
    if (token?.t !== 'punct' || token.v !== v) {
      throw new ODataError(`Syntax error: expected '${v}' but found '${this.describe()}'.`);
    }
    this.pos += 1;
  }

  private parseOr(): Node {
    let left = this.parseAnd();
    while (this.peekWord('or')) {
      this.pos += 1;
      left = { kind: 'or', left, right: this.parseAnd() };
    }
    return left;
  }

  private parseAnd(): Node {
    let left = this.parseUnary();
    while (this.peekWord('and')) {
      this.pos += 1;
      left = { kind: 'and', left, right: this.parseUnary() };
    }
    return left;
  }

  private parseUnary(): Node {
    if (this.peekWord('not')) {
      this.pos += 1;
      return { kind: 'not', operand: this.parseUnary() };
    }
    const left = this.parseOperand();
    const token = this.tokens[this.pos];
    if (token?.t === 'word' && COMPARISONS.has(token.v.toLowerCase())) {
      this.pos += 1;
      const op = token.v.toLowerCase();
      const right = this.parseOperand();
      assertComparable(left, right, op);
      return { kind: 'cmp', op, left, right };
    }
    return left;
  }

  private parseOperand(): Node {
    const token = this.tokens[this.pos];
    if (!token) throw new ODataError('Syntax error: unexpected end of $filter.');
    this.pos += 1;
    switch (token.t) {
      case 'punct': {
        if (token.v !== '(') throw new ODataError(`Syntax error: unexpected '${token.v}'.`);
        const inner = this.parseOr();
        this.expectPunct(')');
        return inner;
      }
      case 'string':
        return { kind: 'lit', value: token.v, type: 'string' };
      case 'number':
        return { kind: 'lit', value: token.v, type: token.int ? 'int' : 'number' };
      case 'date':
        return { kind: 'lit', value: token.v, type: token.time ? 'datetime' : 'date' };
      case 'word': {
        const lower = token.v.toLowerCase();
        if (lower === 'true' || lower === 'false') {
          return { kind: 'lit', value: lower === 'true', type: 'bool' };
        }
        if (lower === 'null') return { kind: 'lit', value: null, type: 'null' };
        const next = this.tokens[this.pos];
        if (next?.t === 'punct' && next.v === '(') return this.parseCall(lower);
        const name = resolveProperty(this.entity, token.v);
        return { kind: 'prop', name, type: this.entity.properties[name]! };
      }
    }
  }

  private parseCall(name: string): Node {
    const arity: Record<string, [number, EdmType]> = {
      contains: [2, 'bool'],
      startswith: [2, 'bool'],
      endswith: [2, 'bool'],
      tolower: [1, 'string'],
      toupper: [1, 'string'],
    };
    const signature = arity[name];
    if (!signature) throw new ODataError(`An unknown function with name '${name}' was found.`);
    this.expectPunct('(');
    const args: Node[] = [this.parseOr()];
    while (this.tokens[this.pos]?.t === 'punct' && this.tokens[this.pos]!.v === ',') {
      this.pos += 1;
      args.push(this.parseOr());
    }
    this.expectPunct(')');
    if (args.length !== signature[0]) {
      throw new ODataError(`Function '${name}' takes ${signature[0]} argument(s).`);
    }
    for (const arg of args) {
      if (typeOf(arg) !== 'string' && typeOf(arg) !== 'null') {
        throw new ODataError(
          `No function signature for the function with name '${name}' matches the specified arguments.`,
        );
      }
    }
    return { kind: 'call', name, args, type: signature[1] };
  }
}

function typeOf(node: Node): LiteralType {
  switch (node.kind) {
    case 'prop':
    case 'lit':
    case 'call':
      return node.type;
    default:
      return 'bool';
  }
}

function family(type: LiteralType): string {
  if (type === 'int' || type === 'number') return 'numeric';
  if (type === 'date' || type === 'datetime') return 'temporal';
  return type;
}

function assertComparable(left: Node, right: Node, op: string): void {
  const a = typeOf(left);
  const b = typeOf(right);
  if (a === 'null' || b === 'null' || family(a) === family(b)) return;
  throw new ODataError(
    `A binary operator with incompatible types was detected. Found operand types '${EDM_NAMES[a]}' and '${EDM_NAMES[b]}' for operator kind '${OP_NAMES[op] ?? op}'.`,
  );
}

function evaluate(node: Node, record: Record<string, unknown>): unknown {
  switch (node.kind) {
    case 'prop':
      return record[node.name] ?? null;
    case 'lit':
      return node.value;
    case 'and':
      return evaluate(node.left, record) === true && evaluate(node.right, record) === true;
    case 'or':
      return evaluate(node.left, record) === true || evaluate(node.right, record) === true;
    case 'not':
      return evaluate(node.operand, record) !== true;
    case 'call': {
      const args = node.args.map((arg) => evaluate(arg, record));
      if (args.some((arg) => arg === null)) return node.type === 'bool' ? false : null;
      const [a, b] = args as string[];
      if (node.name === 'contains') return a!.includes(b!);
      if (node.name === 'startswith') return a!.startsWith(b!);
      if (node.name === 'endswith') return a!.endsWith(b!);
      return node.name === 'tolower' ? a!.toLowerCase() : a!.toUpperCase();
    }
    case 'cmp': {
      const temporal = family(typeOf(node.left)) === 'temporal';
      const left = evaluate(node.left, record);
      const right = evaluate(node.right, record);
      if (left === null || right === null) {
        if (node.op === 'eq') return left === right;
        if (node.op === 'ne') return left !== right;
        return false;
      }
      const order = compareValues(left, right, temporal);
      switch (node.op) {
        case 'eq':
          return order === 0;
        case 'ne':
          return order !== 0;
        case 'gt':
          return order > 0;
        case 'ge':
          return order >= 0;
        case 'lt':
          return order < 0;
        default:
          return order <= 0;
      }
    }
  }
}

/** Orders two non-null values of one family; temporal strings compare as instants. */
export function compareValues(a: unknown, b: unknown, temporal = false): number {
  if (temporal) return Date.parse(String(a)) - Date.parse(String(b));
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  const x = String(a);
  const y = String(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Compiles `$filter` into a predicate; throws ODataError on bad syntax or types. */
export function compileFilter(
  text: string,
  entity: EntityType,
): (record: Record<string, unknown>) => boolean {
  const ast = new Parser(tokenize(text), entity).parse();
  if (typeOf(ast) !== 'bool')
    throw new ODataError('The $filter expression must evaluate to a boolean.');
  return (record) => evaluate(ast, record) === true;
}

/** `$orderby=Id desc, Navn` → a comparator (nulls first, as SQL Server sorts them). */
export function compileOrderBy(
  text: string,
  entity: EntityType,
): (a: Record<string, unknown>, b: Record<string, unknown>) => number {
  const keys = text.split(',').map((part) => {
    const [name = '', direction = 'asc', ...extra] = part.trim().split(/\s+/);
    if (extra.length > 0 || !['asc', 'desc'].includes(direction.toLowerCase())) {
      throw new ODataError(`Syntax error in $orderby at '${part.trim()}'.`);
    }
    const property = resolveProperty(entity, name);
    const type = entity.properties[property]!;
    return {
      property,
      temporal: family(type) === 'temporal',
      sign: direction.toLowerCase() === 'desc' ? -1 : 1,
    };
  });
  return (a, b) => {
    for (const key of keys) {
      const x = a[key.property] ?? null;
      const y = b[key.property] ?? null;
      if (x === y) continue;
      const order = x === null ? -1 : y === null ? 1 : compareValues(x, y, key.temporal);
      if (order !== 0) return key.sign * order;
    }
    return 0;
  };
}

/** `$select=*` or a list → the canonical property names to return (undefined = all). */
export function resolveSelect(text: string, entity: EntityType): string[] | undefined {
  const parts = text.split(',').map((part) => part.trim());
  if (parts.includes('*')) return undefined;
  return parts.map((part) => resolveProperty(entity, part));
}
