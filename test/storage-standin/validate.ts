import { ERRORS } from './errors.ts';

/** The JSON-schema subset the real server's route schemas use (src/http/routes/**, src/http/schemas/**). */
export interface Schema {
  type?: 'object' | 'string' | 'integer' | 'boolean' | 'array';
  nullable?: boolean;
  properties?: Record<string, Schema>;
  required?: readonly string[];
  minProperties?: number;
  minimum?: number;
  enum?: readonly string[];
  pattern?: string;
  items?: Schema;
  minItems?: number;
  maxItems?: number;
  anyOf?: readonly Schema[];
}

/** The parts of a request Fastify validates, in the order it validates them. */
export type RequestPart = 'params' | 'body' | 'querystring' | 'headers';

interface Slot {
  get(): unknown;
  set(value: unknown): void;
}

const FAIL = Symbol('coercion failed');

/**
 * Validates one part of a request as Fastify 5 does with its default ajv options (`coerceTypes: 'array'`,
 * `allErrors: false`): values are coerced in place (`"60"` becomes 60), and the first failure throws the 400 the
 * real server renders, worded by ajv and prefixed with the part: `body/expiresIn must be >= 1`,
 * `headers must have required property 'authorization'`. Returns the (possibly coerced) value.
 */
export function validate(schema: Schema, value: unknown, part: RequestPart): unknown {
  let current = value;
  const problems = check(schema, { get: () => current, set: (v) => (current = v) }, '');
  if (problems.length > 0) throw ERRORS.validation(problems.map((p) => `${part}${p.path} ${p.message}`).join(', '));
  return current;
}

interface Problem {
  path: string;
  message: string;
}

/** ajv's order: type (with coercion), then the untyped keywords (enum, anyOf), then those of the value's type. */
function check(schema: Schema, slot: Slot, path: string): Problem[] {
  let value = slot.get();
  if (value === null && schema.nullable) return [];
  if (schema.type && !is(schema.type, value)) {
    let coerced = coerce(schema.type, value);
    // A nullable type is also coerced to null ("", 0, false); the message still names only `type`.
    if (coerced === FAIL && schema.nullable && (value === '' || value === 0 || value === false)) coerced = null;
    if (coerced === FAIL) return [{ path, message: `must be ${schema.type}` }];
    slot.set(coerced);
    value = coerced;
  }
  if (schema.enum && !schema.enum.includes(value as string)) return [{ path, message: 'must be equal to one of the allowed values' }];
  if (schema.anyOf) {
    const failed: Problem[] = [];
    let passed = false;
    for (const branch of schema.anyOf) {
      const problems = check(branch, slot, path);
      passed = problems.length === 0;
      if (passed) break;
      failed.push(...problems);
    }
    // ajv keeps every branch's errors, and Fastify's formatter joins them all.
    if (!passed) return [...failed, { path, message: 'must match a schema in anyOf' }];
    value = slot.get(); // a branch may have coerced it
  }
  if (typeof value === 'number' && schema.minimum !== undefined && value < schema.minimum) return [{ path, message: `must be >= ${schema.minimum}` }];
  if (typeof value === 'string' && schema.pattern && !new RegExp(schema.pattern, 'u').test(value)) return [{ path, message: `must match pattern "${schema.pattern}"` }];
  if (Array.isArray(value)) return checkArray(schema, value, path);
  if (is('object', value)) return checkObject(schema, value as Record<string, unknown>, path);
  return [];
}

function checkArray(schema: Schema, value: unknown[], path: string): Problem[] {
  if (schema.maxItems !== undefined && value.length > schema.maxItems) return [{ path, message: `must NOT have more than ${schema.maxItems} items` }];
  if (schema.minItems !== undefined && value.length < schema.minItems) return [{ path, message: `must NOT have fewer than ${schema.minItems} items` }];
  if (schema.items) {
    for (let i = 0; i < value.length; i++) {
      const problems = check(schema.items, { get: () => value[i], set: (v) => (value[i] = v) }, `${path}/${i}`);
      if (problems.length > 0) return problems;
    }
  }
  return [];
}

function checkObject(schema: Schema, value: Record<string, unknown>, path: string): Problem[] {
  if (schema.minProperties !== undefined && Object.keys(value).length < schema.minProperties) {
    return [{ path, message: `must NOT have fewer than ${schema.minProperties} properties` }];
  }
  for (const name of schema.required ?? []) {
    if (value[name] === undefined) return [{ path, message: `must have required property '${name}'` }];
  }
  for (const [name, sub] of Object.entries(schema.properties ?? {})) {
    if (value[name] === undefined) continue;
    const problems = check(sub, { get: () => value[name], set: (v) => (value[name] = v) }, `${path}/${name.replace(/~/g, '~0').replace(/\//g, '~1')}`);
    if (problems.length > 0) return problems;
  }
  return [];
}

function is(type: NonNullable<Schema['type']>, value: unknown): boolean {
  switch (type) {
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value);
    case 'array':
      return Array.isArray(value);
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value);
    default:
      return typeof value === type;
  }
}

/** ajv's `coerceTypes: 'array'` rules: strings, booleans and null to scalars, a scalar into a one-item array and back. */
function coerce(type: NonNullable<Schema['type']>, value: unknown): unknown {
  if (type === 'array') return value === null || ['string', 'number', 'boolean'].includes(typeof value) ? [value] : FAIL;
  if (Array.isArray(value)) return value.length !== 1 ? FAIL : is(type, value[0]) ? value[0] : coerce(type, value[0]);
  switch (type) {
    case 'integer':
      if (typeof value === 'boolean' || value === null) return Number(value);
      // ajv: `data && data == +data && !(data % 1)`
      return typeof value === 'string' && value.trim() !== '' && Number.isInteger(Number(value)) ? Number(value) : FAIL;
    case 'string':
      if (value === null) return '';
      return typeof value === 'number' || typeof value === 'boolean' ? String(value) : FAIL;
    case 'boolean':
      if (value === 'true' || value === 1) return true;
      if (value === 'false' || value === 0 || value === null) return false;
      return FAIL;
    default:
      return FAIL;
  }
}
