import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { API_ERROR_CODES } from '../clients/typescript/src/errors.ts';
import { ErrorCode } from '../functions/_shared/errors.ts';
import { GENERATE_COMMAND, generateClientTypes, SCHEMA_PATH } from '../scripts/generate-client-types.ts';

// The TypeScript client's types are generated from the OpenAPI document (functions/_shared/http/openapi.ts) and
// committed: this fails as soon as the document and the committed types disagree.

describe('clients/typescript', () => {
  it(`has the types of today's OpenAPI document in ${SCHEMA_PATH}`, async () => {
    const fresh = await generateClientTypes();
    const committed = readFileSync(SCHEMA_PATH, 'utf8');
    if (committed !== fresh) {
      const a = committed.split('\n');
      const b = fresh.split('\n');
      const line = a.findIndex((l, i) => l !== b[i]);
      expect.fail(
        `${SCHEMA_PATH} is out of date with the OpenAPI document: run \`${GENERATE_COMMAND}\` and commit the result.\n` +
          `first difference at line ${line + 1}:\n  committed: ${a[line] ?? '<end of file>'}\n  generated: ${b[line] ?? '<end of file>'}`,
      );
    }
  });

  it("knows every error code the server answers with (StorageErrorCode's autocompletion)", () => {
    const missing = Object.values(ErrorCode).filter((c) => !(API_ERROR_CODES as readonly string[]).includes(c));
    expect(missing, 'add these to API_ERROR_CODES in clients/typescript/src/errors.ts').toEqual([]);
  });
});
