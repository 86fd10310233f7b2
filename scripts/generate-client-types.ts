// `npm run generate:client`: clients/typescript/src/schema.d.ts from the OpenAPI document, built in process by
// buildOpenApi() (no server needed) and turned into types by openapi-typescript. test/client-types.test.ts fails
// when the committed file differs from what this produces.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import openapiTS, { astToString, COMMENT_HEADER, type OpenAPI3 } from 'openapi-typescript';
import { buildOpenApi } from '../functions/_shared/http/openapi.ts';

export const SCHEMA_PATH = 'clients/typescript/src/schema.d.ts';
export const GENERATE_COMMAND = 'npm run generate:client';

/** The text of schema.d.ts for the document the generations function serves today. */
export async function generateClientTypes(): Promise<string> {
  // The server URL does not reach the types; a fixed one keeps the document (and so the output) deterministic.
  const doc = buildOpenApi('http://localhost:54321/functions/v1/generations') as unknown as OpenAPI3;
  const ast = await openapiTS(structuredClone(doc), { silent: true, alphabetize: false });
  const header = `${COMMENT_HEADER.trimEnd()}\n// Generated from functions/_shared/http/openapi.ts by \`${GENERATE_COMMAND}\`.\n\n`;
  return `${header}${astToString(ast).trimEnd()}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(SCHEMA_PATH, await generateClientTypes());
  console.error(`wrote ${SCHEMA_PATH}`);
}
