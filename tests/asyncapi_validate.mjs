// Parses an AsyncAPI document with the AsyncAPI initiative's own parser; prints its diagnostics as JSON.
import { Parser, fromFile } from "@asyncapi/parser";

const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, process.argv[2]).parse();
process.stdout.write(
  JSON.stringify({
    parsed: document !== undefined,
    version: document?.version(),
    channels: document ? document.channels().all().map((c) => c.address()) : [],
    diagnostics: diagnostics.map((d) => ({ severity: d.severity, code: d.code, message: d.message, path: d.path })),
  }),
);
