// Validate vibex's OpenAPI document and answers with maintained validators:
// the document against the OpenAPI 3.1 specification
// (@seriousme/openapi-schema-validator), then every recorded answer against
// the schema the document gives for its route and status (ajv, JSON Schema
// 2020-12). Usage: node openapi_check.mjs DOC.json ANSWERS.json
// ANSWERS: [{method, path (the route's template), status, body}]
// Prints {valid, doc_errors, failures: [...], checked}; exit 0 when valid.
import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const [docPath, answersPath] = process.argv.slice(2);
const doc = JSON.parse(readFileSync(docPath, "utf8"));
const answers = answersPath ? JSON.parse(readFileSync(answersPath, "utf8")) : [];
const out = { valid: true, doc_errors: null, failures: [], checked: 0 };

const v = new Validator();
const res = await v.validate(doc);
if (!res.valid) { out.valid = false; out.doc_errors = res.errors; }
if (doc.openapi !== "3.1.0") { out.valid = false; out.doc_errors = (out.doc_errors || []).concat(["openapi is " + doc.openapi]); }

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: "doc", components: doc.components });
const esc = (s) => s.replace(/~/g, "~0").replace(/\//g, "~1");
for (const a of answers) {
  const op = doc.paths[a.path] && doc.paths[a.path][a.method.toLowerCase()];
  if (!op) { out.failures.push({ ...a, body: undefined, why: "no such operation in the document" }); continue; }
  const r = op.responses[String(a.status)];
  if (!r) { out.failures.push({ method: a.method, path: a.path, status: a.status, why: "status not documented" }); continue; }
  const media = r.content && (r.content["application/json"] || Object.values(r.content)[0]);
  if (!media || !media.schema) { out.failures.push({ method: a.method, path: a.path, status: a.status, why: "no schema" }); continue; }
  // the schema as the document has it, its $refs resolved against the document
  const schema = JSON.parse(JSON.stringify(media.schema).replace(/"#\/components\//g, '"doc#/components/'));
  const check = ajv.compile(schema);
  out.checked++;
  if (!check(a.body)) {
    out.failures.push({ method: a.method, path: a.path, status: a.status, errors: check.errors.slice(0, 5) });
  }
  // examples must match their schemas too
  if (media.example !== undefined && !check(media.example)) {
    out.failures.push({ method: a.method, path: a.path, status: a.status, why: "the documented example does not match", errors: check.errors.slice(0, 3) });
  }
}
if (out.failures.length) out.valid = false;
console.log(JSON.stringify(out));
process.exit(out.valid ? 0 : 1);
