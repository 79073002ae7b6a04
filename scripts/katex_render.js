// Render TeX with the pinned KaTeX, one JSON request per line on stdin:
//   {"tex": "...", "display": true}  ->  {"html": "..."}  or  {"error": "KaTeX's message"}
// throwOnError and strict "error" make every problem an error, never red text in a page.
"use strict";
const katex = require("katex");
const readline = require("readline");

// htmlAndMathml: the HTML is what readers see; the MathML beside it is what screen readers read.
const OPTIONS = { throwOnError: true, strict: "error", output: "htmlAndMathml", trust: false };

const lines = readline.createInterface({ input: process.stdin, terminal: false });
lines.on("line", (line) => {
  let reply;
  try {
    const request = JSON.parse(line);
    reply = { html: katex.renderToString(request.tex, { ...OPTIONS, displayMode: !!request.display }) };
  } catch (error) {
    reply = { error: String(error && error.message ? error.message : error) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
});
